"""`nodeswap` answers what needs no cloud without loading the SDKs: `--help` (of the tool and of a
command), `--version` and a command line it cannot parse. Each is run as a user runs it, in a fresh
interpreter, and ``python -X importtime`` lists every module that interpreter imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The SDKs and the sandbox's server: what makes a command that reaches the cloud slow to start.
HEAVY = ("boto3", "botocore", "kubernetes", "moto", "werkzeug")


def imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m nodeswap ARGS`` with no AWS configuration at all; its result and the
    top-level packages it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nodeswap", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    # Each line: "import time: <self us> | <cumulative us> | <indent><module>".
    modules = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return result, modules


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (["--help"], 0, "Replace the Kubernetes worker nodes"),
        (["--version"], 0, "nodeswap "),
        (["replace", "--help"], 0, "--max-unavailable"),
        (["plan", "--help"], 0, "Changes nothing"),
        (["sandbox", "--help"], 0, "Run a local AWS and Kubernetes sandbox"),
        (["replace", "--asg", "workers", "--no-such-option"], 2, "No such option"),
        (["replace", "--asg", "w", "--max-unavailable", "two"], 2, "Invalid value for '--max-unavailable'"),
        (["no-such-command"], 2, "No such command"),
    ],
)
def test_what_needs_no_cloud_loads_no_sdk(args: list[str], exit_code: int, says: str) -> None:
    result, modules = imported(*args)
    assert result.returncode == exit_code, result.stdout + result.stderr[-2000:]
    assert says in result.stdout + result.stderr
    assert "nodeswap" in modules  # the listing is real: it names what did load
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_command_that_runs_loads_the_sdks() -> None:
    """The other side of the same listing: a command that reaches AWS does load the SDKs (here it stops
    before its first call, for lack of a region), so the test above would see one that loaded."""
    result, modules = imported("status", "--asg", "workers")
    assert result.returncode == 2, result.stdout + result.stderr[-2000:]
    assert "no AWS region set" in result.stderr
    assert {"boto3", "botocore", "kubernetes"} <= modules
