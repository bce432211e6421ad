"""docker/compose.yaml and docker/Dockerfile agree with the code (no container engine needed).

Every ``NEARCAST_*`` variable they set is a field of a settings class and parses there; every
command they run parses with the real command line (``nearcast``'s and ``mlflow server``'s); the
image's runtime stage runs as a non-root user, checks ``/readyz`` and holds what the compose
file refers to. Secrets are required (``${VAR:?}``) and on no command line; every container is
read-only, without capabilities or privilege escalation, and has a memory limit.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import mlflow
import pytest
import sqlalchemy as sa
import typer
import yaml
from mlflow.exceptions import MlflowException
from pydantic_settings import BaseSettings
from typer.exceptions import TyperException

from conftest import free_port
from nearcast.models.settings import MlflowSettings
from nearcast.service.cli import app as nearcast_cli
from nearcast.service.edge import check_bind
from nearcast.service.settings import ApiSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SETTINGS: tuple[type[BaseSettings], ...] = (ApiSettings, MlflowSettings)
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SECRETS = {"POSTGRES_PASSWORD": "pg-secret-3141", "NEARCAST_API_KEYS": "api-key-2718"}
"""What docker/.env provides in these tests: the variables compose requires."""


def _interpolate(value: str) -> str:
    """Compose's interpolation with only :data:`SECRETS` set: their values, else the defaults."""

    def default(m: re.Match[str]) -> str:
        if m.group(2) in (":?", "?"):
            assert m.group(1) in SECRETS, f"{m.group(0)} requires a variable the tests lack"
            assert m.group(3), f"{m.group(0)}: say what to set (and where)"
        return SECRETS.get(m.group(1)) or m.group(3) or ""

    return _VAR.sub(default, value)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]  # type: ignore[no-any-return]


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: _interpolate(str(v)) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    raw = service["command"]
    return [_interpolate(str(a)) for a in (shlex.split(raw) if isinstance(raw, str) else raw)]


def _known_variables() -> set[str]:
    names = set()
    for cls in SETTINGS:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def _nearcast_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _services().items()
            if str(s.get("image", "")).startswith("${NEARCAST_IMAGE")}


# ----------------------------------------------------------------------------- Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            current = ""
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions(DOCKERFILE.read_text()):
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def _image_env() -> dict[str, str]:
    """ENV of the runtime (last) stage."""
    env: dict[str, str] = {}
    for word, rest in _stages()[-1]:
        if word == "ENV":
            env |= dict(pair.split("=", 1) for pair in shlex.split(rest))
    return env


# ----------------------------------------------------------------------------- tests


def test_every_nearcast_variable_set_exists_in_the_settings() -> None:
    known = _known_variables()
    services = _nearcast_services()
    assert set(services) == {"mlflow", "api", "scheduler"}
    for name in ("api", "scheduler"):
        env = _env(services[name])
        assert env["NEARCAST_TRACKING_URI"] == "http://mlflow:5000"
        unknown = {k for k in env if k.startswith("NEARCAST_")} - known
        assert not unknown, f"compose service {name!r} sets unknown variables {sorted(unknown)}"
    image = {k for k in _image_env() if k.startswith("NEARCAST_")}
    assert image and image <= known, sorted(image - known)
    # A name the settings do not define is caught (the check above can fail).
    assert "NEARCAST_REGISTRY_TIMEOUTS" not in known and "NEARCAST_REGISTRY_TIMEOUT" in known


@pytest.mark.parametrize("service", ["api", "scheduler"])
def test_compose_environment_parses_as_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("NEARCAST_")]:
        monkeypatch.delenv(key)
    for key, value in (_image_env() | _env(_services()[service])).items():
        monkeypatch.setenv(key, value)
    api, store = ApiSettings(), MlflowSettings()
    assert store.tracking_uri == "http://mlflow:5000" and store.resolved_artifact_root() is None
    assert (store.registry_timeout, store.registry_retries, store.registry_backoff) == (10, 3, 1)
    if service == "api":
        assert api.workers == 2 and api.host == "0.0.0.0"
        assert api.api_keys == [SECRETS["NEARCAST_API_KEYS"]] and api.auth == "auto"
        assert check_bind(api).startswith("auth: API keys required")  # serve starts on 0.0.0.0
        assert {"127.0.0.1", "localhost"} <= set(api.allowed_hosts)
        published = [p for p in _services()["api"]["ports"] if p.endswith(f":{api.port}")]
        assert published == [f"127.0.0.1:{api.port}:{api.port}"]


