"""docker-compose.yml, the Dockerfile and the Grafana/Prometheus wiring, checked by parsing.

There is no Docker engine on the development machines or in CI, so the stack is checked for
what would break ``docker compose up``: every service has an image or a build, waits for what it
needs to be healthy, addresses other services on ports they listen on, mounts files that exist
where the configs expect them, and passes the service only ``DRIFTLINE_*`` variables that
``driftline.settings.Settings`` knows, with values it accepts; the commands parse with the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from dashboards import build, queries

from driftline.alerting.config import load as load_rules
from driftline.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOT = {"kafka-init", "reference"}  # run to completion; others wait with service_completed_successfully

# The settings fields as agreed for the service (used only if driftline.settings cannot be imported).
SETTINGS_FIELDS_FALLBACK = {
    "store",
    "bootstrap",
    "topics",
    "group",
    "rules",
    "http_host",
    "http_port",
    "api_keys",
    "open_mode",
    "outbox",
    "references",
    "segments",
    "window_ms",
}


def settings_env_names() -> set[str]:
    try:
        from driftline.settings import Settings
    except ModuleNotFoundError:
        fields = SETTINGS_FIELDS_FALLBACK
    else:
        fields = set(Settings.model_fields)
    return {f"DRIFTLINE_{name.upper()}" for name in fields}


def env(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def container_ports(service: str) -> set[int]:
    """Ports the service's container listens on, as published (HOST:CONTAINER) or exposed."""
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in SERVICES[service].get("ports", [])}
    return ports | {int(p) for p in SERVICES[service].get("expose", [])}


def mounts(service: str) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume entry in short syntax."""
    out = []
    for entry in SERVICES[service].get("volumes", []):
        source, target, *mode = entry.split(":")
        out.append((source, target, mode == ["ro"]))
    return out


def host_file(service: str, container_path: str) -> Path | None:
    """The repository file a container path comes from through a bind mount (None: not bind-mounted)."""
    path = PurePosixPath(container_path)
    for source, target, _ in mounts(service):
        if source.startswith(".") and PurePosixPath(target) in [path, *path.parents]:
            return ROOT / source / path.relative_to(target)
    return None


def named_volume_for(service: str, container_path: str) -> str | None:
    path = PurePosixPath(container_path)
    for source, target, _ in mounts(service):
        if not source.startswith((".", "/")) and PurePosixPath(target) in [path, *path.parents]:
            return source
    return None


def command(service: str) -> list[str]:
    """The service's command as argv; ``sh -c`` scripts are split, with compose's $$ unescaped."""
    cmd = SERVICES[service]["command"]
    if cmd[:2] == ["sh", "-c"]:
        script = cmd[2].replace("$$(date -u +%Y-%m-%dT%H:%M:%SZ)", "2026-01-01T00:00:00Z")
        cmd = shlex.split(script)
        if cmd[0] == "exec":
            cmd = cmd[1:]
    return cmd


def cli_args(service: str) -> Any:
    """The service's ``driftline ...`` command as the CLI parses it (fails like the CLI would)."""
    argv = command(service)
    assert argv[0] == "driftline", argv
    return build_parser().parse_args(argv[1:])


def provisioned_datasources() -> list[dict[str, Any]]:
    path = ROOT / "dashboards/grafana/provisioning/datasources/driftline.yml"
    return yaml.safe_load(path.read_text())["datasources"]


def address(text: str) -> tuple[str, int]:
    url = urlparse(text if "://" in text else f"tcp://{text}")
    assert url.hostname and url.port, text
    return url.hostname, url.port


# -- services -----------------------------------------------------------------------------------


