"""Least privilege, proven in the sandbox with IAM enforced (scenario ``iam: {enforce: true}``).

nodeswap runs with the keys of an IAM user whose policy is built from terraform/nodeswap-actions.json,
the file the Terraform module builds its policy from. With exactly that policy, `plan` and a whole
`replace` (--ami, a termination hook, waves of --surge 1) succeed with 0 PDB violations and 0 lost
pods, and the actions nodeswap was seen calling are exactly the file's (less those AWS checks on its
behalf, each shown needed below): the policy grants nothing nodeswap does not use. Without any one
action, the run that needs it fails naming that action, without a traceback: a read before anything
changed (exit 2, the group as before); a write with the rollout stopped and recorded (exit 1, `status`
shows it interrupted), which a re-run with the whole policy finishes. Also: the sandbox refuses as AWS
does, and the AWS adapter turns every denial code into an AccessDenied naming the action to grant.

moto (and the sandbox, which judges as moto does) evaluates neither resource scoping nor conditions: a
statement scoped to an ARN allows nothing there. So the policy here grants the file's actions on "*";
scoping them to the groups' and the launch template's ARNs is the Terraform module's part, and its
tests'.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from nodeswap.aws import ACCESS_DENIED_CODES, _translated
from nodeswap.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED_ROLLOUT,
    EXIT_USAGE,
    AccessDenied,
    OperationError,
)
from tests.e2e import Cli, assert_converged, changes, demo_scenario, ours
from tests.sandbox_client import SandboxClient
from tests.test_cli_sandbox import nodeswap, read_env

ACTIONS_FILE = Path(__file__).resolve().parents[1] / "terraform" / "nodeswap-actions.json"
CALLED = ("read", "groups", "templates")  # the actions nodeswap calls itself
CHECKED = ("launch",)  # those Auto Scaling checks on nodeswap's behalf (a group pointed at a template)


def actions(*categories: str) -> list[str]:
    listed: dict[str, Any] = json.loads(ACTIONS_FILE.read_text())
    return sorted(action for category in categories for action in listed[category])


def policy(granted: list[str]) -> str:
    """The module's policy as the sandbox can judge it: the same actions, on every resource."""
    return json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": granted, "Resource": "*"}]}
    )


