"""An operator's first hour, through the CLI against the sandbox: an endpoint that cannot be reached is
said at once, naming it and the fix; a kubeconfig or AWS configuration that cannot be used is an error
with its fix (exit 2), never a traceback; while an endpoint that has answered and then fails is retried
as before; messages say what is true (ranges, keys as written, ages, what a resumed run does); a
confirmation is asked on stderr and answered no exits 6; every command's help reads whole at 80
columns."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from nodeswap.aws import Aws
from nodeswap.cli import app
from nodeswap.errors import OperationError, Unreachable, UsageError
from nodeswap.kube import Kube
from nodeswap.plan import age
from tests.e2e import Cli, assert_converged, changes, ours, request, start_until
from tests.sandbox_client import SandboxClient


@pytest.fixture
def sandbox_cli(sandbox: SandboxClient, tmp_path: Path) -> Cli:
    """nodeswap pointed at the default scenario's sandbox (group `workers`)."""
    return Cli(sandbox, tmp_path)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def assert_user_error(result: Any, *says: str) -> None:
    """Exit 2 with `error:` and `fix:` lines on stderr, each of ``says`` among them, and no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr, result.stderr
    assert "\n  fix: " in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    for text in says:
        assert text in result.stderr


# ----- 1. an endpoint that cannot be reached ------------------------------------------------------


@pytest.mark.parametrize("command", [["plan"], ["replace", "--yes"], ["status"]])
def test_an_aws_endpoint_refusing_connections_is_said_at_once(sandbox_cli: Cli, command: list[str]) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    sandbox_cli.env["AWS_ENDPOINT_URL"] = endpoint
    started = time.monotonic()
    result = sandbox_cli(*command, "--asg", "workers", timeout=60)
    assert time.monotonic() - started < 10
    assert_user_error(result, f"error: cannot connect to AWS at {endpoint}/: connection refused\n")
    assert "AWS_ENDPOINT_URL" in result.stderr.splitlines()[1]  # the fix names what set the endpoint
    assert len(result.stderr.splitlines()) == 2


@pytest.mark.parametrize("command", [["plan"], ["replace", "--yes"], ["status"]])
def test_an_api_server_refusing_connections_is_said_at_once(
    sandbox_cli: Cli, tmp_path: Path, command: list[str]
) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    config = yaml.safe_load(Path(sandbox_cli.env["KUBECONFIG"]).read_text())
    config["clusters"][0]["cluster"]["server"] = server
    kubeconfig = tmp_path / "unreachable"
    kubeconfig.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    result = sandbox_cli(*command, "--asg", "workers", "--kubeconfig", str(kubeconfig), timeout=60)
    assert time.monotonic() - started < 10
    assert_user_error(
        result,
        f"error: cannot connect to the Kubernetes API server at {server}: connection refused\n",
        f"the server of context nodeswap-sandbox of {kubeconfig}",
    )
    assert len(result.stderr.splitlines()) == 2


def test_an_endpoint_that_answered_and_then_fails_is_retried(
    sandbox: SandboxClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once an endpoint has answered, a refused connection is a passing fault: tried again, 5 tries in
    all, before the error (here the sandbox is gone for good; the waits are recorded, not slept)."""
    for name, value in sandbox.sandbox.environment().items():
        monkeypatch.setenv(name, value)
    aws = Aws(region=sandbox.sandbox.scenario.region)
    kube = Kube(kubeconfig=str(sandbox.kubeconfig(tmp_path)))
    aws.groups(["workers"])
    kube.nodes()
    sandbox.sandbox.stop()
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    for call in (lambda: aws.groups(["workers"]), kube.nodes):
        naps.clear()
        with pytest.raises(OperationError) as raised:
            call()
        assert not isinstance(raised.value, Unreachable)
        assert naps == [0.5, 1, 2, 4]


def test_a_connection_dropped_at_first_contact_is_retried(sandbox: SandboxClient, sandbox_cli: Cli) -> None:
    """The API server took the connection, then dropped it: a passing fault, not an unreachable server."""
    sandbox.admin("PUT", "faults", [{"api": "kube", "operations": ["list"], "error": "drop", "limit": 1}])
    result = sandbox_cli("status", "--asg", "workers")
    assert result.returncode == 0, result.stdout + result.stderr
    dropped = [r for r in sandbox.admin("GET", "report")["requests"] if r.get("fault") == "drop"]
    assert len(dropped) == 1