def test_compose_commands_parse_with_the_real_command_lines() -> None:
    services = _services()
    commands = typer.main.get_command(nearcast_cli).commands  # type: ignore[attr-defined]
    copied = [rest for word, rest in _stages()[-1] if word == "COPY"]
    assert "configs/ /app/configs/" in copied  # the job files the commands name are in the image
    ran = {}
    for name in ("api", "scheduler"):
        prog, sub, *args = _command(services[name])
        assert prog == "nearcast", name
        args = [a.replace("/app/configs/", f"{REPO}/configs/") for a in args]
        assert sub in commands, f"{name}: `nearcast {sub}` does not exist"
        ctx = commands[sub].make_context(sub, list(args))  # unknown options, missing files fail
        ran[name] = (sub, ctx.params)
    assert ran["api"] == ("serve", {"host": None, "port": None, "workers": None})
    assert ran["scheduler"][0] == "scheduler"
    assert [p.name for p in ran["scheduler"][1]["config"]] == ["retrain.yaml"]
    with pytest.raises(TyperException, match="No such option: --replicas"):
        commands["serve"].make_context("serve", ["--replicas", "2"])  # the check can fail


def test_mlflow_server_command_parses_and_its_driver_is_a_runtime_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow.cli import cli as mlflow_cli

    services = _services()
    prog, sub, *args = _command(services["mlflow"])
    assert (prog, sub) == ("mlflow", "server")
    env = _env(services["mlflow"])
    assert "--backend-store-uri" not in args  # with the password it comes from the environment
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    params = mlflow_cli.commands["server"].make_context("server", list(args)).params
    assert params["backend_store_uri"] == env["MLFLOW_BACKEND_STORE_URI"]  # read from the env
    assert params["serve_artifacts"] and params["artifacts_destination"] == "/data/mlartifacts"
    assert params["host"] == "0.0.0.0" and "mlflow:5000" in params["allowed_hosts"].split(",")
    assert f":{params['port']}" in _env(services["api"])["NEARCAST_TRACKING_URI"]
    mounts = [v.split(":") for v in services["mlflow"]["volumes"]]
    assert ["mlartifacts", "/data/mlartifacts"] in mounts
    assert "/data/mlartifacts" in next(rest for word, rest in _stages()[-1]
                                       if word == "RUN" and "mkdir" in rest)
    # The backend names its driver (plain postgresql:// means psycopg 3 to SQLAlchemy 2.1),
    # the driver imports, and the image installs it (runtime dependencies only).
    url = sa.make_url(params["backend_store_uri"])
    assert url.drivername == "postgresql+psycopg2" and url.host == "postgres"
    url.get_dialect().import_dbapi()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("psycopg2-binary") for d in deps)
    pg = _env(services["postgres"])
    assert (url.username, url.password, url.database) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert url.password == SECRETS["POSTGRES_PASSWORD"]


def test_secrets_are_required_and_on_no_command_line() -> None:
    raw = _services()
    required = {m.group(1) for m in _VAR.finditer(COMPOSE.read_text()) if "?" in (m.group(2) or "")}
    assert required == set(SECRETS)
    assert "POSTGRES_PASSWORD" in raw["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert ":?" in raw["postgres"]["environment"]["POSTGRES_PASSWORD"]  # no default password
    assert raw["api"]["environment"]["NEARCAST_API_KEYS"].startswith("${NEARCAST_API_KEYS:?")
    for name, service in raw.items():
        assert not _secrets_in_commands(service), f"{name} shows a secret on a command line"
    # The check can fail: the previous compose file put the password on mlflow's command line.
    old = {"command": ["mlflow", "server", "--backend-store-uri",
                       "postgresql+psycopg2://mlflow:${POSTGRES_PASSWORD:?x}@postgres:5432/mlflow"]}
    assert _secrets_in_commands(old) == ["POSTGRES_PASSWORD"]


def _secrets_in_commands(service: dict[str, Any]) -> list[str]:
    """The secrets a service's command or healthcheck holds (as variables or as values)."""
    raw = json.dumps([service.get("command", []), service.get("healthcheck", {})])
    expanded = _interpolate(raw)
    return [var for var, value in SECRETS.items() if var in raw or value in expanded]


_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def _bytes(limit: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg])b?", limit.strip().lower())
    assert match, f"not a memory size: {limit!r}"
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def test_every_container_is_read_only_unprivileged_and_memory_limited() -> None:
    services = _services()
    assert set(services) == {"postgres", "mlflow", "api", "scheduler"}
    limits = {}
    for name, service in services.items():
        assert service.get("read_only") is True, f"{name}: root file system is writable"
        assert service.get("cap_drop") == ["ALL"], f"{name}: keeps Linux capabilities"
        assert not service.get("cap_add"), f"{name}: adds capabilities back"
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged"), name
        tmpfs = [t.split(":")[0] for t in service.get("tmpfs", [])]
        assert "/tmp" in tmpfs, f"{name}: no writable /tmp"
        for mount in service.get("tmpfs", []):
            size = dict(o.split("=") for o in mount.partition(":")[2].split(",") if "=" in o)
            assert "size" in size, f"{name}: tmpfs {mount} unbounded (it counts as memory)"
        assert "deploy" not in service or "resources" not in service["deploy"], name
        limits[name] = _bytes(_interpolate(str(service["mem_limit"])))
    # Writable places are volumes or tmpfs: PostgreSQL's data and socket, MLflow's artifacts,
    # the scheduler's lock files.
    mounts = {name: [v.split(":")[1] for v in s.get("volumes", [])] for name, s in services.items()}
    assert mounts["postgres"] == ["/var/lib/postgresql/data"]
    assert "/var/run/postgresql" in [t.split(":")[0] for t in services["postgres"]["tmpfs"]]
    assert services["postgres"]["user"] == "postgres"  # its entrypoint needs root otherwise
    assert mounts["mlflow"] == ["/data/mlartifacts"] and mounts["scheduler"] == ["/data/nearcast"]
    # Sized from the README: each API worker loads the model (~0.8 GB); a swap holds two.
    workers = int(_env(services["api"])["NEARCAST_WORKERS"])
    assert limits["api"] >= workers * 2 * 0.8e9 + 2**28
    assert limits["scheduler"] >= 3 * 2**30 and limits["mlflow"] >= 2**29
    assert all(limit <= 8 * 2**30 for limit in limits.values())
    env = _image_env()  # Keras and Matplotlib write their config under the tmpfs, not $HOME
    assert env["KERAS_HOME"].startswith("/tmp/") and env["MPLCONFIGDIR"].startswith("/tmp/")


