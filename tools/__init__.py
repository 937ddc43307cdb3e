"""Development tools that are not part of the replica: ``python -m tools.settings_doc``."""
