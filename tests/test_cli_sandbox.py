"""`nodeswap sandbox up/down/report` as a user runs them: real processes, env.sh, plain boto3."""

from __future__ import annotations

import json
import os
import shlex
import signal
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


def next_commands(output: str) -> list[str]:
    """The commands `sandbox up` prints under "next:", without their comments."""
    lines = output.partition("\nnext:\n")[2].splitlines()
    return [line.partition("#")[0].strip() for line in lines if "#" in line]


def new_image(env: dict[str, str]) -> str:
    """The AMI the sandbox tags as the new bake, found with plain boto3 in env.sh's environment."""
    script = (
        "import boto3; print(boto3.client('ec2').describe_images(Filters=[{'Name': "
        "'tag:nodeswap-sandbox:image', 'Values': ['new']}])['Images'][0]['ImageId'])"
    )
    found = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**without_aws(dict(os.environ)), **env},
    )
    return found.stdout.strip()


def without_aws(environment: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environment.items() if not k.startswith(("AWS_", "KUBECONFIG"))}


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("nodeswap ")


def test_detached_sandbox_lifecycle(tmp_path: Path) -> None:
    directory = tmp_path / "sbx"
    started = nodeswap("sandbox", "up", "--detach", "--dir", str(directory))
    assert started.returncode == 0, started.stderr
    pid = json.loads((directory / "sandbox.json").read_text())["pid"]
    try:
        env = read_env(directory / "env.sh")
        ami = new_image(env)
        assert next_commands(started.stdout) == [
            f"source {directory}/env.sh",
            f"nodeswap plan --asg workers --ami {ami}",
            f"nodeswap replace --asg workers --ami {ami}",
            f"nodeswap sandbox report --dir {directory}",
            f"nodeswap sandbox down --dir {directory}",
        ]
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
            env=without_aws(dict(os.environ)),
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
            ("aws", "DescribeImages"),
            ("aws", "DescribeAutoScalingGroups"),
            *[("kube", verb) for verb in ("get",) * (len(requests) - 3)],
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


def test_foreground_sandbox_prints_a_rehearsal_that_runs_as_printed(tmp_path: Path) -> None:
    """`up` in the foreground names the new AMI in commands that work pasted into a shell, and stops on
    Ctrl-C."""
    directory = tmp_path / "sbx"
    sandbox = subprocess.Popen(
        [*NODESWAP, "sandbox", "up", "--dir", str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sandbox.stdout is not None
        printed = ""
        while not printed.endswith("Ctrl-C stops it\n"):
            line = sandbox.stdout.readline()
            assert line, f"the sandbox ended before it was ready: {printed}"
            printed += line
        ami = new_image(read_env(directory / "env.sh"))
        source, plan, replace, report = next_commands(printed)
        assert (source, plan, replace) == (
            f"source {directory}/env.sh",
            f"nodeswap plan --asg workers --ami {ami}",
            f"nodeswap replace --asg workers --ami {ami}",
        )
        assert report == f"nodeswap sandbox report --dir {directory}"
        pasted = subprocess.run(
            ["bash", "-c", f"{source} && {plan} --output json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=without_aws(dict(os.environ)),
        )
        assert pasted.returncode == 0, pasted.stdout + pasted.stderr
        (group,) = json.loads(pasted.stdout)["groups"]
        assert len(group["instances"]) == 3
        assert {i["reason"].rpartition(", ")[2] for i in group["instances"]} == {f"rolling out {ami}"}
    finally:
        sandbox.send_signal(signal.SIGINT)
        stopped, _ = sandbox.communicate(timeout=30)
    assert sandbox.returncode == 0
    assert stopped.strip().endswith("sandbox stopped")
    assert not (directory / "sandbox.json").exists()


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