def test_services_start_in_order_and_check_their_own_health() -> None:
    services = _services()
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "scheduler"):
        assert services[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert "/health" in json.dumps(services["mlflow"]["healthcheck"]["test"])
    assert services["scheduler"]["healthcheck"] == {"disable": True}
    assert "healthcheck" not in services["api"]  # the image's /readyz check
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)


def test_dockerfile_runtime_stage_is_non_root_slim_and_checks_readiness() -> None:
    builder, runtime = _stages()
    assert any(w == "RUN" and "--constraint constraints.txt" in r for w, r in builder)
    assert any(w == "RUN" and "pip wheel" in r for w, r in builder)
    words = [w for w, _ in runtime]
    assert runtime[0][1].startswith("${PYTHON_IMAGE}")
    run = " ".join(r for w, r in runtime if w == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in run, f"runtime stage runs {tool!r}"
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in runtime
    (user,) = [r for w, r in runtime if w == "USER"]
    assert user.split(":")[0] not in ("root", "0") and "useradd" in run
    assert words.index("USER") > words.index("COPY")
    (health,) = [r for w, r in runtime if w == "HEALTHCHECK"]
    assert "/readyz" in health and "NEARCAST_PORT" in health
    env = _image_env()
    assert ("EXPOSE", env["NEARCAST_PORT"]) in runtime and env["NEARCAST_HOST"] == "0.0.0.0"
    (cmd,) = [r for w, r in runtime if w == "CMD"]
    assert json.loads(cmd) == ["nearcast", "serve"]


def test_dockerignore_keeps_what_the_image_copies() -> None:
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        out = False
        for rule in rules:  # the last matching rule wins
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch(path, pattern) or path.startswith(pattern + "/"):
                out = not negate
        return out

    sources = [rest.split()[:-1] for word, rest in _instructions(DOCKERFILE.read_text())
               if word == "COPY" and not rest.startswith("--from")]
    paths = [p.rstrip("/") for group in sources for p in group]
    assert "service" in paths and "configs" in paths
    for path in paths:
        assert (REPO / path).exists(), path
        assert not ignored(path), f"{path} is copied but .dockerignore leaves it out"
    assert ignored(".venv") and ignored("tests") and ignored(".nearcast")


def test_connect_sets_mlflow_http_limits_so_calls_fail_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    for key in keys:
        monkeypatch.setenv(key, "999")  # nearcast's settings win over values already set
    closed = f"http://127.0.0.1:{free_port()}"
    settings = MlflowSettings(home=tmp_path, tracking_uri=closed, registry_timeout=2,
                              registry_retries=0, registry_backoff=0)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        client = settings.connect()
        assert [os.environ[k] for k in keys] == ["2", "0", "0"]
        assert settings.http_env() == dict(zip(keys, ["2", "0", "0"], strict=True))
        with pytest.raises(MlflowException, match=f"API request to {closed}"):
            client.get_experiment_by_name("x")  # refused, no retries: an error, not a hang
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert not (tmp_path / "artifacts").exists()  # a remote store creates no local folders
    defaults = MlflowSettings().http_env()
    assert defaults == dict(zip(keys, ["10", "3", "1"], strict=True))
