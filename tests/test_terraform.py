"""The Terraform module (terraform/): `terraform fmt` and `validate` of the module and its examples, its
README's tables against its variables and outputs, and, end to end against an in-process sandbox, the
sandbox example: the first apply creates a group whose instances become nodes the workloads schedule onto;
an apply of a new AMI rolls the nodes through the module's nodeswap trigger (no PDB violated, no pod
lost, the group as it was) and the next plan shows no drift; an apply interrupted mid-rollout leaves a
plan that touches only the trigger, and the next apply resumes the rollout.

Terraform runs offline on a copy of terraform/ in a temporary directory (no .terraform or state in the
repository), with the AWS provider from the local plugin mirror.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from nodeswap.sandbox.scenario import load_scenario
from tests.e2e import Cli, assert_no_trace, demo_scenario
from tests.sandbox_client import SandboxClient

MODULE = Path(__file__).resolve().parents[1] / "terraform"
EXAMPLES = sorted(p.name for p in (MODULE / "examples").iterdir() if p.is_dir())
PLUGIN_DIR = Path("/opt/tf-plugins")  # the AWS provider, mirrored on every machine (no network)
GROUP = "tf-workers"  # the sandbox example's group
# The scenario's own group is empty: every node, and so every pod, is the Terraform group's.
UNUSED_GROUP = {"name": "unused", "min_size": 0, "max_size": 0, "desired_capacity": 0}

pytestmark = pytest.mark.skipif(
    shutil.which("terraform") is None or not PLUGIN_DIR.is_dir(),
    reason=f"needs terraform on PATH and the AWS provider mirror in {PLUGIN_DIR}",
)


def terraform_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Terraform offline and on its own: no user CLI config, no version check, init from the mirror."""
    return {
        **(base if base is not None else os.environ),
        "TF_CLI_CONFIG_FILE": os.devnull,
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_ARGS_init": f"-plugin-dir={PLUGIN_DIR} -input=false",
    }


def run(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["terraform", *args, "-no-color"],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def module_copy(tmp_path: Path) -> Path:
    """terraform/ copied without any local working state, so the examples' relative source still works."""
    copy = tmp_path / "terraform"
    shutil.copytree(MODULE, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "*.tfplan"))
    return copy


# ----- static checks -------------------------------------------------------------------------------


def test_formatted() -> None:
    result = run(MODULE, terraform_env(), "fmt", "-check", "-recursive", "-diff")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("directory", [".", *(f"examples/{name}" for name in EXAMPLES)])
def test_validates(module_copy: Path, directory: str) -> None:
    env = terraform_env()
    init = run(module_copy / directory, env, "init", "-backend=false")
    assert init.returncode == 0, init.stdout + init.stderr
    result = run(module_copy / directory, env, "validate")
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_tables_list_every_variable_and_output() -> None:
    readme = (MODULE / "README.md").read_text()
    inputs, _, outputs = readme.partition("## Inputs")[2].partition("## Outputs")
    for kind, text, table in (("variable", "variables.tf", inputs), ("output", "outputs.tf", outputs)):
        declared = re.findall(rf'^{kind} "(\w+)"', (MODULE / text).read_text(), re.MULTILINE)
        listed = re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE)
        assert listed == declared, f"README's {kind} table differs from {text}"


def test_the_sandbox_example_scenario_is_valid() -> None:
    scenario = load_scenario(MODULE / "examples" / "sandbox" / "scenario.yaml")
    assert GROUP not in [group.name for group in scenario.groups]  # Terraform creates that one


def test_the_policy_covers_every_action_in_nodeswap_actions_json() -> None:
    """main.tf gives each kind of action in nodeswap-actions.json its resource scope: a kind it takes whole
    (local.nodeswap_actions.KIND), or each action named (and scoped, or said why it is not needed)."""
    actions = json.loads((MODULE / "nodeswap-actions.json").read_text())
    main = (MODULE / "main.tf").read_text()
    for kind, names in actions.items():
        if kind != "_comment" and f"local.nodeswap_actions.{kind}" not in main:
            assert [name for name in names if name not in main] == [], f"kind {kind}"


