"""`nodeswap plan` end to end: the real CLI process against the sandbox over HTTP. On a cluster built to
trip every check (configs/audit-findings.yaml) it names each blocker and warning with its object and
fix and exits 3; `replace` refuses on exactly the same blockers; warnings alone exit 0; pods that fit
no new node block; waves follow --surge; bad input is a clear error. Nothing is ever changed."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from nodeswap.sandbox.scenario import Scenario, load_scenario
from nodeswap.sandbox.server import Sandbox
from tests.e2e import Cli, changes, demo_scenario, ours
from tests.sandbox_client import SandboxClient

AUDIT = Path(__file__).resolve().parents[1] / "configs" / "audit-findings.yaml"
PLAN_ALL = ("plan", "--asg", "workers", "--all")

# What configs/audit-findings.yaml is built to trip: (check, subject). Pods of StatefulSets have
# stable names, so every subject is known in advance.
BLOCKERS = [
    ("pdb-allows-no-disruption", "PodDisruptionBudget default/locked"),
    ("multiple-pdbs", "pod default/shared-0"),
    ("no-controller", "pod default/loner"),
    ("emptydir", "pod default/scratch-0"),
    ("do-not-disrupt", "pod default/pinned-0"),  # cluster-autoscaler.kubernetes.io/safe-to-evict
    ("do-not-disrupt", "pod default/karpenter-pinned-0"),  # karpenter.sh/do-not-disrupt
    ("pdb-selects-no-pods", "PodDisruptionBudget default/orphan"),
]
WARNINGS = [
    ("no-readiness-probe", "Deployment default/noprobe"),
    ("single-replica", "Deployment default/solo"),
    ("no-pdb", "Deployment default/unguarded"),
    ("no-prestop", "Deployment default/frontend"),
    ("grace-not-above-prestop", "Deployment default/hasty"),
    ("pdb-serializes-drain", "PodDisruptionBudget default/api"),
]


# A CLI run and the requests nodeswap made to the sandbox while it ran.
Run = tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]


def run_counted(world: SandboxClient, cli: Cli, *args: str) -> Run:
    before = len(ours(world))
    result = cli(*args)
    return result, ours(world)[before:]


def pairs(findings: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(f["check"], f["subject"]) for f in findings}


def one_group(report: dict[str, Any]) -> dict[str, Any]:
    (group,) = report["groups"]
    assert group["group"] == "workers"
    found: dict[str, Any] = group
    return found


@contextmanager
def running(scenario: Scenario) -> Iterator[SandboxClient]:
    sandbox = Sandbox(scenario)
    sandbox.start()
    try:
        yield SandboxClient(sandbox)
    finally:
        sandbox.stop()


class TestAuditFindings:
    """`plan --asg workers --all` on configs/audit-findings.yaml, run once per output format."""

    # The sandboxes of a process share moto's backend, so one runs at a time: a class-scoped sandbox
    # stops when its class's last test ends, before any later test starts its own.
    @pytest.fixture(scope="class")
    def audit_world(self) -> Iterator[SandboxClient]:
        """The audit-findings scenario as a user starts it, shared by these read-only tests."""
        with running(load_scenario(AUDIT)) as client:
            yield client

    @pytest.fixture(scope="class")
    def audit_cli(self, audit_world: SandboxClient, tmp_path_factory: pytest.TempPathFactory) -> Cli:
        return Cli(audit_world, tmp_path_factory.mktemp("audit"))

    @pytest.fixture(scope="class")
    def planned(self, audit_world: SandboxClient, audit_cli: Cli) -> Run:
        return run_counted(audit_world, audit_cli, *PLAN_ALL, "--output", "json")

    @pytest.fixture(scope="class")
    def report(self, planned: Run) -> dict[str, Any]:
        result, _ = planned
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def test_exits_3_and_says_blocked(self, planned: Run) -> None:
        result, _ = planned
        assert result.returncode == 3, result.stdout + result.stderr
        assert json.loads(result.stdout)["blocked"] is True
        assert "Traceback" not in result.stderr

    def test_reads_aws_and_kubernetes_and_changes_nothing(self, planned: Run) -> None:
        _, requests = planned
        assert changes(requests) == []
        reads = {r["api"] for r in requests if not r["mutating"]}
        assert reads == {"aws", "kube"}  # it did look: the group in AWS, the pods in Kubernetes
        operations = {r["operation"] for r in requests}
        assert "DescribeAutoScalingGroups" in operations

    @pytest.mark.parametrize(
        ("kind", "other", "check", "subject"),
        [("blockers", "warnings", *b) for b in BLOCKERS] + [("warnings", "blockers", *w) for w in WARNINGS],
        ids=[f"blocker:{c}:{s}" for c, s in BLOCKERS] + [f"warning:{c}:{s}" for c, s in WARNINGS],
    )
    def test_each_finding_names_its_object_and_fix(
        self, report: dict[str, Any], kind: str, other: str, check: str, subject: str
    ) -> None:
        """Reported once, under its own section only, with a cause and a remedy."""
        group = one_group(report)
        found = [f for f in group[kind] if (f["check"], f["subject"]) == (check, subject)]
        assert len(found) == 1, sorted(pairs(group[kind]))
        assert found[0]["cause"].strip()
        assert found[0]["remedy"].strip()
        assert (check, subject) not in pairs(group[other])

    def test_blockers_are_only_the_ones_the_scenario_sets_up(self, report: dict[str, Any]) -> None:
        """No blocker beyond the workload ones planted: the group itself (nodes, capacity, fit) is fine."""
        group = one_group(report)
        assert pairs(group["blockers"]) == set(BLOCKERS)
        assert group["fit"]["checked"] is True
        assert group["fit"]["fits"] is True
        assert group["pods"]["block"] == 4  # loner, scratch-0, pinned-0 and karpenter-pinned-0
        assert len(group["instances"]) == 3

    def test_text_output_names_blockers_and_warnings_and_says_blocked(
        self, audit_world: SandboxClient, audit_cli: Cli
    ) -> None:
        result, requests = run_counted(audit_world, audit_cli, *PLAN_ALL)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stdout.splitlines()

        def row(check: str) -> str:
            """The first line of the table row of a check: its check and object cells."""
            return next((line for line in lines if f" {check} " in line), f"no row for {check}")

        assert "Blockers (7)" in result.stdout
        assert "pod default/loner" in row("no-controller")
        assert "PodDisruptionBudget default/locked" in row("pdb-allows-no-disruption")
        assert "pod default/shared-0" in row("multiple-pdbs")
        assert "Warnings (" in result.stdout
        assert "Deployment default/hasty" in row("grace-not-above-prestop")
        assert "Deployment default/unguarded" in row("no-pdb")
        assert lines[-1].startswith("blocked: `replace` would refuse to start")
        assert changes(requests) == []

    def test_replace_refuses_on_exactly_the_plans_blockers(
        self, audit_world: SandboxClient, audit_cli: Cli, report: dict[str, Any]
    ) -> None:
        before = audit_world.group()
        result, requests = run_counted(
            audit_world, audit_cli, "replace", "--asg", "workers", "--all", "--yes", "--output", "json"
        )
        assert result.returncode == 3, result.stdout + result.stderr
        events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        refused = {(e["check"], e["blocker"]) for e in events if e["phase"] == "preflight" and "blocker" in e}
        assert refused
        assert refused == pairs(one_group(report)["blockers"])
        assert changes(requests) == []
        assert audit_world.group()["DesiredCapacity"] == before["DesiredCapacity"]


class TestDemo:
    """Read-only runs against the demo scenario: warnings but no blocker."""

    @pytest.fixture(scope="class")
    def demo_world(self) -> Iterator[SandboxClient]:
        with running(Scenario.model_validate(demo_scenario())) as client:
            yield client

    @pytest.fixture(scope="class")
    def demo_cli(self, demo_world: SandboxClient, tmp_path_factory: pytest.TempPathFactory) -> Cli:
        return Cli(demo_world, tmp_path_factory.mktemp("demo"))

    def test_warnings_alone_exit_0(self, demo_world: SandboxClient, demo_cli: Cli) -> None:
        result, requests = run_counted(demo_world, demo_cli, *PLAN_ALL, "--output", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["blocked"] is False
        group = one_group(report)
        assert group["blockers"] == []
        # web's budget lets one of its 6 pods go at a time, and they are on all 3 old nodes.
        assert ("pdb-serializes-drain", "PodDisruptionBudget default/web") in pairs(group["warnings"])
        assert changes(requests) == []
        assert requests  # it did read the world

    def test_text_says_ready_when_only_warnings(self, demo_world: SandboxClient, demo_cli: Cli) -> None:
        result = demo_cli(*PLAN_ALL)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Warnings (" in result.stdout
        assert "Blockers" not in result.stdout
        assert result.stdout.splitlines()[-1].startswith("ready: `replace` with the same options may start")

    def test_surge_1_makes_one_wave_per_instance(self, demo_world: SandboxClient, demo_cli: Cli) -> None:
        result = demo_cli(*PLAN_ALL, "--surge", "1", "--output", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        group = one_group(json.loads(result.stdout))
        assert [len(wave) for wave in group["waves"]] == [1, 1, 1]
        instances = {i["InstanceId"] for i in demo_world.group()["Instances"]}
        assert {i for wave in group["waves"] for i in wave} == instances
        assert group["capacity"]["surge"] == 1
        assert group["capacity"]["max_size_needed"] == 4
        assert group["estimate"]["waves"] == 3

    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["--asg", "nope"], "no Auto Scaling group named nope in region us-east-1"),
            (
                ["--asg", "workers", "--surge", "0"],
                "--surge: '0' is out of range; a surge is 1 or more instances, or 1% to 100%",
            ),
            ([], "name the groups with --asg"),
        ],
    )
    def test_bad_input_is_a_clear_error(
        self, demo_world: SandboxClient, demo_cli: Cli, args: list[str], says: str
    ) -> None:
        result, requests = run_counted(demo_world, demo_cli, "plan", *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert says in result.stderr
        assert "Traceback" not in result.stderr
        assert changes(requests) == []


def pod_of(world: SandboxClient, app: str) -> str:
    (pod,) = client.CoreV1Api(world.kube()).list_namespaced_pod("default", label_selector=f"app={app}").items
    name: str = pod.metadata.name
    return name


def test_a_pod_pinned_to_one_old_node_does_not_fit(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    world = start_sandbox(**demo_scenario())
    cli = Cli(world, tmp_path)
    core = client.CoreV1Api(world.kube())
    node = core.list_node().items[0].metadata.name
    core.patch_node(node, {"metadata": {"labels": {"disk": "ssd"}}})  # only this node: no new one has it
    client.AppsV1Api(world.kube()).create_namespaced_deployment(
        "default",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "ssd"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "ssd"}},
                "template": {
                    "metadata": {"labels": {"app": "ssd"}},
                    "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "x"}]},
                },
            },
        },
    )
    world.sandbox.scheduler.settle(5)
    pod = pod_of(world, "ssd")
    assert core.read_namespaced_pod(pod, "default").spec.node_name == node
    result, requests = run_counted(world, cli, *PLAN_ALL, "--output", "json")
    assert result.returncode == 3, result.stdout + result.stderr
    group = one_group(json.loads(result.stdout))
    assert pairs(group["blockers"]) == {("does-not-fit", f"pod default/{pod}")}
    (blocker,) = group["blockers"]
    assert "disk=ssd" in blocker["cause"]
    assert blocker["remedy"].strip()
    assert group["fit"]["fits"] is False
    assert [p["pod"] for p in group["fit"]["unplaceable_pods"]] == [f"default/{pod}"]
    assert changes(requests) == []


def test_a_pod_too_big_for_the_new_instance_type_does_not_fit(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    scenario = demo_scenario()
    scenario["kubernetes"]["workloads"].append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "bigmem"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "bigmem"}},
                "template": {
                    "metadata": {"labels": {"app": "bigmem"}},
                    "spec": {
                        "containers": [
                            {"name": "c", "image": "x", "resources": {"requests": {"memory": "5Gi"}}}
                        ]
                    },
                },
            },
        }
    )
    world = start_sandbox(**scenario)
    cli = Cli(world, tmp_path)
    pod = pod_of(world, "bigmem")  # an m5.large (8 GiB) runs it; a t3.medium (4 GiB) cannot
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.medium"}
    )
    world.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="workers", LaunchTemplate={"LaunchTemplateId": template, "Version": "2"}
    )
    result, requests = run_counted(world, cli, "plan", "--asg", "workers", "--output", "json")
    assert result.returncode == 3, result.stdout + result.stderr
    group = one_group(json.loads(result.stdout))
    assert len(group["instances"]) == 3  # all launched from version 1, the group now uses version 2
    assert pairs(group["blockers"]) == {("does-not-fit", f"pod default/{pod}")}
    assert "memory" in group["blockers"][0]["cause"]
    fit = group["fit"]
    assert fit["instance_type"] == "t3.medium"
    assert "estimated" in fit["allocatable_source"]  # no t3.medium node exists to report it
    assert fit["allocatable_per_node"]["memory_bytes"] < 5 * 2**30
    assert fit["fits"] is False
    assert changes(requests) == []


def test_a_budget_selecting_no_pods_blocks_only_where_the_rollout_moves_pods(
    start_sandbox: Callable[..., SandboxClient], tmp_path: Path
) -> None:
    """Elsewhere it concerns other workloads: a warning, and `plan` exits 0. In `default`, where the demo's
    pods move, it was likely meant to protect one of them: a blocker, exit 3."""
    world = start_sandbox(**demo_scenario())
    cli = Cli(world, tmp_path)
    core, policy = client.CoreV1Api(world.kube()), client.PolicyV1Api(world.kube())
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "billing"}})
    orphan = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "orphan"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "gone"}}},
    }
    policy.create_namespaced_pod_disruption_budget("billing", orphan)
    result, requests = run_counted(world, cli, *PLAN_ALL, "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    group = one_group(json.loads(result.stdout))
    assert group["blockers"] == []
    (warning,) = [w for w in group["warnings"] if w["check"] == "pdb-selects-no-pods"]
    assert warning["subject"] == "PodDisruptionBudget billing/orphan"
    assert "does not concern this group's pods" in warning["cause"]
    assert changes(requests) == []

    policy.create_namespaced_pod_disruption_budget("default", orphan)
    result = cli(*PLAN_ALL, "--output", "json")
    assert result.returncode == 3, result.stdout + result.stderr
    group = one_group(json.loads(result.stdout))
    assert pairs(group["blockers"]) == {("pdb-selects-no-pods", "PodDisruptionBudget default/orphan")}
    assert ("pdb-selects-no-pods", "PodDisruptionBudget billing/orphan") in pairs(group["warnings"])