# ----- 2. a configuration that cannot be used ----------------------------------------------------


def _edited(text: str, edit: Callable[[dict[str, Any]], object]) -> str:
    config = yaml.safe_load(text)
    edit(config)
    return yaml.safe_dump(config)


KUBECONFIGS: list[tuple[str, Callable[[str], str], list[str], tuple[str, ...]]] = [
    (
        "not-yaml",
        lambda text: text.replace("clusters:", "clusters: [", 1),
        [],
        ("not valid YAML", "line "),
    ),
    ("not-a-mapping", lambda text: "- just\n- a list\n", [], ("is not a kubeconfig",)),
    ("empty", lambda text: "", [], ("is not a kubeconfig",)),
    (
        "current-context-missing",
        lambda text: _edited(text, lambda c: c.update({"current-context": "prod"})),
        [],
        ("context was not found for specified context: prod", "its contexts: nodeswap-sandbox"),
    ),
    (
        "no-current-context",
        lambda text: _edited(text, lambda c: c.pop("current-context")),
        [],
        ("sets no current-context", "pass --context NAME"),
    ),
    ("context-flag-missing", lambda text: text, ["--context", "prod"], ("specified context: prod",)),
    (
        "cluster-missing",
        lambda text: _edited(text, lambda c: c.update({"clusters": []})),
        [],
        ('cluster "nodeswap-sandbox" was not found for context "nodeswap-sandbox"',),
    ),
    (
        "server-missing",
        lambda text: _edited(text, lambda c: c["clusters"][0]["cluster"].pop("server")),
        [],
        ('no server found for cluster "nodeswap-sandbox"', "https://HOST:PORT"),
    ),
    (
        "user-missing",
        lambda text: _edited(text, lambda c: c.update({"users": []})),
        [],
        ('user "nodeswap-sandbox" was not found for context "nodeswap-sandbox"',),
    ),
    (
        "certificate-file-missing",
        lambda text: _edited(
            text,
            lambda c: c["clusters"][0]["cluster"].update(
                {"server": "https://127.0.0.1:6443", "certificate-authority": "/no/such/ca.crt"}
            ),
        ),
        [],
        ("/no/such/ca.crt",),
    ),
]


@pytest.mark.parametrize(
    ("edit", "flags", "says"), [case[1:] for case in KUBECONFIGS], ids=[case[0] for case in KUBECONFIGS]
)
def test_a_kubeconfig_that_cannot_be_used_is_an_error_with_its_fix(
    sandbox_cli: Cli, tmp_path: Path, edit: Callable[[str], str], flags: list[str], says: tuple[str, ...]
) -> None:
    kubeconfig = tmp_path / "edited"
    kubeconfig.write_text(edit(Path(sandbox_cli.env["KUBECONFIG"]).read_text()))
    sandbox_cli.env["KUBECONFIG"] = str(kubeconfig)
    result = sandbox_cli("plan", "--asg", "workers", *flags)
    assert_user_error(result, str(kubeconfig), *says)