class User:
    """An IAM user of the sandbox, made with its root keys; nodeswap runs with the user's keys."""

    def __init__(self, world: SandboxClient, name: str = "nodeswap") -> None:
        self.iam, self.name = world.client("iam"), name
        self.iam.create_user(UserName=name)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        self.keys = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def grant(self, granted: list[str]) -> None:
        self.iam.put_user_policy(UserName=self.name, PolicyName="nodeswap", PolicyDocument=policy(granted))

    def all_but(self, withheld: str) -> None:
        self.grant([a for a in actions(*CALLED, *CHECKED) if a != withheld])

    def client(self, world: SandboxClient, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=world.sandbox.aws_endpoint,
            region_name=world.sandbox.scenario.region,
            aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture
def world(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """The demo scenario with IAM enforced."""
    return start_sandbox(**demo_scenario(iam={"enforce": True}))


@pytest.fixture
def user(world: SandboxClient) -> User:
    return User(world)


@pytest.fixture
def cli(world: SandboxClient, user: User, tmp_path: Path) -> Cli:
    """nodeswap as the IAM user."""
    cli = Cli(world, tmp_path)
    cli.env.update(user.keys)
    return cli


def add_legacy_group(world: SandboxClient) -> None:
    """A group on a launch configuration, of an instance type no node runs yet (empty: nothing joins),
    the one kind of group `plan` reads with DescribeLaunchConfigurations and DescribeInstanceTypes."""
    image = world.admin("GET", "info")["world"]["images"]["old"]
    world.autoscaling.create_launch_configuration(
        LaunchConfigurationName="legacy", ImageId=image, InstanceType="c5.large"
    )
    world.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="legacy",
        LaunchConfigurationName="legacy",
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        VPCZoneIdentifier=world.group()["VPCZoneIdentifier"],
    )


def called(requests: list[dict[str, Any]]) -> set[str]:
    """The AWS actions among nodeswap's requests, as IAM names them."""
    return {f"{r['service']}:{r['operation']}" for r in requests if r["api"] == "aws"}


def denied(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["api"] == "aws" and r["status"] == 403]


def assert_clear_denial(result: Any, action: str, exit_code: int) -> None:
    said = result.stdout + result.stderr
    assert result.returncode == exit_code, said
    assert action in result.stderr, said
    assert "terraform/nodeswap-actions.json" in result.stderr, said
    assert "Traceback" not in said


# ----- with exactly the file's policy -----------------------------------------------------------


def test_plan_needs_only_the_read_actions(world: SandboxClient, user: User, cli: Cli) -> None:
    add_legacy_group(world)
    user.grant(actions("read"))
    for group in ("workers", "legacy"):
        result = cli("plan", "--asg", group, "--ami", cli.new_image())
        assert result.returncode == 0, result.stdout + result.stderr
    requests = ours(world)
    assert not denied(requests)
    assert changes(requests) == []
    # Every read: the legacy group is the one read with DescribeLaunchConfigurations and
    # DescribeInstanceTypes (its type runs on no node yet).
    assert called(requests) == set(actions("read"))


def test_replace_with_exactly_the_files_policy_uses_every_action_it_grants(
    world: SandboxClient, user: User, cli: Cli
) -> None:
    add_legacy_group(world)
    user.grant(actions(*CALLED, *CHECKED))
    before = world.group()
    assert cli("plan", "--asg", "legacy").returncode == 0
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--surge", "1", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replaced 3 nodes" in result.stdout
    assert_converged(world, before, "2")  # 0 PDB violations, 0 lost pods, no trace left
    requests = ours(world)
    assert not denied(requests)
    # Every action the file lists for nodeswap to call, it called; it called nothing else. (The "launch"
    # actions are Auto Scaling's checks on its behalf: each is shown needed by the tests below.)
    assert called(requests) == set(actions(*CALLED))


# ----- without one action -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("withheld", actions("read"))
def test_a_withheld_read_fails_before_anything_changes(
    world: SandboxClient, user: User, cli: Cli, withheld: str
) -> None:
    add_legacy_group(world)
    user.all_but(withheld)
    before = world.group()
    # The legacy group is the only one read with these two; the rest are read planning an --ami rollout.
    group = "legacy" if withheld.endswith(("LaunchConfigurations", "InstanceTypes")) else "workers"
    result = cli("replace", "--asg", group, "--ami", cli.new_image(), "--yes")
    assert_clear_denial(result, withheld, EXIT_USAGE)
    assert f"AWS denied {withheld}" in result.stderr
    requests = ours(world)
    assert [f"{r['service']}:{r['operation']}" for r in denied(requests)] == [withheld]
    assert changes(requests) == []  # nothing but the lock, taken and given back
    after = world.group()
    assert after["Instances"] == before["Instances"]
    assert (after["DesiredCapacity"], after["MaxSize"], after["Tags"]) == (
        before["DesiredCapacity"],
        before["MaxSize"],
        before["Tags"],
    )
    user.grant(actions(*CALLED, *CHECKED))
    assert cli("status", "--asg", group).returncode == 0  # idle: no rollout recorded


@pytest.mark.slow
@pytest.mark.parametrize("withheld", [*actions("groups", "templates"), "ec2:RunInstances"])
def test_a_withheld_write_stops_a_recorded_rollout_that_a_rerun_finishes(
    world: SandboxClient, user: User, cli: Cli, withheld: str
) -> None:
    user.all_but(withheld)
    before = world.group()
    command = ("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes")
    result = cli(*command)
    assert_clear_denial(result, withheld, EXIT_FAILURE)
    assert "stopped there" in result.stderr
    assert "nodeswap status --asg workers" in result.stderr
    assert " ".join(command) in result.stderr  # the command that continues it
    status = cli("status", "--asg", "workers", "--output", "json")
    assert status.returncode == EXIT_INTERRUPTED_ROLLOUT, status.stdout + status.stderr
    assert json.loads(status.stdout)["groups"][0]["state"] == "interrupted"

    user.grant(actions(*CALLED, *CHECKED))
    again = cli(*command)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_converged(world, before, "2")


@pytest.mark.slow
@pytest.mark.parametrize("withheld", ["iam:PassRole", "ec2:CreateTags"])
def test_pointing_a_group_back_at_a_template_with_a_profile_and_tags_needs_them(
    world: SandboxClient, user: User, cli: Cli, withheld: str
) -> None:
    """EKS worker templates name an instance profile (the node role) and often tag what they launch:
    pointing a group at such a template needs iam:PassRole and ec2:CreateTags. Here abort points the
    group back at one after an --ami rollout stopped early."""
    role = world.client("iam").create_role(RoleName="node", AssumeRolePolicyDocument="{}")["Role"]
    profile = world.client("iam").create_instance_profile(InstanceProfileName="node")["InstanceProfile"]
    world.client("iam").add_role_to_instance_profile(InstanceProfileName="node", RoleName=role["RoleName"])
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    world.ec2.create_launch_template_version(  # the group asks for $Latest: it launches this one now
        LaunchTemplateId=template,
        LaunchTemplateData={
            "ImageId": world.admin("GET", "info")["world"]["images"]["old"],
            "InstanceType": "m5.large",
            "IamInstanceProfile": {"Arn": profile["Arn"]},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "role", "Value": "node"}]}],
        },
    )
    user.all_but("autoscaling:SuspendProcesses")  # stops the rollout right after its bake
    assert cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes").returncode == EXIT_FAILURE

    user.all_but(withheld)
    result = cli("abort", "--asg", "workers", "--yes")
    assert_clear_denial(result, withheld, EXIT_FAILURE)
    assert "not authorized to use launch template" in result.stderr
    assert "nodeswap abort --asg workers" in result.stderr

    user.grant(actions(*CALLED, *CHECKED))
    assert cli("abort", "--asg", "workers", "--yes").returncode == 0
    assert world.group()["LaunchTemplate"]["Version"] == "2"  # pinned to what it launched before


