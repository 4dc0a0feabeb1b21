"""Background processes of the local stack: started in their own session, logged and stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_background(name: str, argv: list[str], state_dir: Path, env: dict[str, str] | None = None) -> int:
    """Start `argv` detached, logging to STATE_DIR/NAME.log, and record its pid in NAME.pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    (state_dir / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def running_pid(name: str, state_dir: Path) -> int | None:
    pid_file = state_dir / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    # A process that exited but was not yet reaped (a zombie) still answers kill(0). Its state says
    # so; its command line would not do, as it also reads empty while a new process is exec'ing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None
    return None if state in ("Z", "X") else pid


def stop_background(name: str, state_dir: Path, timeout_seconds: float = 10.0) -> bool:
    pid = running_pid(name, state_dir)
    (state_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        waited = os.waitpid(pid, os.WNOHANG) if _is_child(pid) else (0, 0)
        if waited[0] == pid:
            return True
        time.sleep(0.05)  # polling a process's exit: there is no event to wait on for a non-child
    os.killpg(pid, signal.SIGKILL)
    return True


def _is_child(pid: int) -> bool:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split()[3]) == os.getpid()
    except (FileNotFoundError, IndexError, ValueError):
        return False


def wait_until_healthy(url: str, timeout_seconds: float, process_name: str, state_dir: Path) -> None:
    """Wait for a service's health URL; fail early with its log tail if the process died."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        if running_pid(process_name, state_dir) is None:
            break
        time.sleep(0.1)  # readiness of another process: nothing to block on but its socket
    log_tail = (state_dir / f"{process_name}.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{process_name} did not become healthy at {url}; last log lines:\n{log_tail}")
