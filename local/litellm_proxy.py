"""A real LiteLLM proxy on a real PostgreSQL for the local stack.

Uses the litellm-offline kit (../shared/litellm-offline, or LITELLM_OFFLINE_KIT) when it is present,
because this machine cannot download Prisma's engines. Otherwise takes the ordinary route for a
machine with internet: `pip install 'litellm[proxy]'`, a PostgreSQL cluster of our own, and LiteLLM
migrating its database at start-up.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from local.processes import free_port, running_pid, start_background, wait_until_healthy

REPO_ROOT = Path(__file__).resolve().parent.parent
LITELLM_CONFIG = REPO_ROOT / "local" / "litellm-config.yaml"
LITELLM_VERSION = "1.108.7"  # never 1.82.7 or 1.82.8 (malicious) or 1.107.0 (pulled)
# LiteLLM's Prometheus callback (local/litellm-config.yaml) imports it; litellm[proxy] does not bring it.
PROMETHEUS_CLIENT_VERSION = "0.26.0"
START_TIMEOUT_SECONDS = 240


@dataclass(frozen=True)
class LiteLLMEndpoint:
    base_url: str
    master_key: str


def offline_kit() -> Path | None:
    configured = os.environ.get("LITELLM_OFFLINE_KIT")
    kit = Path(configured) if configured else REPO_ROOT.parent / "shared" / "litellm-offline"
    return kit if (kit / "start.sh").exists() else None


def _read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, separator, value = line.partition("=")
        if separator:
            values[name.strip()] = value.strip()
    return values


def _healthy(base_url: str) -> bool:
    import httpx  # noqa: PLC0415 - only needed when probing an existing proxy

    try:
        return httpx.get(f"{base_url}/health/liveliness", timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def ensure_litellm(state_dir: Path, alert_url: str = "") -> LiteLLMEndpoint:
    """Start the proxy unless one of ours is running and healthy. Safe to call repeatedly.

    `alert_url` becomes LiteLLM's WEBHOOK_URL, where its budget alerts go (when it starts here).
    """
    state_dir.mkdir(parents=True, exist_ok=True)  # a first run of the integration tests alone has none yet
    kit = offline_kit()
    alert_environment = {"WEBHOOK_URL": alert_url} if alert_url else {}
    if kit:
        return _ensure_with_kit(kit, state_dir, alert_environment)
    return _ensure_with_pip(state_dir, alert_environment)


def stop_litellm(state_dir: Path) -> None:
    kit = offline_kit()
    target = kit_target(state_dir)
    if kit and target.exists():
        subprocess.run([str(kit / "stop.sh"), str(target)], check=False, capture_output=True)
    from local.processes import stop_background  # noqa: PLC0415 - avoids a cycle at import

    stop_background("litellm", state_dir)
    pg_data = postgres_state_dir(state_dir) / "litellm-pg"
    if (pg_data / "postmaster.pid").exists():
        _run_as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(pg_data), "stop", "-m", "fast"], check=False)


# -- the offline kit --------------------------------------------------------------------------------


def _postgres_can_reach(path: Path) -> bool:
    """Whether a non-owner (PostgreSQL's own user, when we run as root) can traverse every parent."""
    if os.geteuid() != 0:
        return True  # PostgreSQL then runs as us
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in [path, *path.parents] if parent.exists())


def postgres_state_dir(state_dir: Path) -> Path:
    """Where PostgreSQL's data (and the kit, which holds it) lives: the state directory when
    PostgreSQL, run as the postgres user under root, can reach it; else /var/tmp, per checkout."""
    if _postgres_can_reach(state_dir):
        return state_dir
    checkout = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"kintone-llm-keys-{checkout}"  # noqa: S108 - a fixed, per-checkout name


def kit_target(state_dir: Path) -> Path:
    return postgres_state_dir(state_dir) / "litellm-offline"


def _config_stamp() -> str:
    """What the running proxy was started with; a change (config, pinned extras) means a restart."""
    return hashlib.sha256(LITELLM_CONFIG.read_bytes() + PROMETHEUS_CLIENT_VERSION.encode()).hexdigest()