def test_the_stack_has_the_services_of_the_issue() -> None:
    images = {name: s.get("image", "") for name, s in SERVICES.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert env("kafka")["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:")
    assert images["grafana"].startswith("grafana/grafana:")
    assert images["prometheus"].startswith("prom/prometheus:")
    assert command("driftline")[:2] == ["driftline", "serve"]
    assert command("simulator")[:2] == ["driftline", "simulate"]
    for name in ("driftline", "simulator", "reference"):
        assert SERVICES[name]["build"] == ".", name


def test_every_service_has_a_pinned_image_or_a_build() -> None:
    for name, s in SERVICES.items():
        assert "image" in s or "build" in s, name
        if "build" in s:
            context = ROOT / s["build"]
            assert (context / "Dockerfile").is_file(), name
        else:
            repo, _, tag = s["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: pin the image tag"


def test_services_wait_for_healthy_dependencies() -> None:
    for name, s in SERVICES.items():
        for dep, spec in s.get("depends_on", {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if dep in ONE_SHOT:
                assert spec == {"condition": "service_completed_successfully"}, (name, dep)
                assert "restart" not in SERVICES[dep], dep
            else:
                assert spec == {"condition": "service_healthy"}, (name, dep)
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck but {name} waits for it"
    for name, s in SERVICES.items():
        if s.get("ports"):
            assert "healthcheck" in s, f"{name} serves ports but has no healthcheck"
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle {path}"
        for dep in SERVICES[name].get("depends_on", {}):
            visit(dep, (*path, name))
        if name not in order:
            order.append(name)

    for name in SERVICES:
        visit(name, ())
    assert order.index("simulator") > order.index("driftline") > order.index("clickhouse")


def test_published_ports_are_unique_and_healthchecks_probe_them() -> None:
    published = [str(p).split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    for name, s in SERVICES.items():
        probe = " ".join(s.get("healthcheck", {}).get("test", []))
        for port in re.findall(r"localhost:(\d+)", probe):
            assert int(port) in container_ports(name), f"{name} healthcheck probes :{port}"


def test_every_address_points_at_a_service_listening_there() -> None:
    e = env("driftline")
    targets = [
        address(e["DRIFTLINE_STORE"]),
        address(e["DRIFTLINE_BOOTSTRAP"]),
        address(env("kafka")["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]),
    ]
    targets.append(address(cli_args("simulator").bootstrap))
    init = SERVICES["kafka-init"]["command"][2]
    targets.append(address(re.search(r"--bootstrap-server (\S+)", init)[1]))
    prometheus = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    driftline_job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "driftline")
    scraped = [address(t) for c in driftline_job["static_configs"] for t in c["targets"]]
    assert scraped == [("driftline", int(e["DRIFTLINE_HTTP_PORT"]))]
    targets += scraped
    for ds in provisioned_datasources():
        if ds["type"] == "grafana-clickhouse-datasource":
            targets.append((ds["jsonData"]["host"], int(ds["jsonData"]["port"])))
        else:
            targets.append(address(ds["url"]))
    for host, port in targets:
        assert host in SERVICES, f"{host} is not a compose service"
        assert port in container_ports(host), f"{host} does not listen on {port}"
    assert e["DRIFTLINE_HTTP_HOST"] == "0.0.0.0"  # reachable from the other containers


def test_clickhouse_credentials_agree() -> None:
    ch = env("clickhouse")
    store = urlparse(env("driftline")["DRIFTLINE_STORE"])
    assert (store.username, store.password, store.path.strip("/")) == (
        ch["CLICKHOUSE_USER"],
        ch["CLICKHOUSE_PASSWORD"],
        ch["CLICKHOUSE_DB"],
    )
    ds = next(d for d in provisioned_datasources() if d["type"] == "grafana-clickhouse-datasource")
    assert ds["uid"] == build.CLICKHOUSE["uid"]
    assert ds["jsonData"]["defaultDatabase"] == ch["CLICKHOUSE_DB"] == queries.DB


def test_grafana_queries_clickhouse_as_a_read_only_user() -> None:
    """Grafana viewers (anonymous ones too) can send the data source any SQL: its user is one of
    the clickhouse container's users.d files, read-only and granted SELECT on driftline.* only."""
    ds = next(d for d in provisioned_datasources() if d["type"] == "grafana-clickhouse-datasource")
    user = ds["jsonData"]["username"]
    assert user != env("clickhouse")["CLICKHOUSE_USER"], "not the service's read-write user"
    files = [
        host_file("clickhouse", target)
        for _, target, _ in mounts("clickhouse")
        if target.startswith("/etc/clickhouse-server/users.d/")
    ]
    users = [ET.parse(f).getroot() for f in files if f is not None]
    found = [u for root in users for u in root.findall(f"users/{user}")]
    assert len(found) == 1, f"no users.d file of the clickhouse service defines {user!r}"
    (definition,) = found
    assert definition.findtext("password") == ds["secureJsonData"]["password"]
    assert definition.findtext("access_management", "0") == "0"
    grants = [q.text for q in definition.findall("grants/query")]
    assert grants == [f"GRANT SELECT ON {queries.DB}.*"]
    profile_name = definition.findtext("profile")
    (profile,) = [p for root in users for p in root.findall(f"profiles/{profile_name}")]
    # 1 or 2 forbid writes and DDL; 2 lets the plugin set max_execution_time per query
    assert profile.findtext("readonly") in ("1", "2")
    assert profile.find("constraints/max_execution_time/max") is not None


# -- volumes and mounted files ------------------------------------------------------------------


def test_volumes_are_declared_used_and_bind_mounts_exist() -> None:
    declared = set(COMPOSE.get("volumes", {}))
    used = set()
    for name in SERVICES:
        for source, target, _ in mounts(name):
            assert target.startswith("/"), (name, target)
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared


def test_grafana_finds_its_provisioning_plugin_and_dashboards() -> None:
    e = env("grafana")
    provisioning = host_file("grafana", "/etc/grafana/provisioning")
    assert provisioning is not None and (provisioning / "datasources").is_dir()
    provider = yaml.safe_load((provisioning / "dashboards" / "driftline.yml").read_text())["providers"][0]
    folder = host_file("grafana", provider["options"]["path"])
    assert folder is not None and sorted(p.stem for p in folder.glob("*.json")) == sorted(build.DASHBOARDS)
    home = host_file("grafana", e["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()
    assert e["GF_PLUGINS_PREINSTALL_SYNC"] == f"grafana-clickhouse-datasource@{build.PLUGIN_VERSION}"
    assert all(ro for _, target, ro in mounts("grafana") if target.startswith("/etc/grafana"))


def test_prometheus_reads_the_checked_config_and_rules() -> None:
    flag = next(a for a in SERVICES["prometheus"]["command"] if a.startswith("--config.file="))
    config = host_file("prometheus", flag.split("=", 1)[1])
    assert config is not None and config.is_file()
    for rule_file in yaml.safe_load(config.read_text())["rule_files"]:
        assert (config.parent / rule_file).is_file()


def test_the_service_finds_its_rules_reference_and_outbox() -> None:
    e = env("driftline")
    rules = host_file("driftline", e["DRIFTLINE_RULES"])
    assert rules is not None and load_rules(rules).rules  # valid, with rules
    out_dir = cli_args("reference").out
    volume = named_volume_for("reference", out_dir)
    assert volume is not None, "the reference is written to a volume"
    for path in yaml.safe_load(e["DRIFTLINE_REFERENCES"]).values():
        assert (
            PurePosixPath(path) == PurePosixPath(out_dir) / "reference.parquet"
        )  # what simulate --out writes
        assert named_volume_for("driftline", path) == volume
    assert named_volume_for("driftline", e["DRIFTLINE_OUTBOX"]) is not None, (
        "the outbox must survive restarts"
    )


# -- the driftline service's settings and commands ----------------------------------------------


def driftline_env() -> dict[str, str]:
    return {k: v for name in SERVICES for k, v in env(name).items() if k.startswith("DRIFTLINE_")}


def test_env_names_match_the_settings_class() -> None:
    known = settings_env_names()
    unknown = set(driftline_env()) - known
    assert not unknown, f"not fields of driftline.settings.Settings: {sorted(unknown)}"
    assert {"DRIFTLINE_STORE", "DRIFTLINE_BOOTSTRAP", "DRIFTLINE_REFERENCES"} <= set(driftline_env())


def test_the_settings_class_accepts_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from driftline.settings import Settings
    except ModuleNotFoundError:  # not written yet: the values are at least well-formed JSON where needed
        for name in ("DRIFTLINE_TOPICS", "DRIFTLINE_REFERENCES", "DRIFTLINE_API_KEYS", "DRIFTLINE_SEGMENTS"):
            yaml.safe_load(env("driftline")[name])
        return
    for key in list(os.environ):
        if key.startswith("DRIFTLINE_"):
            monkeypatch.delenv(key)
    for key, value in env("driftline").items():
        if key.startswith("DRIFTLINE_"):
            monkeypatch.setenv(key, value)
    s = Settings()
    assert s.bootstrap == "kafka:9092" and s.topics == ["predictions"]
    assert s.references == {"churn": "/refs/reference.parquet"}
    assert s.http_port == 8000 and s.api_keys and not s.open_mode


def test_commands_parse_with_the_cli() -> None:
    for name in ("driftline", "simulator", "reference"):
        assert cli_args(name).command == command(name)[1]
    sim = cli_args("simulator")
    assert sim.rate and sim.events / sim.rate >= 600, "the simulator runs for a while at a steady rate"
    assert sim.drift_at is not None and 0 < sim.drift_at < 1


# -- the image ----------------------------------------------------------------------------------


def test_the_dockerfile_builds_the_package_and_serves() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln.strip()]
    base = next(ln.split()[1] for ln in lines if ln.startswith("FROM "))
    version = re.match(r"python:(\d+)\.(\d+)", base)
    assert version, base
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())
    assert (int(version[1]), int(version[2])) >= minimum
    copied = [src for ln in lines if ln.startswith("COPY ") for src in ln.split()[1:-1]]
    assert {"pyproject.toml", "README.md", "src"} <= set(copied)
    assert any("pip install" in ln for ln in lines)
    cmd = next(ln for ln in lines if ln.startswith("CMD "))
    assert yaml.safe_load(cmd.removeprefix("CMD ")) == ["driftline", "serve"]
    exposed = {int(p) for ln in lines if ln.startswith("EXPOSE ") for p in ln.split()[1:]}
    assert int(env("driftline")["DRIFTLINE_HTTP_PORT"]) in exposed
    # .dockerignore is an allow-list: everything COPY needs must be let through.
    rules = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    for src in copied:
        allowed = False
        for rule in rules:
            pattern = rule.lstrip("!").rstrip("/")
            if pattern == "*" or pattern == src:
                allowed = rule.startswith("!")
        assert allowed, f".dockerignore excludes {src}"