def test_credentials_the_api_server_rejects_at_first_contact_are_a_kubeconfig_error(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    """A 401 before the API server has accepted anything: the kubeconfig's credentials (exit 2). Once it
    has, a 401 is an answer like any other, for the caller (the sandbox accepts any token: the answers
    here are the client's, at the adapter's boundary)."""
    kube = Kube(kubeconfig=str(sandbox.kubeconfig(tmp_path)))

    def unauthorized(*args: Any, **kwargs: Any) -> Any:
        raise ApiException(status=401, reason="Unauthorized")

    with pytest.raises(UsageError) as raised:
        kube._request(unauthorized, "GET", f"{kube.target.server}/api/v1/nodes")
    assert "rejected the credentials of context nodeswap-sandbox" in raised.value.message
    kube.nodes()
    with pytest.raises(ApiException):
        kube._request(unauthorized, "GET", f"{kube.target.server}/api/v1/nodes")


def test_no_kubeconfig_at_all(sandbox_cli: Cli, tmp_path: Path) -> None:
    result = sandbox_cli("status", "--asg", "workers", "--kubeconfig", str(tmp_path / "absent"))
    assert_user_error(result, f"no kubeconfig at {tmp_path / 'absent'}", "KUBECONFIG")


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ({"AWS_PROFILE": "prod"}, ("The config profile (prod) could not be found", "--profile")),
        ({"AWS_CONFIG_FILE": "{tmp}/config"}, ("Unable to parse config file",)),
        ({"AWS_ENDPOINT_URL": "ht!tp://sandbox"}, ("Invalid endpoint: ht!tp://sandbox", "http(s)://HOST")),
    ],
    ids=["unknown-profile", "config-not-ini", "endpoint-not-a-url"],
)
def test_an_aws_configuration_that_cannot_be_used_is_an_error_with_its_fix(
    sandbox_cli: Cli, tmp_path: Path, variables: dict[str, str], says: tuple[str, ...]
) -> None:
    (tmp_path / "config").write_text("[default\nregion = us-east-1\n")
    sandbox_cli.env.update({k: v.format(tmp=tmp_path) for k, v in variables.items()})
    result = sandbox_cli("plan", "--asg", "workers")
    assert_user_error(result, *says)


# ----- 3. messages that mislead ------------------------------------------------------------------


SURGE_RANGE = "a surge is 1 or more instances, or 1% to 100% of the desired capacity"


@pytest.mark.parametrize("command", [["plan"], ["replace", "--yes"]])
@pytest.mark.parametrize(
    ("surge", "says"),
    [
        ("0", "out of range"),
        ("500%", "out of range"),
        ("0%", "out of range"),
        ("lots", "not a number of instances or a percentage"),
    ],
)
def test_a_surge_out_of_range_says_the_range(
    sandbox_cli: Cli, command: list[str], surge: str, says: str
) -> None:
    result = sandbox_cli(*command, "--asg", "workers", "--surge", surge)
    assert_user_error(result, f"--surge: {surge!r} is {says}; {SURGE_RANGE}")


def test_a_config_file_error_names_the_file_the_group_and_the_key_as_written(
    sandbox_cli: Cli, tmp_path: Path
) -> None:
    config = tmp_path / "replace.yaml"
    config.write_text("drain_timeout: soon\ngroups:\n  workers:\n    surge: 500%\n    grace-period: -1\n")
    result = sandbox_cli("plan", "--asg", "workers", "--config", str(config))
    assert_user_error(
        result,
        f"error: {config}: invalid keys:\n",
        "key drain_timeout: not a duration",
        "key groups.workers.surge: out of range; a surge is 1 or more instances",
        "key groups.workers.grace-period: Input should be greater than or equal to 0",
    )
    assert "--surge" not in result.stderr  # the value came from the file, not the flag


@pytest.mark.parametrize(
    ("days", "says"),
    [(0.0001, "8s"), (0.004, "5m45s"), (0.2, "4h48m"), (1.5, "36h"), (3.25, "3d6h"), (10, "10d"), (-1, "0s")],
)
def test_ages_read_as_kubectl_shows_them(days: float, says: str) -> None:
    assert age(timedelta(days=days)) == says