# ----- end to end against the sandbox -------------------------------------------------------------


class Example:
    """The sandbox example, applied with Terraform against one sandbox, nodeswap run as installed here."""

    def __init__(self, world: SandboxClient, module_copy: Path, tmp_path: Path) -> None:
        self.world = world
        self.directory = module_copy / "examples" / "sandbox"
        # The sandbox's AWS variables and KUBECONFIG: the trigger's nodeswap inherits them.
        self.env = terraform_env(Cli(world, tmp_path).env)
        self.vars = [
            f"-var=endpoint={world.sandbox.aws_endpoint}",
            f"-var=nodeswap_command={json.dumps([sys.executable, '-m', 'nodeswap'])}",
        ]
        self.timings: dict[str, float] = {}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.directory, self.env, *args)

    def apply(self, label: str, image: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self("apply", "-auto-approve", "-input=false", *self.vars, f"-var=image={image}")
        self.timings[label] = round(time.monotonic() - started, 1)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def plan(self, image: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self("plan", "-detailed-exitcode", "-input=false", *self.vars, f"-var=image={image}", *args)

    def nodes_serve_the_workloads(self) -> list[str]:
        """Wait until the group's instances are Ready nodes and every pod runs on them, Ready; the
        sandbox's clock runs in real time, a few seconds from launch to Ready pods."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self._nodes_serve_the_workloads()
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _nodes_serve_the_workloads(self) -> list[str]:
        serving = [i["InstanceId"] for i in self.world.group(GROUP)["Instances"]]
        core = client.CoreV1Api(self.world.kube())
        nodes = {n.spec.provider_id.rsplit("/", 1)[1]: n for n in core.list_node().items}
        assert set(nodes) == set(serving)
        for node in nodes.values():
            assert [c.status for c in node.status.conditions if c.type == "Ready"] == ["True"]
        names = {n.metadata.name for n in nodes.values()}
        pods = core.list_namespaced_pod("default").items
        assert pods
        for pod in pods:
            assert pod.spec.node_name in names, pod.metadata.name
            assert [c.status for c in pod.status.conditions or [] if c.type == "Ready"] == ["True"]
        return serving


def events(output: str) -> list[dict[str, Any]]:
    """nodeswap's JSON lines, as the trigger's provisioner printed them in the apply's log."""
    lines = (line.partition("(local-exec): ")[2] for line in output.splitlines())
    return [json.loads(line) for line in lines if line.startswith("{")]


def sandbox_example(
    start_sandbox: Callable[..., SandboxClient], module_copy: Path, tmp_path: Path
) -> tuple[SandboxClient, Example]:
    world = start_sandbox(**demo_scenario(groups=[UNUSED_GROUP]))
    example = Example(world, module_copy, tmp_path)
    init = example("init")
    assert init.returncode == 0, init.stdout + init.stderr
    return world, example


def assert_rolled_onto(world: SandboxClient, old: list[str], image: str, before: dict[str, Any]) -> None:
    group = world.group(GROUP)
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (3, 4, 3)
    assert group["SuspendedProcesses"] == before["SuspendedProcesses"] == []
    serving = [i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"]
    assert len(serving) == 3
    assert not set(serving) & set(old)
    assert {i["LaunchTemplate"]["Version"] for i in group["Instances"] if i["InstanceId"] in serving} == {"2"}
    reservations = world.ec2.describe_instances(InstanceIds=serving)["Reservations"]
    assert {i["ImageId"] for r in reservations for i in r["Instances"]} == {image}
    apps = client.AppsV1Api(world.kube())
    for deployment in apps.list_namespaced_deployment("default").items:
        assert deployment.status.ready_replicas == deployment.spec.replicas
    for statefulset in apps.list_namespaced_stateful_set("default").items:
        assert statefulset.status.ready_replicas == statefulset.spec.replicas
    assert_no_trace(world, GROUP)  # no nodeswap.io tags, record, lock or fence left
    report = world.admin("GET", "report")
    assert report["pdb_violations"] == []
    assert report["lost_pods"] == []


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_apply_of_a_new_ami_rolls_the_nodes_and_leaves_no_drift(
    start_sandbox: Callable[..., SandboxClient], module_copy: Path, tmp_path: Path
) -> None:
    world, example = sandbox_example(start_sandbox, module_copy, tmp_path)
    images = world.admin("GET", "info")["world"]["images"]

    first = example.apply("first apply (creates the group)", "old")
    (summary,) = events(first.stdout)[-1]["summary"]
    assert summary["nothing_to_do"] is True  # the trigger's first run: every instance is current
    before = world.group(GROUP)
    assert before["LaunchTemplate"]["Version"] == "1"
    old = example.nodes_serve_the_workloads()

    second = example.apply("second apply (new AMI, the rollout)", "new")
    (summary,) = events(second.stdout)[-1]["summary"]
    assert summary["nodes_replaced"] == 3
    assert summary["image"] == images["new"]
    assert summary["max_size_changed"] is True  # MaxSize 4 < 3 + 3: raised, then restored
    assert summary["pods_evicted"] > 0
    assert_rolled_onto(world, old, images["new"], before)

    started = time.monotonic()
    third = example.plan("new")
    example.timings["plan after the rollout"] = round(time.monotonic() - started, 1)
    assert third.returncode == 0, third.stdout + third.stderr  # 0: no changes, 2: drift

    # The policy names this group and this template, with the sandbox's account id.
    policy = json.loads(json.loads(example("output", "-json", "nodeswap_policy_json").stdout))
    resources = {s["Sid"]: s["Resource"] for s in policy["Statement"]}
    assert resources["ThisGroup"] == world.group(GROUP)["AutoScalingGroupARN"]
    template = world.group(GROUP)["LaunchTemplate"]["LaunchTemplateId"]
    assert resources["ThisLaunchTemplate"].endswith(f":123456789012:launch-template/{template}")
    print(f"\nterraform timings (s): {example.timings}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_interrupted_apply_is_resumed_by_the_next(
    start_sandbox: Callable[..., SandboxClient], module_copy: Path, tmp_path: Path
) -> None:
    world, example = sandbox_example(start_sandbox, module_copy, tmp_path)
    images = world.admin("GET", "info")["world"]["images"]
    example.apply("first apply", "old")
    before = world.group(GROUP)
    old = example.nodes_serve_the_workloads()

    # Interrupt the rollout's apply once nodeswap has evicted a pod, as a CI runner cancelling Terraform
    # does (SIGINT to Terraform alone; it stops its provisioner's process).
    apply = subprocess.Popen(
        ["terraform", "apply", "-auto-approve", "-input=false", "-no-color", *example.vars, "-var=image=new"],
        cwd=example.directory,
        env=example.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert apply.stdout is not None
    for line in apply.stdout:
        if '"evicted ' in line:
            apply.send_signal(signal.SIGINT)
            break
    apply.communicate(timeout=120)
    assert apply.returncode != 0
    status = Cli(world, tmp_path)("status", "--asg", GROUP)
    assert status.returncode == 5, status.stdout + status.stderr  # interrupted

    # The next plan leaves the group alone (nodeswap's capacity, processes and tags are not drift) and
    # replaces only the tainted trigger.
    plan = example.plan("new", "-out=resume.tfplan")
    assert plan.returncode == 2, plan.stdout + plan.stderr
    shown = json.loads(example("show", "-json", "resume.tfplan").stdout)
    changed = {c["address"]: c["change"]["actions"] for c in shown["resource_changes"]}
    assert {a: actions for a, actions in changed.items() if actions != ["no-op"]} == {
        "module.workers.terraform_data.replace[0]": ["delete", "create"]
    }
    assert "is tainted, so must be replaced" in plan.stdout

    started = time.monotonic()
    resumed = example("apply", "-input=false", "resume.tfplan")
    example.timings["apply that resumes"] = round(time.monotonic() - started, 1)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert any(e.get("phase") == "resume" for e in events(resumed.stdout))
    assert_rolled_onto(world, old, images["new"], before)
    assert example.plan("new").returncode == 0
    print(f"\nterraform timings (s): {example.timings}")
