"""Fixtures for tests of the deployment files: Nginx, Compose, the Dockerfile."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from cluster.nginx import NGINX_DIR, SITE_FILE, upstream_servers
from cluster.processes import REPO_ROOT

SITE = NGINX_DIR / SITE_FILE


def upstream_peers() -> list[tuple[str, int]]:
    """(host, port) of every ``server`` line in the production site's upstream block."""
    peers = [server.rsplit(":", 1) for server in upstream_servers(SITE.read_text())]
    return [(host, int(port)) for host, port in peers]


def without_comments(config: str) -> str:
    """Nginx configuration text with its comments removed, so a check cannot match one."""
    return re.sub(r"#.*", "", config)


@pytest.fixture(scope="session")
def prod_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.prod.yml").read_text())
    return compose


@pytest.fixture(scope="session")
def dev_compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return compose
