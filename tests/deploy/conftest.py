"""Fixtures for tests of the deployment files: Nginx, Compose, the Dockerfile."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.helpers.processes import REPO_ROOT

NGINX_DIR = REPO_ROOT / "nginx"
SITE = NGINX_DIR / "conf.d" / "kindmap_api.conf"


def upstream_peers() -> list[tuple[str, int]]:
    """(host, port) of every ``server`` line in the site's upstream block."""
    block = re.search(r"^upstream kindmap_realtime \{\n(.*?)^\}", SITE.read_text(), re.M | re.S)
    assert block, "no upstream kindmap_realtime block"
    return [(host, int(port)) for host, port in re.findall(r"^\s*server ([\w.-]+):(\d+)", block.group(1), re.M)]


@pytest.fixture(scope="session")
def prod_compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.prod.yml").read_text())


@pytest.fixture(scope="session")
def dev_compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