def _install_prometheus_client(python: Path, log) -> None:
    """The pinned prometheus_client into the proxy's own venv (the kit's venv is built from its
    constraints, which leave it out); a no-op when it is there."""
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         f"prometheus_client=={PROMETHEUS_CLIENT_VERSION}"],
        check=True, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _ensure_with_kit(kit: Path, state_dir: Path, alert_environment: dict[str, str]) -> LiteLLMEndpoint:
    target = kit_target(state_dir)
    env_file = target / "state" / "litellm.env"
    stamp_file = state_dir / "litellm-config.stamp"
    if env_file.exists():
        values = _read_env_file(env_file)
        current = stamp_file.exists() and stamp_file.read_text() == _config_stamp()
        if current and _healthy(values.get("LITELLM_URL", "")):
            return LiteLLMEndpoint(values["LITELLM_URL"], values["LITELLM_MASTER_KEY"])
        subprocess.run([str(kit / "stop.sh"), str(target)], check=False, capture_output=True)
    with (state_dir / "litellm-setup.log").open("ab") as log:
        subprocess.run([str(kit / "setup.sh"), str(target)], check=True, stdout=log, stderr=subprocess.STDOUT)
        _install_prometheus_client(target / "venv" / "bin" / "python", log)
        environment = {
            **os.environ,
            **alert_environment,
            "LITELLM_MASTER_KEY": "sk-local-" + secrets.token_urlsafe(24),
        }
        started = subprocess.run(
            [
                str(kit / "start.sh"),
                str(target),
                "--port",
                "auto",
                "--pg-port",
                "auto",
                "--config",
                str(LITELLM_CONFIG),
                "--timeout",
                str(START_TIMEOUT_SECONDS),
            ],
            check=False,
            stdout=subprocess.PIPE,
            stderr=log,
            env=environment,
        )
    if started.returncode != 0:
        raise RuntimeError(f"LiteLLM did not start; see {state_dir / 'litellm-setup.log'}")
    stamp_file.write_text(_config_stamp())
    values = _read_env_file(env_file)
    return LiteLLMEndpoint(values["LITELLM_URL"], values["LITELLM_MASTER_KEY"])


# -- the ordinary route (a machine with internet) ---------------------------------------------------


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
    if not versions:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True)
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
    return versions[-1]


def _run_as_postgres(argv: list[str], check: bool = True) -> None:
    # PostgreSQL refuses to run as root.
    command = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv
    subprocess.run(command, check=check, capture_output=True)


def _ensure_with_pip(state_dir: Path, alert_environment: dict[str, str]) -> LiteLLMEndpoint:
    endpoint_file = state_dir / "litellm.endpoint"
    if endpoint_file.exists() and running_pid("litellm", state_dir):
        values = _read_env_file(endpoint_file)
        if _healthy(values["LITELLM_URL"]):
            return LiteLLMEndpoint(values["LITELLM_URL"], values["LITELLM_MASTER_KEY"])

    venv = state_dir / "litellm-venv"
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                f"litellm[proxy]=={LITELLM_VERSION}",
                "prisma",
                f"prometheus_client=={PROMETHEUS_CLIENT_VERSION}",
            ],
            check=True,
        )

    pg_bin = _pg_bin()
    pg_data = postgres_state_dir(state_dir) / "litellm-pg"
    pg_port = free_port()
    if not (pg_data / "PG_VERSION").exists():
        pg_data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pg_data, "postgres", "postgres")
        _run_as_postgres([str(pg_bin / "initdb"), "-D", str(pg_data), "-A", "trust", "-U", "postgres"])
    _run_as_postgres(
        [
            str(pg_bin / "pg_ctl"),
            "-D",
            str(pg_data),
            "-l",
            str(pg_data / "server.log"),
            "-o",
            f"-p {pg_port} -k '' -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        ]
    )
    _run_as_postgres(
        [str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "litellm"], check=False
    )

    port = free_port()
    master_key = "sk-local-" + secrets.token_urlsafe(24)
    start_background(
        "litellm",
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(LITELLM_CONFIG),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        state_dir,
        env={
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg_port}/litellm",
            "LITELLM_MASTER_KEY": master_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            **alert_environment,
        },
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{base_url}/health/readiness", START_TIMEOUT_SECONDS, "litellm", state_dir)
    endpoint_file.write_text(f"LITELLM_URL={base_url}\nLITELLM_MASTER_KEY={master_key}\n")
    return LiteLLMEndpoint(base_url, master_key)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    log: Path


def _pid_alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False  # no pid file, or an empty one: not started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by the postgres user
    return True


def litellm_status(state_dir: Path) -> list[ServiceStatus]:
    """LiteLLM and its PostgreSQL: whether each runs, and where its log is."""
    if offline_kit():
        state = kit_target(state_dir) / "state"
        return [
            ServiceStatus("litellm", _pid_alive(state / "litellm.pid"), state / "litellm.log"),
            ServiceStatus(
                "postgresql",
                _pid_alive(state / "pg" / "data" / "postmaster.pid"),
                state / "pg" / "postgres.log",
            ),
        ]
    pg_data = postgres_state_dir(state_dir) / "litellm-pg"
    return [
        ServiceStatus("litellm", running_pid("litellm", state_dir) is not None, state_dir / "litellm.log"),
        ServiceStatus("postgresql", _pid_alive(pg_data / "postmaster.pid"), pg_data / "server.log"),
    ]
