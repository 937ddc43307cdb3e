"""The production Nginx configuration under the Nginx of this machine.

``nginx -t`` resolves upstream host names, so the check runs in a private mount
namespace whose /etc/hosts maps the Compose container names to loopback; the
configuration files themselves are the repository's, unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from cluster.nginx import MAIN_CONF, NGINX_DIR
from cluster.processes import nginx_binary, wait_until
from tests.deploy.conftest import SITE, upstream_peers, without_comments

WATCHER = NGINX_DIR / "docker-entrypoint.d" / "90-reresolve-upstreams.sh"

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="a private /etc/hosts needs root and unshare (CI runs as root)")


def nginx_test(hosts_file: Path) -> subprocess.CompletedProcess[str]:
    nginx = nginx_binary()
    assert nginx, "nginx is not installed; `bash .ci/run` installs it"
    script = 'mount --bind "$1" /etc/hosts && exec "$2" -t -p "$3" -c "$3/nginx.conf" -e stderr'
    return subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(hosts_file), nginx, str(NGINX_DIR)],
                          capture_output=True, text=True, timeout=30)


@needs_root
def test_nginx_accepts_the_production_configuration(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(host for host, _ in upstream_peers()) + "\n")

    result = nginx_test(hosts)

    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_root
def test_nginx_refuses_the_configuration_when_a_replica_name_does_not_resolve(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(host for host, _ in upstream_peers()[1:]) + "\n")

    result = nginx_test(hosts)

    assert result.returncode != 0
    assert f'host not found in upstream "{upstream_peers()[0][0]}' in result.stderr


def test_site_proxies_websockets_with_the_headers_and_timeouts_they_need() -> None:
    site = without_comments(SITE.read_text())

    for directive in ("ip_hash;", "proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;", "proxy_set_header Host $http_host;",
                      "proxy_set_header X-Real-IP $remote_addr;",
                      "proxy_set_header X-Forwarded-For $forwarded_for;",
                      "proxy_set_header X-Forwarded-Proto $forwarded_proto;", "proxy_buffering off;",
                      "proxy_read_timeout 3600s;", "proxy_send_timeout 3600s;", "real_ip_header X-Forwarded-For;",
                      "include snippets/trusted_proxies.conf;", "map $http_upgrade $connection_upgrade {"):
        assert directive in site, directive
    for location in ("location /socket.io/ {", "location /api/ {", "location = /healthz {", "location = /readyz {",
                     "location / {"):
        assert location in site, location
    servers = [line for line in site.splitlines() if line.strip().startswith("server kindmap-app-")]
    assert servers and all(line.endswith(" max_fails=0;") for line in servers)


def test_main_configuration_is_sized_for_tens_of_thousands_of_sockets() -> None:
    main = without_comments((NGINX_DIR / "nginx.conf").read_text())

    assert "worker_connections 32768;" in main and "worker_rlimit_nofile 65536;" in main
    assert "include conf.d/*.conf;" in main


@pytest.mark.parametrize("config", [
    pytest.param((NGINX_DIR / "nginx.conf").read_text(), id="production"),
    pytest.param(MAIN_CONF, id="local-cluster"),
])
def test_access_logs_never_write_query_strings_where_a_token_may_be(config: str) -> None:
    """A client may connect to /socket.io/?token=<JWT>; the log keeps the path only."""
    formats = re.findall(r"log_format\s.*?;", without_comments(config), re.S)

    assert formats
    for log_format in formats:
        assert "$uri" in log_format
        assert not re.search(r"\$(request|request_uri|args|query_string|arg_token)\b", log_format), log_format


def write_stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_watcher_reloads_nginx_once_a_replica_is_back_with_a_new_address(tmp_path: Path) -> None:
    """The re-resolve watcher of the Nginx container, with getent and nginx stubbed.

    kindmap-app-2 resolves to the address in ``address`` (nothing while it is empty), and
    like the real Nginx, ``nginx -t`` fails while a name does not resolve.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    address, reloads = tmp_path / "address", tmp_path / "reloads"
    address.write_text("172.18.0.4")
    write_stub(bin_dir / "getent", f"""if [ "$2" = kindmap-app-2 ]; then
    [ -s {address} ] || exit 2
    echo "$(cat {address}) STREAM $2"
else
    echo "172.18.0.9 STREAM $2"
fi
""")
    write_stub(bin_dir / "nginx", f"""case "$1" in
    -t) [ -s {address} ] ;;
    -s) echo "$*" >> {reloads} ;;
esac
""")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KINDMAP_NGINX_SITE": str(SITE),
           "KINDMAP_RERESOLVE_SECONDS": "0.05", "KINDMAP_RERESOLVE_FOREGROUND": "1"}
    watcher = subprocess.Popen(["sh", str(WATCHER)], env=env, stderr=subprocess.PIPE, text=True)
    assert watcher.stderr is not None
    try:
        assert "kindmap-app-2 172.18.0.4" in watcher.stderr.readline()

        address.write_text("")  # the replica's container is restarting
        assert "not reloading until every upstream peer resolves" in watcher.stderr.readline()
        assert not reloads.exists()

        address.write_text("172.18.0.7")  # back, with a new address
        assert "reloading nginx: kindmap-app-1 172.18.0.9 kindmap-app-2 172.18.0.7" in watcher.stderr.readline()
        wait_until(reloads.exists, timeout=5, what="nginx -s reload")
        assert reloads.read_text() == "-s reload\n"
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=5)
