"""A replacement of the larger rehearsal, measured against its lower bound, in one run.

Run: python benchmarks/rollout_large.py [--scenario configs/rehearsal-large.yaml] [--faults RATE]

With ``--faults 0.1`` both APIs misbehave throughout, each kind at that rate: Kubernetes answers 500, 503
and 429 and drops connections, Auto Scaling and EC2 throttle.

The lower bound is what the cluster itself imposes: new instances boot, join and become Ready, then
the slowest PDB moves its pods in waves of ``disruptionsAllowed`` at full strength, each wave waiting
for the replacements to start and pass their readiness probe (a StatefulSet pod also waits for its
predecessor's preStop, as it comes back under the same name). Prints one JSON object with both
figures and their ratio, and the estimate `nodeswap plan` makes beforehand (its error against the
measured time); the rollout runs the real CLI engine over HTTP against the sandbox.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from nodeswap.aws import Aws
from nodeswap.kube import Kube
from nodeswap.plan import Settings
from nodeswap.rollout import plan_groups, replace_groups
from nodeswap.run import RolloutSettings
from nodeswap.sandbox.scenario import FaultError, FaultSpec, Scenario, load_scenario
from nodeswap.sandbox.server import Sandbox

USER_AGENT = "nodeswap/"  # nodeswap's requests carry nodeswap/<version>
DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "rehearsal-large.yaml"


def _scaled(value: int | str, total: int) -> int:
    return value if isinstance(value, int) else math.ceil(int(value.rstrip("%")) * total / 100)


def lower_bound(scenario: Scenario) -> dict[str, float | str]:
    kube = scenario.kubernetes
    join = (
        scenario.timing.activity_seconds
        + scenario.timing.boot_seconds
        + kube.join_seconds
        + kube.node_ready_seconds
    )
    workloads = {
        w["metadata"]["name"]: w for w in kube.workloads if w["kind"] in ("Deployment", "StatefulSet")
    }
    waves: dict[str, float] = {}
    for pdb in (w for w in kube.workloads if w["kind"] == "PodDisruptionBudget"):
        app = pdb["spec"]["selector"]["matchLabels"]["app"]
        workload = workloads[app]
        replicas = workload["spec"]["replicas"]
        spec = pdb["spec"]
        desired = (
            replicas - _scaled(spec["maxUnavailable"], replicas)
            if "maxUnavailable" in spec
            else _scaled(spec["minAvailable"], replicas)
        )
        allowed = max(replicas - desired, 1)
        container = workload["spec"]["template"]["spec"]["containers"][0]
        ready = container.get("readinessProbe", {}).get("initialDelaySeconds", 0)
        wave = kube.pod_start_seconds + ready
        if workload["kind"] == "StatefulSet":
            wave += container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        waves[pdb["metadata"]["name"]] = math.ceil(replicas / allowed) * wave
    slowest = max(waves, key=waves.__getitem__)
    return {
        "join_seconds": join,
        "slowest_pdb": slowest,
        "pdb_waves_seconds": waves[slowest],
        "lower_bound_seconds": join + waves[slowest],
    }


def requests_per_node(requests: list[dict[str, Any]], replaced: int) -> dict[str, Any]:
    """The rollout's requests (nodeswap's: the sandbox's workload controllers make the rest) by API, and
    per replaced node: AWS's count against Auto Scaling's request budget, which cluster-autoscaler
    shares."""
    ours = [r for r in requests if USER_AGENT in r["user_agent"]]
    by_api = {api: sum(1 for r in ours if r["api"] == api) for api in ("aws", "kube")}
    operations: dict[str, int] = {}
    for r in ours:
        if r["api"] == "aws":
            operations[r["operation"]] = operations.get(r["operation"], 0) + 1
    return {
        "aws_requests": by_api["aws"],
        "kube_requests": by_api["kube"],
        "aws_requests_per_node": round(by_api["aws"] / max(replaced, 1), 2),
        "kube_requests_per_node": round(by_api["kube"] / max(replaced, 1), 2),
        "aws_operations": dict(sorted(operations.items(), key=lambda item: -item[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenario", type=Path, default=DEFAULT)
    parser.add_argument("--faults", type=float, default=0.0, help="rate of each injected fault")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    sandbox = Sandbox(scenario)
    sandbox.start()
    if args.faults:
        kinds: list[tuple[Literal["aws", "kube"], FaultError]] = [
            ("kube", "internal"), ("kube", "unavailable"), ("kube", "throttle"), ("kube", "drop"),
            ("aws", "throttle"),
        ]  # fmt: skip
        sandbox.faults.replace([FaultSpec(api=api, error=error, rate=args.faults) for api, error in kinds])
    try:
        os.environ.update(sandbox.environment())
        with tempfile.TemporaryDirectory() as directory:
            kubeconfig = Path(directory) / "kubeconfig"
            kubeconfig.write_text(sandbox.kubeconfig())
            aws, kube = Aws(region=scenario.region), Kube(kubeconfig=str(kubeconfig))
            assert sandbox.world is not None
            image = sandbox.world.images["new"]
            settings = RolloutSettings(plan=Settings(image=image))
            # The first group is the one replaced; a rehearsal's other groups share the cluster, left alone.
            names = [scenario.groups[0].name]
            groups = aws.groups(names, full=True)
            # What `nodeswap plan` predicts, from the same world just before the rollout.
            _, (plan,) = plan_groups(aws, kube, groups, lambda _name: settings, lambda _event: None)
            assert plan.estimate is not None
            # The rollout's requests are counted as `nodeswap replace` makes them: from its own first read,
            # with an AWS client that has described nothing yet.
            planned = len(sandbox.report()["requests"])
            aws = Aws(region=scenario.region)
            groups = aws.groups(names, full=True)
            started = time.monotonic()
            (summary,) = replace_groups(aws, kube, groups, lambda _name: settings, lambda _event: None)
            measured = time.monotonic() - started
        report = sandbox.report()
    finally:
        sandbox.stop()
    bound = lower_bound(scenario)
    result: dict[str, Any] = {
        "rollout_seconds": round(measured, 2),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in bound.items()},
        "ratio": round(measured / float(bound["lower_bound_seconds"]), 2),
        "plan_estimate_seconds": round(plan.estimate.seconds, 2),
        "plan_critical_path": plan.estimate.critical_path,
        "estimate_error": round(plan.estimate.seconds / measured - 1, 3),
        "phases": summary.as_dict()["phase_seconds"],
        "nodes_replaced": len(summary.replaced),
        "pods_evicted": summary.evicted,
        "pdb_violations": len(report["pdb_violations"]),
        "lost_pods": len(report["lost_pods"]),
        "api_requests": len(report["requests"]),
        **requests_per_node(report["requests"][planned:], len(summary.replaced)),
        "faults_injected": sum(1 for r in report["requests"] if r.get("fault")),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