# ----- the sandbox refuses as AWS does ----------------------------------------------------------


def test_the_sandbox_checks_iam_principals_and_leaves_the_root_keys_alone(
    world: SandboxClient, user: User
) -> None:
    user.grant(["autoscaling:DescribeAutoScalingGroups", "sts:AssumeRole"])
    autoscaling, ec2 = user.client(world, "autoscaling"), user.client(world, "ec2")
    assert autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    refusals = {
        "autoscaling:UpdateAutoScalingGroup": lambda: autoscaling.update_auto_scaling_group(
            AutoScalingGroupName="workers", MaxSize=7
        ),
        "ec2:DescribeInstances": ec2.describe_instances,
        "ec2:CreateLaunchTemplateVersion": lambda: ec2.create_launch_template_version(
            LaunchTemplateId=template, LaunchTemplateData={"ImageId": "ami-12345678"}
        ),
    }
    for action, call in refusals.items():
        with pytest.raises(ClientError) as refused:
            call()
        error = refused.value.response["Error"]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        if action.startswith("ec2:"):
            assert error["Code"] == "UnauthorizedOperation"
            # EC2 names the action of a Describe call; of others, only in an encoded message.
            assert (action in error["Message"]) == ("Describe" in action), error["Message"]
        else:
            assert (error["Code"], action in error["Message"]) == ("AccessDenied", True)
    assert world.group()["MaxSize"] == 6  # refused calls change nothing

    # An assumed role's credentials are checked against the role's policies.
    iam = world.client("iam")
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument="{}")
    iam.put_role_policy(
        RoleName="reader", PolicyName="read", PolicyDocument=policy(["ec2:DescribeInstances"])
    )
    assumed = user.client(world, "sts").assume_role(
        RoleArn="arn:aws:iam::123456789012:role/reader", RoleSessionName="nodeswap"
    )["Credentials"]
    as_role = boto3.Session(
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
        region_name=world.sandbox.scenario.region,
    )
    endpoint = world.sandbox.aws_endpoint
    assert as_role.client("ec2", endpoint_url=endpoint).describe_instances()["Reservations"]
    with pytest.raises(ClientError, match="AccessDenied"):
        as_role.client("autoscaling", endpoint_url=endpoint).describe_auto_scaling_groups()

    world.autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=7)  # root: allowed
    assert world.group()["MaxSize"] == 7
    recorded = world.admin("GET", "report")["requests"]
    assert [r["error"] for r in recorded if r["status"] == 403] == [
        "AccessDenied",
        "UnauthorizedOperation",
        "UnauthorizedOperation",
        "AccessDenied",
    ]


def test_a_group_pointed_at_a_launch_template_needs_what_launching_it_needs(
    world: SandboxClient, user: User
) -> None:
    template = world.group()["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling = user.client(world, "autoscaling")

    def point_at_version_1() -> None:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName="workers", LaunchTemplate={"LaunchTemplateId": template, "Version": "1"}
        )

    user.grant(["autoscaling:UpdateAutoScalingGroup"])
    with pytest.raises(ClientError, match=f"not authorized to use launch template: {template}"):
        point_at_version_1()
    assert world.group()["LaunchTemplate"]["Version"] == "$Latest"
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="workers", MaxSize=7)  # no template named
    user.grant(["autoscaling:UpdateAutoScalingGroup", "ec2:RunInstances"])
    point_at_version_1()
    assert world.group()["LaunchTemplate"]["Version"] == "1"


