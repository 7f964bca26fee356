"""Fault injection and the request record, seen through boto3 and the sandbox's admin endpoints.

Injected faults take the shape each service uses (Auto Scaling `Throttling`, EC2 `RequestLimitExceeded`,
5xx), so botocore classifies and retries them as it would against AWS. The record lists every AWS
request served, with operation, target, outcome and the caller's User-Agent.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from tests.sandbox_client import FROZEN_TIMING, SandboxClient

NO_RETRIES = {"retries": {"total_max_attempts": 1, "mode": "standard"}}


def aws_requests(sb: SandboxClient) -> list[dict[str, object]]:
    requests: list[dict[str, object]] = sb.admin("GET", "report")["requests"]
    return requests


@pytest.mark.parametrize(
    ("service", "call", "code", "status"),
    [
        ("autoscaling", lambda c: c.describe_auto_scaling_groups(), "Throttling", 400),
        ("ec2", lambda c: c.describe_instances(), "RequestLimitExceeded", 503),
    ],
)
def test_throttling_takes_each_services_shape(
    sandbox: SandboxClient, service: str, call: Callable[..., object], code: str, status: int
) -> None:
    sandbox.admin("PUT", "faults", [{"operations": ["*"], "error": "throttle", "rate": 1.0}])
    with pytest.raises(ClientError) as raised:
        call(sandbox.client(service, **NO_RETRIES))
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize(("kind", "status"), [("internal", 500), ("unavailable", 503)])
def test_server_errors(sandbox: SandboxClient, kind: str, status: int) -> None:
    sandbox.admin("PUT", "faults", [{"operations": ["SetDesiredCapacity"], "error": kind}])
    client = sandbox.client("autoscaling", **NO_RETRIES)
    client.describe_auto_scaling_groups()  # not a chosen operation: unaffected
    with pytest.raises(ClientError) as raised:
        client.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    sandbox.advance(FROZEN_TIMING["activity_seconds"])
    assert len(sandbox.states()) == 3  # a faulted request changes nothing


def test_botocore_retries_ride_out_a_limited_fault(sandbox: SandboxClient) -> None:
    sandbox.admin("PUT", "faults", [{"operations": ["SetDesiredCapacity"], "error": "throttle", "limit": 2}])
    client = sandbox.client("autoscaling", retries={"total_max_attempts": 5, "mode": "standard"})
    client.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)
    assert sandbox.group()["DesiredCapacity"] == 4
    outcomes = [
        (r["fault"], r["status"]) for r in aws_requests(sandbox) if r["operation"] == "SetDesiredCapacity"
    ]
    assert outcomes == [("throttle", 400), ("throttle", 400), (None, 200)]


def test_rate_is_honoured_and_repeatable(start_sandbox: Callable[..., SandboxClient]) -> None:
    rule = {"operations": ["DescribeAutoScalingGroups"], "error": "throttle", "rate": 0.3}
    sb = start_sandbox(faults=[rule], seed=7)
    client = sb.client("autoscaling", **NO_RETRIES)
    outcomes = []
    for _ in range(200):
        try:
            client.describe_auto_scaling_groups()
            outcomes.append(False)
        except ClientError:
            outcomes.append(True)
    assert 40 <= sum(outcomes) <= 80  # 30% of 200, with room for chance
    sb.admin("PUT", "faults", [])
    client.describe_auto_scaling_groups()  # cleared: no fault any more
    assert sb.admin("GET", "faults") == []


def test_invalid_fault_rules_are_rejected(sandbox: SandboxClient) -> None:
    from urllib.error import HTTPError  # noqa: PLC0415

    with pytest.raises(HTTPError) as raised:
        sandbox.admin("PUT", "faults", [{"error": "explode"}])
    assert raised.value.code == 400


def test_record_lists_requests_with_outcome_and_caller(sandbox: SandboxClient) -> None:
    assert aws_requests(sandbox) == []  # seeding is not recorded
    sandbox.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])
    sandbox.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=4)
    other = SandboxClient(sandbox.sandbox, user_agent="someone-else")
    with pytest.raises(ClientError):
        other.autoscaling.set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=99)

    describe, scale, refused = aws_requests(sandbox)
    assert describe["api"] == "aws"
    assert describe["service"] == "autoscaling"
    assert describe["operation"] == "DescribeAutoScalingGroups"
    assert describe["mutating"] is False
    assert describe["target"] == {"AutoScalingGroupNames": ["workers"]}
    assert scale["operation"] == "SetDesiredCapacity"
    assert scale["mutating"] is True
    assert scale["status"] == 200
    assert scale["target"] == {"AutoScalingGroupName": ["workers"], "DesiredCapacity": ["4"]}
    assert "nodeswap-tests" in str(scale["user_agent"])
    assert refused["status"] == 400
    assert refused["error"] == "ValidationError"
    assert "someone-else" in str(refused["user_agent"])
    assert describe["seq"] < scale["seq"] < refused["seq"]
