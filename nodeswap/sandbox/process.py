"""Running the sandbox as a process: in the foreground, or detached with its state in a directory.

The directory holds ``sandbox.json`` (pid and endpoints, present while the sandbox runs), ``env.sh``
(the variables that point SDKs at it) and ``sandbox.log``. A detached sandbox tells its parent it is
ready through a pipe, so ``up --detach`` returns the moment the sandbox can serve, and ``down`` waits
for the process to exit through a pidfd: neither polls.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodeswap.errors import OperationError, UsageError

STATE_FILE = "sandbox.json"
ENV_FILE = "env.sh"
KUBECONFIG_FILE = "kubeconfig"
LOG_FILE = "sandbox.log"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


def running_state(directory: Path) -> dict[str, Any] | None:
    """The state of the sandbox running from ``directory``, or None if none is running."""
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("pid", 0))) else None


def serve(
    scenario_path: Path | None,
    directory: Path,
    on_ready: Callable[[dict[str, Any]], None],
    *,
    enforce_iam: bool = False,
) -> None:
    """Run a sandbox until SIGINT or SIGTERM, then shut it down and remove its state file.
    ``enforce_iam`` enforces IAM whatever the scenario says (its ``iam.enforce``)."""
    from nodeswap.sandbox.scenario import IamSpec, load_scenario  # noqa: PLC0415 - moto loads only when serving
    from nodeswap.sandbox.server import Sandbox  # noqa: PLC0415

    scenario = load_scenario(scenario_path)
    if enforce_iam:
        scenario = scenario.model_copy(update={"iam": IamSpec(enforce=True)})
    _refuse_if_running(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox(scenario)
    sandbox.start()
    try:
        state = {"pid": os.getpid(), **sandbox.info()}
        kubeconfig = (directory / KUBECONFIG_FILE).resolve()
        kubeconfig.write_text(sandbox.kubeconfig())
        env = {**sandbox.environment(), "KUBECONFIG": str(kubeconfig)}
        (directory / ENV_FILE).write_text(_env_script(env))
        _write_atomically(directory / STATE_FILE, json.dumps(state, indent=2))
        on_ready(state)
        stop.wait()
    finally:
        (directory / STATE_FILE).unlink(missing_ok=True)
        sandbox.stop()


def start_detached(
    scenario_path: Path | None, directory: Path, *, enforce_iam: bool = False
) -> dict[str, Any]:
    """Start a sandbox in its own session and return its state once it serves."""
    _refuse_if_running(directory)
    directory.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    command = [
        sys.executable,
        "-m",
        "nodeswap.sandbox",
        "--dir",
        str(directory),
        "--ready-fd",
        str(write_end),
    ]
    if scenario_path is not None:
        command += ["--scenario", str(scenario_path)]
    if enforce_iam:
        command.append("--enforce-iam")
    with open(directory / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,
        )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        readable, _, _ = select.select([ready], [], [], START_TIMEOUT_SECONDS)
        message = ready.read() if readable else b""
    if not message:
        if process.poll() is None:
            process.kill()
        process.wait()
        raise OperationError(
            f"the sandbox did not start; the end of {directory / LOG_FILE}:\n{_tail(directory / LOG_FILE)}",
            "fix what the log reports and run `nodeswap sandbox up` again",
        )
    state: dict[str, Any] = json.loads(message)
    return state


def stop_detached(directory: Path) -> bool:
    """Stop the sandbox running from ``directory``; False if none was running."""
    state = running_state(directory)
    if state is None:
        (directory / STATE_FILE).unlink(missing_ok=True)
        return False
    pid = int(state["pid"])
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
        exited, _, _ = select.select([pidfd], [], [], STOP_TIMEOUT_SECONDS)
        if not exited:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], STOP_TIMEOUT_SECONDS)
    finally:
        os.close(pidfd)
    (directory / STATE_FILE).unlink(missing_ok=True)
    return True


def fetch(directory: Path, path: str) -> Any:
    """GET one of the running sandbox's admin endpoints."""
    state = running_state(directory)
    if state is None:
        raise UsageError(
            f"no sandbox is running from {directory}",
            f"start one with `nodeswap sandbox up --detach --dir {directory}`",
        )
    url = f"{state['aws_endpoint']}/_sandbox/{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError) as exc:
        raise OperationError(
            f"the sandbox at {state['aws_endpoint']} did not answer: {exc}",
            f"see {directory / LOG_FILE}; restart it with `nodeswap sandbox down` and `up`",
        ) from exc


def _refuse_if_running(directory: Path) -> None:
    state = running_state(directory)
    if state is not None:
        raise UsageError(
            f"a sandbox is already running from {directory} (pid {state['pid']})",
            f"use it (source {directory / ENV_FILE}) "
            f"or stop it with `nodeswap sandbox down --dir {directory}`",
        )


def _env_script(env: dict[str, str]) -> str:
    lines = [
        "# nodeswap sandbox: `source` this file to point boto3, the AWS CLI, kubectl and nodeswap at it."
    ]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in env.items()]
    if "AWS_DEFAULT_REGION" in env:
        lines.append(f"export AWS_REGION={shlex.quote(env['AWS_DEFAULT_REGION'])}")
    # A profile or session token in the environment would take precedence over the dummy keys.
    lines.append("unset AWS_PROFILE AWS_SESSION_TOKEN")
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A recycled pid belongs to another program: only a nodeswap sandbox counts.
    return b"nodeswap" in cmdline


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