def test_an_old_instance_is_replaced_for_its_age_and_says_it(
    sandbox: SandboxClient, sandbox_cli: Cli
) -> None:
    """One instance launched ten days (and an hour) ago, the others just now: --older-than 7d picks that
    one, and the plan says its age as kubectl would, in whole days. (The hour keeps the age past 10 days
    however far the sandbox's simulated clock has run ahead.)"""
    old = sandbox.group()["Instances"][0]["InstanceId"]
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][sandbox.sandbox.scenario.region]
    with sandbox.sandbox.lock:
        instance = backend.get_instance(old)
        instance.launch_time = instance.launch_time - timedelta(days=10, hours=1)
    result = sandbox_cli("plan", "--asg", "workers", "--older-than", "7d", "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    (group,) = json.loads(result.stdout)["groups"]
    (replaced,) = group["instances"]
    assert replaced["instance"] == old
    assert replaced["reason"] == "launched 10d ago, older than 7d"
    assert abs(replaced["age_seconds"] - (10 * 86400 + 3600)) < 600
    text = sandbox_cli("plan", "--asg", "workers", "--older-than", "7d")
    assert "Instances to replace: launched 10d ago, older than 7d" in text.stdout
    assert re.search(rf"│ {old} .* │ 10d │", text.stdout), text.stdout


def held_by_another_host(world: SandboxClient) -> client.CoordinationV1Api:
    """The group's lock, held by a run on another host (which renews it no more, for 60 s)."""
    leases = client.CoordinationV1Api(world.kube())
    now = datetime.now(UTC)
    spec = client.V1LeaseSpec(
        holder_identity="ops-laptop/4242/abcd", lease_duration_seconds=60, acquire_time=now, renew_time=now
    )
    leases.create_namespaced_lease(
        "kube-system", client.V1Lease(metadata=client.V1ObjectMeta(name="nodeswap-workers"), spec=spec)
    )
    return leases


def test_a_run_that_waited_for_the_lock_plans_the_group_as_it_is_then(world: SandboxClient, cli: Cli) -> None:
    """Another run holds the group's lock; while this one waits, the group is pointed at a new launch
    template version and the lock is given up. The plan is made from the group as it is once locked,
    not as it was described before the wait."""
    leases = held_by_another_host(world)
    before = world.group()
    waiting = start_until(
        world, cli, ["replace", "--asg", "workers", "--yes"], request("kube", "watch:leases")
    )
    template = before["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(
        LaunchTemplateId=template, SourceVersion="1", LaunchTemplateData={"ImageId": cli.new_image()}
    )
    world.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="workers", LaunchTemplate={"LaunchTemplateId": template, "Version": "2"}
    )
    leases.delete_namespaced_lease("nodeswap-workers", "kube-system")
    stdout, stderr = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, stdout + stderr
    assert "the lock is held by ops-laptop/4242/abcd" in stdout
    assert "replaced 3 nodes" in stdout
    assert_converged(world, before, "2")


def test_a_run_that_waited_for_the_lock_sees_a_version_made_meanwhile(world: SandboxClient, cli: Cli) -> None:
    """The group launches $Latest; while this run waits for the lock, another makes a new version (as a
    finishing run or a pipeline would): once locked, $Latest is resolved again and the run rolls it out."""
    leases = held_by_another_host(world)
    assert world.group()["LaunchTemplate"]["Version"] == "$Latest"
    waiting = start_until(
        world, cli, ["replace", "--asg", "workers", "--yes"], request("kube", "watch:leases")
    )
    world.ec2.create_launch_template_version(
        LaunchTemplateId=world.group()["LaunchTemplate"]["LaunchTemplateId"],
        SourceVersion="1",
        LaunchTemplateData={"ImageId": cli.new_image()},
    )
    leases.delete_namespaced_lease("nodeswap-workers", "kube-system")
    stdout, stderr = waiting.communicate(timeout=180)
    assert waiting.returncode == 0, stdout + stderr
    assert "replaced 3 nodes" in stdout
    serving = [i["InstanceId"] for i in world.group()["Instances"] if i["LifecycleState"] == "InService"]
    reservations = world.ec2.describe_instances(InstanceIds=serving)["Reservations"]
    assert {i["ImageId"] for r in reservations for i in r["Instances"]} == {cli.new_image()}