def test_without_enforcement_iam_users_are_not_checked(start_sandbox: Callable[..., SandboxClient]) -> None:
    world = start_sandbox()
    user = User(world)  # no policy at all
    assert user.client(world, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]


def test_sandbox_up_enforce_iam(tmp_path: Path) -> None:
    directory = tmp_path / "sbx"
    started = nodeswap("sandbox", "up", "--detach", "--enforce-iam", "--dir", str(directory))
    assert started.returncode == 0, started.stderr
    assert "IAM is enforced" in started.stdout
    try:
        env = read_env(directory / "env.sh")
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],  # the root user's
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        iam = session.client("iam", endpoint_url=env["AWS_ENDPOINT_URL"])
        iam.create_user(UserName="someone")
        key = iam.create_access_key(UserName="someone")["AccessKey"]
        someone = boto3.client(
            "autoscaling",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        with pytest.raises(ClientError, match="AccessDenied"):
            someone.describe_auto_scaling_groups()
    finally:
        assert nodeswap("sandbox", "down", "--dir", str(directory)).returncode == 0


# ----- the adapter's translation ----------------------------------------------------------------


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize("code", sorted(ACCESS_DENIED_CODES))
@pytest.mark.parametrize(
    ("operation", "message", "action"),
    [
        (
            "UpdateAutoScalingGroup",
            "User: arn:aws:sts::123456789012:assumed-role/ops/me is not authorized to perform: "
            "autoscaling:UpdateAutoScalingGroup on resource: arn:aws:autoscaling:us-east-1:123456789012:"
            "autoScalingGroup:*:autoScalingGroupName/workers because no identity-based policy allows the "
            "autoscaling:UpdateAutoScalingGroup action",
            "autoscaling:UpdateAutoScalingGroup",
        ),
        # EC2 may not name the action: the operation called, with its service's prefix.
        (
            "CreateLaunchTemplateVersion",
            "You are not authorized to perform this operation. Encoded authorization failure message: x1",
            "ec2:CreateLaunchTemplateVersion",
        ),
        ("DescribeInstances", "You are not authorized to perform this operation.", "ec2:DescribeInstances"),
        ("CompleteLifecycleAction", "Access denied", "autoscaling:CompleteLifecycleAction"),
        (
            "UpdateAutoScalingGroup",
            "You are not authorized to use launch template: lt-0123456789abcdef0",
            "ec2:RunInstances",
        ),
    ],
)
def test_every_denial_becomes_an_access_denied_naming_the_action(
    code: str, operation: str, message: str, action: str
) -> None:
    with pytest.raises(AccessDenied) as raised, _translated("do the thing"):
        raise client_error(code, message, operation)
    denial = raised.value
    assert denial.exit_code == EXIT_USAGE
    assert action in denial.action
    assert action in denial.message
    assert "do the thing" in denial.message
    assert f"grant {denial.action}" in denial.remedy or "grant these" in denial.remedy
    assert denial.remedy.endswith("then re-run")
    assert "terraform/nodeswap-actions.json" in denial.remedy
    if "launch template" in message:
        assert {"iam:PassRole", "ec2:CreateTags"} <= set(denial.message.replace(",", " ").split())


def test_a_denial_met_mid_rollout_is_an_operation_error_saying_where_things_stand() -> None:
    with pytest.raises(AccessDenied) as raised, _translated("suspend AZRebalance on workers"):
        raise client_error("AccessDenied", "not authorized to perform: autoscaling:SuspendProcesses", "X")
    stopped = raised.value.mid_rollout("the rollout stopped there", "continue it with nodeswap replace ...")
    assert isinstance(stopped, OperationError)
    assert stopped.exit_code == EXIT_FAILURE
    assert "autoscaling:SuspendProcesses" in stopped.message
    assert "the rollout stopped there" in stopped.message
    assert stopped.remedy.endswith("; then continue it with nodeswap replace ...")
    assert "re-run" not in stopped.remedy


def test_other_client_errors_are_not_denials() -> None:
    with pytest.raises(OperationError) as raised, _translated("complete a hook"):
        raise client_error("ValidationError", "No active Lifecycle Action found", "CompleteLifecycleAction")
    assert not isinstance(raised.value, AccessDenied)
