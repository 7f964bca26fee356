"""When AWS throttles. The retry policies of ``nodeswap.retry``, on their own: throttling is waited out
(jittered, doubling) for as long as the patience allows, however many tries that takes, and never fatal
before; a transient failure gets a few tries; any other error is raised at once. Then the adapter over
HTTP against the sandbox, and a whole rollout through the CLI with 30% of Auto Scaling's and EC2's
answers throttled: it completes, and the group and the cluster end as any rollout leaves them."""

from __future__ import annotations

import time

import pytest

from nodeswap import retry
from nodeswap.aws import Aws
from tests.e2e import Cli, assert_converged, ours
from tests.sandbox_client import SandboxClient
from tests.test_kube_adapter import Flaky


class Throttled(Exception):
    pass


class Transient(Exception):
    pass


class Refused(Exception):
    pass


class Clock:
    """Time as tenacity sees it (time.monotonic), moved on by the waits it sleeps (time.sleep)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "sleep", fake.sleep)
    monkeypatch.setattr(time, "monotonic", lambda: fake.now)
    return fake


policy = retry.retrying(
    throttled=lambda error: isinstance(error, Throttled),
    transient=lambda error: isinstance(error, Transient),
    patience=300,
)


def test_throttling_is_waited_out_however_many_tries_it_takes(clock: Clock) -> None:
    tries = 3 * retry.TRANSIENT_ATTEMPTS  # far more than a transient failure gets
    request = Flaky(*(Throttled() for _ in range(tries - 1)))
    assert policy(request)() == "ok"
    assert request.calls == tries
    # Full jitter: each wait drawn below a bound that doubles from 0.5 s up to THROTTLED_MAX_WAIT.
    bounds = [min(0.5 * 2**n, retry.THROTTLED_MAX_WAIT) for n in range(tries - 1)]
    assert all(0 <= nap <= bound for nap, bound in zip(clock.naps, bounds, strict=True))
    assert len(set(clock.naps)) > 1  # drawn, not fixed


def test_throttling_is_given_up_only_once_the_patience_is_spent(clock: Clock) -> None:
    request = Flaky(*(Throttled() for _ in range(1000)))
    with pytest.raises(Throttled):
        policy(request)()
    waited = sum(clock.naps)
    # It waited as long as it could: the next wait could have passed the patience, none before it did.
    assert 300 - retry.THROTTLED_MAX_WAIT <= waited < 300
    assert request.calls == len(clock.naps) + 1 > retry.TRANSIENT_ATTEMPTS


def test_a_transient_failure_gets_a_few_tries_doubling_from_half_a_second(clock: Clock) -> None:
    recovers = Flaky(Transient(), Transient())
    assert policy(recovers)() == "ok"
    assert clock.naps == [0.5, 1.0]

    clock.naps.clear()
    keeps_failing = Flaky(*(Transient() for _ in range(10)))
    with pytest.raises(Transient):
        policy(keeps_failing)()
    assert keeps_failing.calls == retry.TRANSIENT_ATTEMPTS
    assert clock.naps == [0.5, 1.0, 2.0, 4.0]


def test_any_other_error_is_raised_at_once(clock: Clock) -> None:
    request = Flaky(Refused())
    with pytest.raises(Refused):
        policy(request)()
    assert request.calls == 1
    assert clock.naps == []


# ----- the AWS adapter, over HTTP against the sandbox ---------------------------------------------


def test_the_adapter_retries_what_aws_throttles_and_not_what_it_refuses(
    world: SandboxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in world.sandbox.environment().items():
        monkeypatch.setenv(name, value)
    aws = Aws(region=world.sandbox.scenario.region)
    world.admin(
        "PUT",
        "faults",
        [
            {"api": "aws", "operations": ["DescribeAutoScalingGroups"], "error": "throttle", "limit": 3},
            {"api": "aws", "operations": ["DescribeInstances"], "error": "throttle", "limit": 3},
        ],
    )
    (group,) = aws.groups(["workers"])  # Auto Scaling: 400 Throttling, three times
    assert len(aws.with_details(group).instances) == 3  # EC2: 503 RequestLimitExceeded, three times
    answers = [(r["operation"], r["status"], r["error"]) for r in ours(world)]
    for operation, status, code in (
        ("DescribeAutoScalingGroups", 400, "Throttling"),
        ("DescribeInstances", 503, "RequestLimitExceeded"),
    ):
        asked = [a for a in answers if a[0] == operation]
        assert asked == [(operation, status, code)] * 3 + [(operation, 200, None)]

    world.admin("PUT", "faults", [])
    calls = len(ours(world))
    instance = group.instances[0].id
    assert aws.complete("workers", "nodeswap-drain", instance) is False  # an answer: asked once
    assert len(ours(world)) == calls + 1


# ----- a rollout through the CLI ----------------------------------------------------------------


def test_a_rollout_completes_with_30_percent_of_aws_answers_throttled(world: SandboxClient, cli: Cli) -> None:
    before = world.group()
    # Every Auto Scaling and EC2 operation nodeswap calls, each answer throttled at 30%. nodeswap makes
    # few EC2 calls (a handful per rollout), so the first launch template version it asks for is
    # throttled for sure: each service's throttling is then met at least once.
    rules = [
        {"api": "aws", "operations": ["CreateLaunchTemplateVersion"], "error": "throttle", "limit": 1},
        {"api": "aws", "operations": ["*"], "error": "throttle", "rate": 0.3},
    ]
    world.admin("PUT", "faults", rules)
    result = cli("replace", "--asg", "workers", "--ami", cli.new_image(), "--yes", timeout=600)
    world.admin("PUT", "faults", [])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "replaced 3 nodes" in result.stdout
    throttled = [r for r in ours(world) if r["fault"] == "throttle"]
    assert {r["service"] for r in throttled} == {"autoscaling", "ec2"}
    assert len(throttled) >= 5
    assert_converged(world, before, "2")  # 0 PDB violations, 0 lost pods among its checks