def test_a_resumed_run_announces_the_surge_it_performs(world: SandboxClient, cli: Cli) -> None:
    """Killed once the group is surged (desired 3 -> 6): the plan and the run that continues it say the
    surge from the recorded capacity, already done, not another one on top (6 -> 9)."""
    before = world.group()
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6))
    first.kill()
    first.communicate()
    planned = cli("plan", *command[1:-1], "--output", "json")
    (group,) = json.loads(planned.stdout)["groups"]
    assert group["capacity"] | {"max_size": 0} == {
        "desired": 6,
        "desired_before": 3,
        "max_size": 0,
        "surge": 3,
        "max_size_needed": 6,
        "raises_max_size": False,
    }
    text = cli("plan", *command[1:-1])
    assert "surge desired 3 -> 6; it is 6 now, as the interrupted rollout left it" in text.stdout
    # Piped, as into a CI log, the long line saying how to go on is one line, whole.
    (interrupted,) = [line for line in text.stdout.splitlines() if "a rollout is interrupted" in line]
    assert "; continue: nodeswap replace" in interrupted
    assert interrupted.endswith("; undo: nodeswap abort --asg workers")
    resumed = cli(*command)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "surge 3 (desired 3 -> 6; it is 6 now, as the interrupted rollout left it)" in resumed.stdout
    assert "-> 9" not in resumed.stdout
    assert_converged(world, before, "2")


# ----- 4. prompts --------------------------------------------------------------------------------


def answering(cli: Cli, answer: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """nodeswap with ``answer`` on its standard input (None: standard input closed)."""
    return subprocess.run(
        cli.command(*args),
        input=answer,
        stdin=subprocess.DEVNULL if answer is None else None,
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=180,
        check=False,
    )


def test_with_no_terminal_the_confirmation_says_to_pass_yes(world: SandboxClient, cli: Cli) -> None:
    result = answering(cli, None, "replace", "--asg", "workers", "--ami", cli.new_image())
    assert_user_error(result, "[y/N]: \nerror: no terminal to confirm on", "pass --yes")
    assert "Aborted" not in result.stderr
    assert changes(ours(world)) == []


def test_the_prompt_goes_to_stderr_and_no_exits_6_changing_nothing(world: SandboxClient, cli: Cli) -> None:
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--output", "json"]
    declined = answering(cli, "n\n", *command)
    assert declined.returncode == 6, declined.stdout + declined.stderr
    assert declined.stderr == "replace 3 instances? [y/N]: declined: nothing was changed\n"
    assert [json.loads(line)["phase"] for line in declined.stdout.splitlines()][-1] == "plan"
    assert changes(ours(world)) == []
    before = world.group()
    confirmed = answering(cli, "y\n", *command)
    assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
    assert json.loads(confirmed.stdout.splitlines()[-1])["summary"][0]["nodes_replaced"] == 3  # all JSON
    assert_converged(world, before, "2")


def test_abort_answered_no_exits_6_and_leaves_the_rollout(world: SandboxClient, cli: Cli) -> None:
    command = ["replace", "--asg", "workers", "--ami", cli.new_image(), "--yes"]
    first = start_until(world, cli, command, request("aws", "UpdateAutoScalingGroup", DesiredCapacity=6))
    first.kill()
    first.communicate()
    mutations = len(changes(ours(world)))
    declined = answering(cli, "no\n", "abort", "--asg", "workers")
    assert declined.returncode == 6, declined.stdout + declined.stderr
    assert "undo the rollout of workers? [y/N]: declined: nothing was changed" in declined.stderr
    assert len(changes(ours(world))) == mutations
    assert world.group()["DesiredCapacity"] == 6


# ----- 5. help -----------------------------------------------------------------------------------


def _commands() -> list[tuple[list[str], list[str]]]:
    """Every command's path (the tool itself first) and its option names, from the CLI's definition."""
    found: list[tuple[list[str], list[str]]] = []

    def walk(command: Any, path: list[str]) -> None:
        names = [o for param in command.params for o in (*param.opts, *param.secondary_opts) if o[0] == "-"]
        found.append((path, names))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(
    ("path", "options"), COMMANDS, ids=[" ".join(path) or "nodeswap" for path, _ in COMMANDS]
)
def test_help_reads_whole_at_80_columns(path: list[str], options: list[str]) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "nodeswap", *path, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert not [line for line in shown.stdout.splitlines() if len(line) > 80], shown.stdout
    assert "…" not in shown.stdout  # no option name cut
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown.stdout), option
    assert "..." not in shown.stdout.partition("\nCommands:\n")[2], shown.stdout  # no description cut
    assert not re.search(r"<\w+(\[|>| range)", shown.stdout), shown.stdout  # <bool>, <list[str]>
