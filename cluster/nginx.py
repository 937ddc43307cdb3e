"""The production Nginx site, rendered for a cluster on loopback.

``nginx/conf.d/kindmap_api.conf`` is what production runs. A local cluster runs the same
file with two changes only: the upstream's ``server`` lines name the loopback replicas,
and the site listens on a loopback port. The main configuration around it is small and
local (pid, logs and temporary files in the cluster's directory), so Nginx runs without
root and touches nothing outside that directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .processes import REPO_ROOT

__all__ = ["MAIN_CONF", "NGINX_DIR", "SITE_FILE", "render_site", "upstream_servers", "write_config"]

NGINX_DIR = REPO_ROOT / "nginx"
SITE_FILE = "conf.d/kindmap_api.conf"
SNIPPETS_DIR = "snippets"

_UPSTREAM = re.compile(r"^upstream kindmap_realtime \{\n(.*?)^\}", re.M | re.S)
_SERVER = re.compile(r"^(\s*)server (\S+:\d+)(\s.*)?;$")
_LISTEN = re.compile(r"^(\s*)listen 80;$", re.M)

MAIN_CONF = """\
# Written by `python -m cluster` for one run; removed when the cluster stops.
daemon off;
pid nginx.pid;
worker_processes 1;

events {
    worker_connections 4096;
}

http {
    # No query strings ($uri, not $request): they may hold a client's ?token=.
    log_format kindmap '$remote_addr "$request_method $uri $server_protocol" $status upstream=$upstream_addr';
    access_log access.log kindmap;
    client_body_temp_path temp/body;
    proxy_temp_path temp/proxy;
    fastcgi_temp_path temp/fastcgi;
    uwsgi_temp_path temp/uwsgi;
    scgi_temp_path temp/scgi;

    include %s;
}
"""


def upstream_servers(site: str) -> list[str]:
    """The ``host:port`` of every ``server`` line of the site's upstream block."""
    upstream = _UPSTREAM.search(site)
    lines = upstream.group(1).splitlines() if upstream else []
    return [match.group(2) for match in map(_SERVER.match, lines) if match]


def render_site(site: str, *, upstreams: list[str], listen: str) -> str:
    """``site`` with one upstream ``server`` line per address and the given ``listen`` address.

    Each rendered line keeps the parameters (``max_fails`` …) of the file's first one.
    Raises ``ValueError`` when the site no longer has the shape this relies on.
    """
    upstream = _UPSTREAM.search(site)
    if upstream is None:
        raise ValueError("the site has no `upstream kindmap_realtime { … }` block")
    lines = upstream.group(1).splitlines()
    servers = [i for i, line in enumerate(lines) if _SERVER.match(line)]
    if not servers:
        raise ValueError("the upstream kindmap_realtime block has no `server host:port …;` line")
    first = _SERVER.match(lines[servers[0]])
    assert first is not None
    indent, params = first.group(1), first.group(3) or ""
    rendered = [f"{indent}server {address}{params};" for address in upstreams]
    kept = [line for i, line in enumerate(lines) if i not in servers]
    block = "\n".join(kept[:servers[0]] + rendered + kept[servers[0]:]) + "\n"
    site = site[:upstream.start(1)] + block + site[upstream.end(1):]
    site, listens = _LISTEN.subn(rf"\g<1>listen {listen};", site)
    if listens != 1:
        raise ValueError("the site must have exactly one `listen 80;` line")
    return site


def write_config(conf_dir: Path, *, upstreams: list[str], listen: str) -> Path:
    """Write a runnable configuration into ``conf_dir``; returns the main file's path."""
    site = render_site((NGINX_DIR / SITE_FILE).read_text(), upstreams=upstreams, listen=listen)
    (conf_dir / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf_dir / SITE_FILE).write_text(site)
    shutil.copytree(NGINX_DIR / SNIPPETS_DIR, conf_dir / SNIPPETS_DIR, dirs_exist_ok=True)
    (conf_dir / "temp").mkdir(exist_ok=True)
    main = conf_dir / "nginx.conf"
    main.write_text(MAIN_CONF % SITE_FILE)
    # Nginx started as root runs its workers as an unprivileged user, which must be able
    # to reach the temporary directories the master creates for it in here.
    conf_dir.chmod(0o755)
    return main
