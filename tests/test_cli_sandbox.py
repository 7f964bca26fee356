"""`nodeswap sandbox up/down/report` as a user runs them: real processes, env.sh, plain boto3."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nodeswap.cli import app

NODESWAP = [sys.executable, "-m", "nodeswap"]


def nodeswap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NODESWAP, *args], capture_output=True, text=True, timeout=120, check=False)


def process_running(pid: int) -> bool:
    """True while the process exists and has not exited (an exited one may wait briefly to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def read_env(path: Path) -> dict[str, str]:
    """The variables env.sh exports, as `source` would set them."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
    return env


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("nodeswap ")


def test_detached_sandbox_lifecycle(tmp_path: Path) -> None:
    directory = tmp_path / "sbx"
    started = nodeswap("sandbox", "up", "--detach", "--dir", str(directory))
    assert started.returncode == 0, started.stderr
    assert f"source {directory}/env.sh" in started.stdout
    pid = json.loads((directory / "sandbox.json").read_text())["pid"]
    try:
        env = read_env(directory / "env.sh")
        assert set(env) >= {
            "AWS_ENDPOINT_URL",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        # `source env.sh` is all plain boto3 needs: endpoint, region and credentials from the environment.
        script = (
            "import boto3; groups = boto3.client('autoscaling').describe_auto_scaling_groups();"
            "print(len(groups['AutoScalingGroups'][0]['Instances']))"
        )
        shell = f"source {directory}/env.sh && {shlex.quote(sys.executable)} -c {shlex.quote(script)}"
        seen = subprocess.run(
            ["bash", "-c", shell],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        assert seen.stdout.strip() == "3", seen.stderr

        kubectl = f"source {directory}/env.sh && kubectl get nodes -o name"
        nodes = subprocess.run(
            ["bash", "-c", kubectl], capture_output=True, text=True, timeout=60, check=False
        )
        assert len(nodes.stdout.split()) == 3, nodes.stderr

        again = nodeswap("sandbox", "up", "--detach", "--dir", str(directory))
        assert again.returncode == 2
        assert "already running" in again.stderr

        report = nodeswap("sandbox", "report", "--dir", str(directory))
        assert report.returncode == 0, report.stderr
        observed = json.loads(report.stdout)
        assert {"requests", "pdb_violations", "lost_pods", "under_strength"} <= set(observed)
        requests = observed["requests"]
        assert [(r["api"], r["operation"]) for r in requests] == [
            ("aws", "DescribeAutoScalingGroups"),
            *[("kube", verb) for verb in ("get",) * (len(requests) - 2)],
            ("kube", "list"),
        ]
        assert {"api", "operation", "mutating", "status", "user_agent"} <= set(requests[0])
    finally:
        stopped = nodeswap("sandbox", "down", "--dir", str(directory))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not process_running(pid)
    assert not (directory / "sandbox.json").exists()
    assert "no sandbox was running" in nodeswap("sandbox", "down", "--dir", str(directory)).stdout


def test_report_without_a_sandbox_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["sandbox", "report", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"no sandbox is running from {tmp_path}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("detach", [True, False])
def test_malformed_scenario_starts_nothing(tmp_path: Path, detach: bool) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("groups:\n  - name: workers\n    max_size: lots\n")
    directory = tmp_path / "sbx"
    args = ["sandbox", "up", "--scenario", str(scenario), "--dir", str(directory)] + (
        ["--detach"] if detach else []
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert str(scenario) in result.output
    assert "field groups.0.max_size" in result.output
    assert "Traceback" not in result.output
    assert not directory.exists()
