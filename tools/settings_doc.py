"""The settings table of ``docs/configuration.md`` and ``.env.example``, written from the
declarations in ``server.config`` so that neither can drift from what the server reads.

``python -m tools.settings_doc --write`` (``make settings-docs``) rewrites both;
``--markdown`` and ``--env-example`` print one of them instead.

A help text may link to any heading of the documentation as ``[text](#heading-anchor)``:
the table's link is written relative to ``docs/configuration.md``, to whichever of
``README.md`` and ``docs/*.md`` holds that heading (the table's own file first), and
``.env.example`` names the file. A section that moves needs no change to the declarations,
only ``make settings-docs``; a heading that no document holds stops the generator.
"""

from __future__ import annotations

import argparse
import posixpath
import re
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any

from server.config import Spec, settings_specs

__all__ = ["DOCUMENTS", "ENV_EXAMPLE", "TABLE_DOC", "TABLE_END", "TABLE_START", "env_example", "markdown_table",
           "replace_table", "write"]

ROOT = Path(__file__).resolve().parents[1]
TABLE_DOC = "docs/configuration.md"
ENV_EXAMPLE = ".env.example"
DOCUMENTS = (TABLE_DOC, "README.md", "docs/*.md")  # where a help text's heading is looked for, in this order
TABLE_START, TABLE_END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
REGENERATE = "make settings-docs"

_ENV_HEADER = """\
# Settings of KindMap Realtime: copy to .env and fill in. The environment wins over
# this file. docker-compose.prod.yml reads .env and sets HOST, PORT and REDIS_URL itself.
# A bad value stops start-up with one line naming the setting (exit code 2).
# Generated from server/config.py by `{regenerate}`: edit the declarations there.
"""
_ENV_COMPOSE_ONLY = """\
# Passwords of the Redis ACL users the production Compose file creates; URL-safe, as
# they go into REDIS_URL: python3 -c "import secrets; print(secrets.token_urlsafe(32))"
# Replicas connect as `replica`; backends emit with
# REDIS_URL=redis://emitter:<REDIS_EMITTER_PASSWORD>@redis:6379/0; `admin` is the
# operator's (SCRIPT KILL, FUNCTION KILL), used by nothing of the service.
REDIS_REPLICA_PASSWORD=
REDIS_EMITTER_PASSWORD=
REDIS_ADMIN_PASSWORD=
"""
_LINK = re.compile(r"\[([^\]]+)\]\(#([^)]*)\)")
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
_CODE_BLOCK = re.compile(r"```.*?```", re.DOTALL)
_CODE = re.compile(r"`([^`]*)`")
_NBSP = "\xa0"  # a space textwrap does not break at


def markdown_table() -> str:
    """The settings as the table of ``docs/configuration.md``, one row each in declaration order."""
    rows = ["| Variable | Default | Values | Meaning |", "|---|---|---|---|"]
    for f, spec in settings_specs():
        default = spec.default_doc or ("unset" if _env_value(f) == "" else f"`{_env_value(f)}`")
        rows.append(f"| `{spec.env}` | {default} | {_values(f, spec)} | {_markdown(spec.help)} |")
    return "\n".join(rows) + "\n"


def env_example() -> str:
    """The settings as ``.env.example``: each with its help as a comment and its default."""
    lines = [_ENV_HEADER.format(regenerate=REGENERATE).rstrip("\n")]
    for f, spec in settings_specs():
        if spec.section is not None:
            lines += ["", _heading(spec.section)]
        notes = [note for note in (_values(f, spec) and f"Values: {_values(f, spec)}.",
                                   spec.default_doc and f"Default: {spec.default_doc}.") if note]
        text = " ".join([_plain(spec.help), *(_plain(note).replace(" ", _NBSP) for note in notes)])
        wrapped = textwrap.wrap(text, 86, break_long_words=False, break_on_hyphens=False)
        lines += [f"# {line}".replace(_NBSP, " ") for line in wrapped]
        lines.append(f"{spec.env}={_env_value(f)}")
    lines += ["", _heading("docker-compose.prod.yml only (not read by the server)"), _ENV_COMPOSE_ONLY]
    return "\n".join(lines)


def replace_table(document: str, table: str) -> str:
    """``document`` with ``table`` between its markers, the text around them untouched."""
    start, end = document.find(TABLE_START), document.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"{TABLE_DOC} lacks the lines {TABLE_START} and {TABLE_END} around its settings table")
    return f"{document[:start]}{TABLE_START}\n\n{table}\n{document[end:]}"


def write(root: Path = ROOT) -> None:
    """Rewrite the settings table of ``docs/configuration.md`` and ``.env.example`` under ``root``."""
    document = root / TABLE_DOC
    document.write_text(replace_table(document.read_text(), markdown_table()))
    (root / ENV_EXAMPLE).write_text(env_example())


def _anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _documents() -> Iterator[str]:
    seen: set[str] = set()
    for pattern in DOCUMENTS:
        for path in sorted(ROOT.glob(pattern)):
            name = path.relative_to(ROOT).as_posix()
            if name not in seen:
                seen.add(name)
                yield name


def _holder(anchor: str) -> str:
    """The document (relative to the checkout) whose heading ``anchor`` names: the first of
    ``DOCUMENTS`` that has it. Looked up in this checkout, whose declarations are written."""
    for name in _documents():
        headings = _HEADING.findall(_CODE_BLOCK.sub("", (ROOT / name).read_text()))
        if anchor in {_anchor(heading) for heading in headings}:
            return name
    raise ValueError(f"a setting's help links to #{anchor}, a heading that none of {', '.join(DOCUMENTS)} has")


def _markdown(help_text: str) -> str:
    """Help text for the table: each heading link made relative to the table's file."""
    def link(match: re.Match[str]) -> str:
        holder = _holder(match[2])
        path = "" if holder == TABLE_DOC else posixpath.relpath(holder, posixpath.dirname(TABLE_DOC))
        return f"[{match[1]}]({path}#{match[2]})"
    return _LINK.sub(link, help_text)


def _env_value(f: Field[Any]) -> str:
    """A default as written in a ``.env`` file: empty for none (or one made at start-up)."""
    value = f.default
    if value is MISSING or value is None or value == ():
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(f: Field[Any], spec: Spec) -> str:
    if spec.choices:
        return ", ".join(f"`{choice}`" for choice in spec.choices)
    if spec.bounds is not None:
        return str(spec.bounds)
    return "`true`, `false`" if isinstance(f.default, bool) else ""


def _heading(title: str) -> str:
    return f"# --- {title} ".ljust(80, "-")


def _plain(markdown: str) -> str:
    """Help text as a comment: links name their section and its file, no emphasis, code
    unquoted but not broken across lines."""
    text = _LINK.sub(lambda link: f"{link[1]}{_NBSP}({_holder(link[2])})", markdown).replace("**", "")
    return _CODE.sub(lambda code: code[1].replace(" ", _NBSP), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.settings_doc",
        description=f"Write the settings table of {TABLE_DOC} and {ENV_EXAMPLE} from server/config.py.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true",
                        help=f"rewrite the settings table of {TABLE_DOC} and {ENV_EXAMPLE}")
    action.add_argument("--markdown", action="store_true", help="print the settings table")
    action.add_argument("--env-example", action="store_true", help=f"print {ENV_EXAMPLE}")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to write in (default: this one)")
    args = parser.parse_args(argv)
    if args.write:
        write(args.root)
    else:
        sys.stdout.write(markdown_table() if args.markdown else env_example())
    return 0


if __name__ == "__main__":
    sys.exit(main())
