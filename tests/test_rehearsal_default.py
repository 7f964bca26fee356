"""The default scenario as a rehearsal: `nodeswap demo`, run as a user runs it, moves the default
workloads' pods under their budgets and shows the drain waiting on them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from nodeswap.sandbox.scenario import load_scenario


def test_demo_evicts_under_budgets_and_shows_the_wait() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KUBECONFIG"))}
    result = subprocess.run(
        [sys.executable, "-m", "nodeswap", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    workloads = load_scenario(None).kubernetes.workloads
    (web,) = [w for w in workloads if (w["kind"], w["metadata"]["name"]) == ("Deployment", "web")]
    evictions = [i for i, line in enumerate(lines) if " drain " in line and "evicted default/web-" in line]
    waits = [i for i, line in enumerate(lines) if " drain " in line and "waiting on PDB default/web:" in line]
    assert len(evictions) == web["spec"]["replicas"]  # every web pod was on an old node
    # The budget held an eviction that went ahead once a replacement was Ready.
    assert waits, result.stdout
    assert waits[0] < evictions[-1]
    assert re.search(r"waited [0-9.]+s on default/web", result.stdout), result.stdout
    assert "sandbox report: 0 PDB violations, 0 lost pods" in result.stdout
