"""docker-compose.prod.yml, docker-compose.yml, the Dockerfile and .env.example.

Docker cannot run here, so these check that the files parse and hold what production needs.
"""

from __future__ import annotations

import os
import re
from typing import Any

from dotenv import dotenv_values

from cluster.nginx import NGINX_DIR
from cluster.processes import REPO_ROOT
from server.config import Settings, settings_specs
from tests.deploy.conftest import upstream_peers
from tests.helpers.clients import TEST_SECRET

# Variables of .env that only docker-compose.prod.yml reads (the Redis ACL users' passwords).
COMPOSE_ONLY = {"REDIS_REPLICA_PASSWORD", "REDIS_EMITTER_PASSWORD", "REDIS_ADMIN_PASSWORD"}


def test_redis_is_version_7_keeps_nothing_and_limits_slow_subscribers(prod_compose: dict[str, Any]) -> None:
    redis = prod_compose["services"]["redis"]

    assert redis["image"].startswith("redis:7")
    command = " ".join(arg or '""' for arg in redis["command"])
    assert '--save ""' in command and "--appendonly no" in command
    assert "--client-output-buffer-limit pubsub 32mb 8mb 60" in command
    assert "ports" not in redis


def test_redis_disables_the_default_user_and_gives_each_user_a_password_from_env(
        prod_compose: dict[str, Any]) -> None:
    redis = prod_compose["services"]["redis"]
    users = acl_users(redis["command"])

    assert users["default"] == ["off"]
    assert set(users) == {"default", "replica", "emitter", "admin"}
    for name, rules in users.items():
        if name != "default":
            variable = f"REDIS_{name.upper()}_PASSWORD"
            assert rules[:2] == ["on", f">${{{variable}:?set {variable} in .env}}"]
    for name in ("replica", "emitter"):
        rules = users[name]
        assert "-@all" in rules and "resetchannels" in rules  # no channel: replicas read lists
        assert not any(rule in ("~*", "+@all", "allkeys", "allcommands", "+flushall", "+keys", "+eval", "+evalsha",
                                "+script|load", "+function|kill", "+script|kill") for rule in rules)
    assert "+function|load" in users["replica"] and "+function|load" not in users["emitter"]
    writes = ("+hset", "+set", "+del", "+hdel", "+expire", "+pexpire", "+ltrim", "+lpop", "+xadd", "+rpush", "+rpushx")
    assert not set(writes) & set(users["emitter"])  # at its root: reads and FCALL only
    assert [rule for rule in users["emitter"] if rule.startswith("(")] == [
        "(~kindmap_events:inbox:* +rpush)", "(~kindmap_events:history:* +rpushx)"]  # append, never remove
    assert users["admin"][2:] == ["~*", "&*", "+@all"]
    assert "--user replica" in " ".join(redis["healthcheck"]["test"])


def acl_users(command: list[str]) -> dict[str, list[str]]:
    """The rules of each ``--user <name> <rule>...`` of a redis-server command line."""
    users: dict[str, list[str]] = {}
    for start in (i for i, arg in enumerate(command) if arg == "--user"):
        end = next((i for i in range(start + 1, len(command)) if command[i].startswith("--")), len(command))
        users[command[start + 1]] = command[start + 2:end]
    return users


def test_app_runs_three_single_process_replicas_checked_on_readyz(prod_compose: dict[str, Any]) -> None:
    app = prod_compose["services"]["app"]

    assert app["deploy"]["replicas"] == 3
    assert app["build"] == "."
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert app["env_file"] == ".env"
    assert app["environment"]["HOST"] == "0.0.0.0"
    assert app["environment"]["REDIS_URL"] == "redis://replica:${REDIS_REPLICA_PASSWORD}@redis:6379/0"
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "ports" not in app, "replicas are reached through Nginx only"


def test_every_service_restarts_and_only_nginx_publishes_port_80(prod_compose: dict[str, Any]) -> None:
    services = prod_compose["services"]

    assert {name: s["restart"] for name, s in services.items()} == dict.fromkeys(services, "unless-stopped")
    assert services["nginx"]["ports"] == ["80:80"]
    assert services["nginx"]["depends_on"]["app"]["condition"] == "service_healthy"


def test_nginx_peers_are_the_replica_containers_compose_names(prod_compose: dict[str, Any]) -> None:
    app = prod_compose["services"]["app"]
    replica_names = [f"{prod_compose['name']}-app-{n}" for n in range(1, app["deploy"]["replicas"] + 1)]

    assert upstream_peers() == [(name, int(app["environment"]["PORT"])) for name in replica_names]


def test_nginx_runs_in_utc_as_the_error_schema_promises(prod_compose: dict[str, Any]) -> None:
    """Its own error bodies carry ``$time_iso8601``, written in Nginx's zone."""
    assert prod_compose["services"]["nginx"]["environment"]["TZ"] == "UTC"


def test_nginx_mounts_the_repository_configuration_where_the_image_reads_it(prod_compose: dict[str, Any]) -> None:
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in prod_compose["services"]["nginx"]["volumes"])

    assert mounts["./nginx/nginx.conf"] == "/etc/nginx/nginx.conf"
    assert mounts["./nginx/conf.d"] == "/etc/nginx/conf.d"
    assert mounts["./nginx/snippets"] == "/etc/nginx/snippets"
    watcher = "./nginx/docker-entrypoint.d/90-reresolve-upstreams.sh"
    assert mounts[watcher] == "/docker-entrypoint.d/90-reresolve-upstreams.sh"
    assert all((REPO_ROOT / source).exists() for source in mounts)
    assert os.access(NGINX_DIR / "docker-entrypoint.d" / "90-reresolve-upstreams.sh", os.X_OK)


def test_development_compose_runs_one_dev_replica_on_loopback(dev_compose: dict[str, Any]) -> None:
    app = dev_compose["services"]["app"]

    assert "deploy" not in app
    assert app["environment"]["AUTH_MODE"] == "dev"
    assert app["ports"] == ["127.0.0.1:8000:8000"]
    assert "nginx" not in dev_compose["services"]
    # Dev mode beyond loopback is refused unless opted in: the opt-in is what lets it start.
    assert Settings.from_env(app["environment"]).dev_mode is True


def test_image_is_slim_runs_one_replica_and_not_as_root() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "RUN npm ci" in dockerfile and "COPY client_demo/ client_demo/" in dockerfile, "the demo page and its client"
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert dockerfile.rstrip().endswith('CMD ["python", "-m", "server"]')


def test_env_example_documents_every_setting_and_is_valid() -> None:
    example = dotenv_values(REPO_ROOT / ".env.example")
    read_by_config = [spec.env for _, spec in settings_specs()]
    prod_compose = (REPO_ROOT / "docker-compose.prod.yml").read_text()

    assert read_by_config and sorted(set(example) - COMPOSE_ONLY) == sorted(read_by_config)
    assert COMPOSE_ONLY <= set(example) and all(f"${{{name}" in prod_compose for name in COMPOSE_ONLY)
    settings = Settings.from_env({k: v for k, v in example.items() if v is not None} | {"JWT_SECRET": TEST_SECRET})
    assert settings == Settings(jwt_secret=TEST_SECRET, instance_id=settings.instance_id)
