"""Rendering the production Nginx site for a cluster on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster.nginx import NGINX_DIR, SITE_FILE, render_site, write_config

SITE = """\
upstream kindmap_realtime {
    ip_hash;
    # peers
    server app-1:8000 max_fails=3 fail_timeout=10s;
    server app-2:8000 max_fails=3 fail_timeout=10s;
    keepalive 8;
}

server {
    listen 80;
    location / { proxy_pass http://kindmap_realtime; }
}
"""


def test_upstream_servers_become_the_given_addresses_with_the_first_line_parameters() -> None:
    site = render_site(SITE, upstreams=["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
                       listen="127.0.0.1:8080")

    assert site == SITE.replace(
        "    server app-1:8000 max_fails=3 fail_timeout=10s;\n    server app-2:8000 max_fails=3 fail_timeout=10s;\n",
        "".join(f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in (9001, 9002, 9003)),
    ).replace("listen 80;", "listen 127.0.0.1:8080;")


def test_a_server_line_without_parameters_is_rendered_without_them() -> None:
    site = render_site(SITE.replace(" max_fails=3 fail_timeout=10s", ""), upstreams=["127.0.0.1:9001"],
                       listen="127.0.0.1:8080")

    assert "    server 127.0.0.1:9001;\n    keepalive 8;" in site


def test_the_production_site_renders_with_every_replica_and_nothing_else_changed() -> None:
    production = (NGINX_DIR / SITE_FILE).read_text()
    upstreams = [f"127.0.0.1:{9000 + n}" for n in range(6)]

    site = render_site(production, upstreams=upstreams, listen="127.0.0.1:8080")

    servers = re.findall(r"^\s*server (\S+) max_fails=0;$", site, re.M)
    assert servers == upstreams
    unchanged = [line for line in production.splitlines() if not re.match(r"\s*(server \S+:\d+|listen )", line)]
    assert [line for line in site.splitlines() if not re.match(r"\s*(server \S+:\d+|listen )", line)] == unchanged


@pytest.mark.parametrize(("site", "message"), [
    (SITE.replace("upstream kindmap_realtime", "upstream other"), "no `upstream kindmap_realtime"),
    (re.sub(r"    server app.*\n", "", SITE), "has no `server host:port"),
    (SITE.replace("listen 80;", "listen 8080;"), "exactly one `listen 80;`"),
    (SITE + "server {\n    listen 80;\n}\n", "exactly one `listen 80;`"),
])
def test_a_site_of_another_shape_is_refused(site: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render_site(site, upstreams=["127.0.0.1:9001"], listen="127.0.0.1:8080")


def test_write_config_writes_a_self_contained_directory(tmp_path: Path) -> None:
    main = write_config(tmp_path, upstreams=["127.0.0.1:9001"], listen="127.0.0.1:8080")

    assert main == tmp_path / "nginx.conf"
    assert "include conf.d/kindmap_api.conf;" in main.read_text()
    assert "server 127.0.0.1:9001 " in (tmp_path / SITE_FILE).read_text()
    assert (tmp_path / "snippets" / "trusted_proxies.conf").read_text() == \
        (NGINX_DIR / "snippets" / "trusted_proxies.conf").read_text()
    assert (tmp_path / "temp").is_dir()
    assert tmp_path.stat().st_mode & 0o755 == 0o755
