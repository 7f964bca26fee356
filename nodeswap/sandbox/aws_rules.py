"""Auto Scaling and EC2 behaviour that moto lacks, installed on moto's models.

moto stores Auto Scaling groups and lifecycle hooks but gives them little behaviour: instances go
straight to InService in the first subnet the moment desired capacity changes, no scaling activity is
recorded, hooks have no effect, suspended processes are ignored and every instance reports the
template's current default version, instances join target groups before they run and leave them
without draining. nodeswap depends on each of these, so the sandbox replaces them with the rules below.
Each rule cites the AWS documentation it follows:

[ACTIVITY]  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_Activity.html
[DESCACT]   https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_DescribeScalingActivities.html
[VERIFY]    https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-verify-scaling-activity.html
            (its CLI example: https://github.com/aws/aws-cli/blob/develop/awscli/examples/autoscaling/describe-scaling-activities.rst)
[SCALEIN]   https://repost.aws/knowledge-center/auto-scaling-scale-down (the causes of a scale-in)
[HOOKFAIL]  https://repost.aws/knowledge-center/lifecycle-actions-code-deploy (a launch its hook abandoned)

[HOOKS]     https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks.html
[ADDHOOK]   https://docs.aws.amazon.com/autoscaling/ec2/userguide/adding-lifecycle-hooks.html
[COMPLETE]  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CompleteLifecycleAction.html
[HEARTBEAT] https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RecordLifecycleActionHeartbeat.html
[DELHOOK]   https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_DeleteLifecycleHook.html
[BALANCE]   https://docs.aws.amazon.com/autoscaling/ec2/userguide/auto-scaling-benefits.html
[TERMPOL]   https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-instance-termination.html
[SUSPEND]   https://docs.aws.amazon.com/autoscaling/ec2/userguide/understand-how-suspending-processes-affects-other-processes.html
[HEALTH]    https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-health-checks.html
[TERMAPI]   https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_TerminateInstanceInAutoScalingGroup.html
[HOOKFLOW]  https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks-overview.html
[DRAIN]     https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay
[TGATTR]    https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetGroupAttribute.html
[LTDATA]    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RequestLaunchTemplateData.html
[PUTHOOK]   https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html
[LTVERSION] https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplateVersion.html
[LTSPEC]    https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_LaunchTemplateSpecification.html
[EC2ERRORS] https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html

The rules run under the sandbox's lock: every API request and every timer holds it.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
)
from moto.core.constants import MISSING
from moto.core.responses import ActionResult, EmptyResult
from moto.core.serialize import AttributePicker, AttributePickerContext, XFormedAttributePicker
from moto.core.utils import get_value
from moto.ec2.exceptions import InvalidInstanceIdError, InvalidLaunchTemplateVersionNotFound
from moto.ec2.models.amis import Ami, AmiBackend
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateVersion
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix, parse_user_data
from moto.elbv2 import exceptions as elbv2_exceptions
from moto.elbv2.models import ELBv2Backend, FakeTargetGroup

from nodeswap.sandbox.clock import Scheduler, Timer
from nodeswap.sandbox.scenario import Timing

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
# Instances that count toward desired capacity: launching or in service, not leaving. [BALANCE]
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})
HEARTBEAT_RANGE = (30, 7200)  # [ADDHOOK] "The range is from 30 to 7200 seconds."
GLOBAL_TIMEOUT_CAP = 48 * 3600  # [HOOKS] "48 hours or 100 times the heartbeat timeout, whichever is smaller"
DEREGISTRATION_DELAY = "deregistration_delay.timeout_seconds"
DEREGISTRATION_DELAY_RANGE = (0, 3600)  # [TGATTR] "The range is 0-3600 seconds."

# A failed launch is tried again after this long, twice as long after each further failure, up to the
# cap (AWS retries failed launches at growing intervals it does not document).
LAUNCH_RETRY_SECONDS, LAUNCH_RETRY_CAP_SECONDS = 10.0, 300.0
# [DESCACT] "The default value is 100 and the maximum value is 100"; "You can specify up to 50 IDs."
MAX_RECORDS, MAX_ACTIVITY_IDS = 100, 50
# [ACTIVITY] the StatusCode values of an activity that has ended. In progress, the sandbox reports
# PreInService (launching), MidLifecycleAction (waiting on a hook), WaitingForELBConnectionDraining and
# InProgress (terminating).
ENDED = ("Successful", "Failed", "Cancelled")

_EC2_PENDING = ("pending", 0)
_EC2_RUNNING = ("running", 16)
_EC2_SHUTTING_DOWN = ("shutting-down", 32)


@dataclass
class LifecycleAction:
    hook: LifecycleHook
    token: str
    started: float
    timer: Timer

    @property
    def global_deadline(self) -> float:
        return self.started + min(GLOBAL_TIMEOUT_CAP, 100 * self.hook.heartbeat_timeout)


@dataclass
class Activity:
    """One scaling activity [ACTIVITY]: the launch or the termination of one instance, or a launch that
    failed. Its attributes are named as moto's response serializer looks them up."""

    group: FakeAutoScalingGroup
    description: str
    cause: str
    start_time: datetime
    details: str
    status_code: str = "PreInService"
    progress: int = 30
    status_message: str | None = None
    end_time: datetime | None = None
    activity_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    seq: int = field(default_factory=itertools.count().__next__)  # creation order, for the newest first

    @property
    def auto_scaling_group_name(self) -> str:
        return str(self.group.name)

    @property
    def auto_scaling_group_arn(self) -> str:
        return str(self.group.arn)

    @property
    def ended(self) -> bool:
        return self.status_code in ENDED

    def progressed(self, status_code: str, progress: int) -> None:
        if not self.ended:
            self.status_code, self.progress = status_code, progress

    def end(self, when: datetime, status_code: str = "Successful", reason: str | None = None) -> None:
        """Ends the activity (an ended one stays as it ended). [HOOKFAIL] a failure's reason is its
        StatusMessage and is appended to its description as "Status Reason"."""
        if self.ended:
            return
        self.status_code, self.progress, self.end_time = status_code, 100, when
        if reason is not None:
            self.status_message = reason
            self.description += f".  Status Reason: {reason}"

    def order(self) -> tuple[bool, int]:
        """[DESCACT] "Activities are sorted by start time. Activities still in progress are described
        first." Newest first: `describe-scaling-activities --max-items 1` shows a group's last one."""
        return self.ended, -self.seq


@dataclass
class Tracked:
    """What the sandbox knows about a group's instance beyond moto's InstanceState."""

    launched_from: dict[str, str] | None
    booted: bool = False
    activity: Activity | None = None  # the activity launching or terminating it
    actions: dict[str, LifecycleAction] = field(default_factory=dict)
    # AZRebalance: this instance is being replaced and no longer counts toward capacity.
    rebalance_victim: bool = False
    # AZRebalance: the instance this one was launched to replace, terminated once this is InService.
    replaces: InstanceState | None = None


def _zone(state: InstanceState) -> str:
    # moto keeps the zone as a placement object whose str() is the zone name.
    return str(state.availability_zone)


def _set_ec2_state(instance: Instance, state: tuple[str, int]) -> None:
    instance._state.name, instance._state.code = state


def _at(when: datetime) -> str:
    """A time as activity causes give it: 2020-10-30T19:35:51Z."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _details(subnet: str | None, zone: str) -> str:
    # [VERIFY] "Details": "{\"Subnet ID\":\"subnet-5ea0c127\",\"Availability Zone\":\"us-west-2b\"}"
    return json.dumps({"Subnet ID": subnet, "Availability Zone": zone}, separators=(",", ":"))


def _where(state: InstanceState) -> str:
    return _details(state.instance.subnet_id, _zone(state))


def _sentences(*parts: str | None) -> str:
    # [VERIFY] the sentences of a cause are separated by two spaces.
    return "  ".join(part for part in parts if part)


class AutoScalingRules:
    """The behaviour of one sandbox's Auto Scaling groups. ``install()`` makes it moto's."""

    def __init__(self, scheduler: Scheduler, timing: Timing) -> None:
        self.scheduler = scheduler
        self.timing = timing
        self.tracked: dict[str, Tracked] = {}
        self.activities: list[Activity] = []
        # Per group: the capacity check due (an activity starts there), the cause of the last change of
        # desired capacity not yet acted on, and the launches that failed in a row.
        self._checks: dict[str, Timer] = {}
        self._why: dict[str, str] = {}
        self._failures: dict[str, int] = {}
        # Who follows the machines (the simulated cluster): told when an instance is up and running,
        # when it starts shutting down, and when it is terminated.
        self.on_running: list[Callable[[Instance], None]] = []
        self.on_stopping: list[Callable[[str], None]] = []
        self.on_terminated: list[Callable[[str], None]] = []

    def install(self) -> None:
        global _active  # noqa: PLW0603 - moto's models are module-level; one sandbox per process
        _install_patches()
        _active = self

    # ----- capacity -------------------------------------------------------------------------

    def capacity(self, group: FakeAutoScalingGroup) -> list[InstanceState]:
        return [
            state
            for state in group.instance_states
            if state.lifecycle_state in CAPACITY_STATES and not self._track(state).rebalance_victim
        ]

    def desire_changed(self, group: FakeAutoScalingGroup, cause: str) -> None:
        """Desired capacity changed for ``cause`` (the first sentence of the activities that follow)."""
        self._why[group.name] = cause
        self.reconcile(group)

    def reconcile(self, group: FakeAutoScalingGroup, delay: float | None = None) -> None:
        """Auto Scaling compares desired and actual capacity a moment after a change (the scenario's
        activity_seconds, or ``delay``), not in the call that changed it [VERIFY]: the activities and
        their instances come then."""
        if group.name not in self._checks:
            seconds = self.timing.activity_seconds if delay is None else delay
            self._checks[group.name] = self.scheduler.call_later(seconds, partial(self._scale, group))

    def _scale(self, group: FakeAutoScalingGroup) -> None:
        """Launch or terminate until the group holds its desired capacity, one activity per instance
        [VERIFY], as far as the group's suspended processes allow: with Launch suspended it cannot
        scale out, with Terminate suspended it cannot scale in, and no activity starts ("can't initiate
        scale-out activities") until the process is resumed. [SUSPEND]"""
        del self._checks[group.name]
        if group.autoscaling_backend.autoscaling_groups.get(group.name) is not group:
            return  # the group was deleted meanwhile
        desired, actual = group.desired_capacity or 0, len(self.capacity(group))
        now = _at(self.scheduler.clock.wall())
        if desired > actual and not _suspended(group, "Launch"):
            cause = _sentences(
                self._why.pop(group.name, None),
                f"At {now} an instance was started in response to a difference between desired and "
                f"actual capacity, increasing the capacity from {actual} to {desired}.",
            )
            # Each launch goes to the zone with the fewest instances [BALANCE], counted once here and
            # kept as instances are added (recounting the group for each launch costs its size each time).
            counts = self._zone_counts(group)
            launched = []
            for _ in range(desired - actual):
                zone = min(group.availability_zones, key=counts.__getitem__)
                launched.append(self.launch(group, cause, zone))
                counts[zone] += 1
            if None in launched:
                failures = self._failures[group.name] = self._failures.get(group.name, 0) + 1
                retry = min(LAUNCH_RETRY_SECONDS * 2 ** (failures - 1), LAUNCH_RETRY_CAP_SECONDS)
                self.reconcile(group, delay=retry)
            else:
                self._failures.pop(group.name, None)
        elif desired < actual and not _suspended(group, "Terminate"):
            why = self._why.pop(group.name, None)
            shrinking = (
                f"At {now} an instance was taken out of service in response to a difference between "
                f"desired and actual capacity, shrinking the capacity from {actual} to {desired}."
            )
            for _ in range(actual - desired):
                victims = self.termination_order(group, self.capacity(group))
                if victims:
                    chosen = f"At {now} instance {victims[0].instance.id} was selected for termination."
                    self.begin_termination(victims[0], _sentences(why, shrinking, chosen))
        self.rebalance(group)
        self._sync_target_groups(group)

    def launch(
        self, group: FakeAutoScalingGroup, cause: str, zone: str | None = None
    ) -> InstanceState | None:
        """Launch one instance in the zone with the fewest instances [BALANCE], from the group's
        launch template version resolved now, so the instance keeps reporting that version. A launch
        EC2 refuses (its image does not exist) is a failed activity instead [DESCACT], tried again."""
        zone = zone or min(group.availability_zones, key=self._zone_counts(group).__getitem__)
        subnet = self._subnet_in(group, zone)
        details = _details(subnet, zone)
        template = group.ec2_launch_template
        launched_from: dict[str, str] | None = None
        launch_template_arg = None
        image_id, instance_type = group.image_id, group.instance_type
        if template is not None:
            version = template.get_version(group.launch_template_version)
            launched_from = {
                "LaunchTemplateId": template.id,
                "LaunchTemplateName": template.name,
                "Version": str(version.number),
            }
            launch_template_arg = {"LaunchTemplateId": template.id, "Version": str(version.number)}
            image_id, instance_type = version.image_id, version.instance_type or instance_type
        now = self.scheduler.clock.wall()
        if image_id not in group.ec2_backend.amis:
            failed = Activity(group, "Launching a new EC2 instance", cause, now, details)
            reason = f"The image id '[{image_id}]' does not exist. Launching EC2 instance failed."
            failed.end(now, "Failed", reason)
            self.activities.append(failed)
            return None
        tags = group.get_propagated_tags()
        tags[asg_models.ASG_NAME_TAG] = group.name
        tags.update(group.instance_tags)
        reservation = group.ec2_backend.run_instances(
            image_id,
            1,
            group.user_data,
            group.security_groups,
            instance_type=instance_type,
            tags={"instance": tags},
            placement=zone,
            launch_config=group.launch_config,
            launch_template=launch_template_arg,
            is_instance_type_default=False,
            subnet_id=subnet,
        )
        instance = reservation.instances[0]
        instance.autoscaling_group = group
        # EC2's LaunchTime is on the world's clock, as the Kubernetes side's timestamps are (moto stamps
        # real time, which a fast-forwarded sandbox has left behind).
        instance.launch_time = now.replace(tzinfo=None)
        _set_ec2_state(instance, _EC2_PENDING)
        state = InstanceState(
            instance,
            lifecycle_state="Pending",
            protected_from_scale_in=group.new_instances_protected_from_scale_in,
        )
        group.instance_states.append(state)
        activity = Activity(group, f"Launching a new EC2 instance: {instance.id}", cause, now, details)
        self.activities.append(activity)
        self.tracked[instance.id] = Tracked(launched_from=launched_from, activity=activity)
        # [HOOKS] a launching instance waits in Pending:Wait while it boots and the hook's actions run;
        # its activity is in progress until the instance is InService.
        self._start_actions(group, state, LAUNCHING, "Pending:Wait")
        self.scheduler.call_later(self.timing.boot_seconds, lambda: self._booted(state))
        return state

    def termination_order(
        self, group: FakeAutoScalingGroup, candidates: Iterable[InstanceState]
    ) -> list[InstanceState]:
        """The default termination policy [TERMPOL]: the zone with the most instances first, then
        instances from an older launch template or version, then the oldest (AWS picks at random
        among the rest; the sandbox stays deterministic). Protected instances are never chosen."""
        unprotected = [state for state in candidates if not state.protected_from_scale_in]
        counts = self._zone_counts(group)
        current = self._current_template(group)
        return sorted(
            unprotected,
            key=lambda s: (
                -counts[_zone(s)],
                self._track(s).launched_from == current,
                s.instance.launch_time,
            ),
        )

    def rebalance(self, group: FakeAutoScalingGroup) -> None:
        """AZRebalance [BALANCE]: when zones differ by more than one instance, launch in the
        smallest zone first and terminate in the largest once the new instance is InService (one
        at a time, which stays within the documented 10%-or-one-instance margin above MaxSize).
        Suspending AZRebalance, Launch or Terminate stops it. [SUSPEND]"""
        if any(_suspended(group, p) for p in ("AZRebalance", "Launch", "Terminate")):
            return
        states = [self._track(s) for s in group.instance_states]
        if any(t.rebalance_victim for t in states):
            return
        capacity = self.capacity(group)
        if any(s.lifecycle_state != "InService" for s in capacity):
            return  # let launches settle before judging the balance
        counts = self._zone_counts(group)
        smallest = min(group.availability_zones, key=counts.__getitem__)
        largest = max(group.availability_zones, key=counts.__getitem__)
        if counts[largest] - counts[smallest] <= 1:
            return
        in_largest = [s for s in capacity if _zone(s) == largest]
        victims = self.termination_order(group, in_largest)
        if not victims:
            return
        launching = (
            f"At {_at(self.scheduler.clock.wall())} instances were launched to balance instances in zones "
            f"{smallest} with other zones resulting in more than desired number of instances in the group."
        )
        replacement = self.launch(group, launching, zone=smallest)
        if replacement is not None:
            self._track(victims[0]).rebalance_victim = True
            self._track(replacement).replaces = victims[0]

    # ----- termination ----------------------------------------------------------------------

    def terminate_in_group(
        self, backend: AutoScalingBackend, instance_id: str, should_decrement: bool
    ) -> Activity | None:
        """TerminateInstanceInAutoScalingGroup [TERMAPI]: returns the termination's activity. Works
        whatever processes are suspended [SUSPEND]; with decrement it cannot take desired below
        MinSize; without it the group launches a replacement."""
        state = self._find(backend, instance_id)
        group: FakeAutoScalingGroup = state.auto_scaling_group
        min_size, _, original = _bounds(group)
        if state.lifecycle_state in CAPACITY_STATES:
            if should_decrement:
                if original <= min_size:
                    raise ValidationError(
                        f"Currently, desiredSize equals minSize ({min_size}). Terminating instance "
                        "without replacement will violate group's min size constraint. Either set "
                        "shouldDecrementDesiredCapacity flag to false or lower group's min size."
                    )
                group.desired_capacity = original - 1
            shrinking = f", shrinking the capacity from {original} to {original - 1}"
            # [SCALEIN] "instance i-... was taken out of service in response to a user request, shrinking
            # the capacity from 1 to 0."
            self.begin_termination(
                state,
                f"At {_at(self.scheduler.clock.wall())} instance {instance_id} was taken out of service "
                f"in response to a user request{shrinking if should_decrement else ''}.",
            )
            self.reconcile(group)
        return self._track(state).activity

    def begin_termination(self, state: InstanceState, cause: str) -> None:
        """[HOOKFLOW] "the terminating instance is first deregistered from the load balancer" and
        "waits for existing connections to drain before completing the deregistration process": it
        stays Terminating while its target groups drain it. Then [HOOKS] it waits in Terminating:Wait
        while the group's termination hooks are pending; without hooks it shuts down."""
        # An instance leaving while its launch hooks are pending is not launched anymore: its launch
        # actions end here (their timeouts must not bring it InService), and completing one is the
        # "No active Lifecycle Action" error of any action that is not pending. [HOOKS] [COMPLETE]
        tracked = self._track(state)
        for name, action in list(tracked.actions.items()):
            if action.hook.lifecycle_transition == LAUNCHING:
                action.timer.cancel()
                del tracked.actions[name]
        now = self.scheduler.clock.wall()
        if tracked.activity is not None:
            tracked.activity.end(now, "Cancelled")  # a launch still in progress never completes
        description = f"Terminating EC2 instance: {state.instance.id}"
        tracked.activity = Activity(state.auto_scaling_group, description, cause, now, _where(state))
        tracked.activity.progressed("InProgress", 50)
        self.activities.append(tracked.activity)
        state.lifecycle_state = "Terminating"
        delay = self._deregister(state)
        if delay > 0:
            tracked.activity.progressed("WaitingForELBConnectionDraining", 50)
            self.scheduler.call_later(delay, lambda: self._drained(state))
        else:
            self._drained(state)

    def _deregister(self, state: InstanceState) -> float:
        """[DRAIN] "The initial state of a deregistering target is draining. After the deregistration
        delay elapses, the deregistration process completes and the state of the target is unused. If
        the target is part of an Auto Scaling group, it can be terminated and replaced." Each target
        group drains the instance for its delay attribute as it is now (ModifyTargetGroupAttributes
        counts); returns the longest, 0 without target groups. ELB cuts the wait short for a target
        without connections; the sandbox counts none, so it waits the full delay, AWS's longest."""
        delays = [0.0]
        for target_group in _target_groups(state.auto_scaling_group):
            target = target_group.targets.pop(state.instance.id, None)
            if target is None:
                continue  # never registered (it did not reach InService): nothing to drain
            # moto reports the targets it keeps here as draining (Target.DeregistrationInProgress).
            target_group.terminated_targets[state.instance.id] = target
            # moto keeps its default as an int and values set through the API as strings.
            delay = float(str(target_group.attributes[DEREGISTRATION_DELAY]))
            self.scheduler.call_later(delay, partial(_drained_target, target_group, state.instance.id))
            delays.append(delay)
        return max(delays)

    def _drained(self, state: InstanceState) -> None:
        if state.instance.id not in self.tracked:
            return  # terminated through EC2 while draining: gone already
        if not self._start_actions(state.auto_scaling_group, state, TERMINATING, "Terminating:Wait"):
            self._shut_down(state)
            return
        activity = self._track(state).activity
        if activity is not None:
            activity.progressed("MidLifecycleAction", 50)

    def register_in_service(self, group: FakeAutoScalingGroup) -> None:
        """[HOOKFLOW] "before the instance reaches the InService state, if the Auto Scaling group is
        associated with an Elastic Load Balancing load balancer, the instance is registered with the
        load balancer": instances join the group's target groups as they come InService (moto
        registers every instance, still pending ones too, which ELB refuses as not running)."""
        in_service = [
            {"Id": s.instance.id} for s in group.instance_states if s.lifecycle_state == "InService"
        ]
        for target_group in _target_groups(group):
            target_group.register(in_service)

    def notify_ec2_terminated(self, backend: AutoScalingBackend, instance_ids: list[str]) -> None:
        """Instances terminated through EC2 TerminateInstances bypass lifecycle hooks; the group
        finds them no longer running, marks them unhealthy and replaces them. [HEALTH]"""
        now = self.scheduler.clock.wall()
        for group in backend.autoscaling_groups.values():
            gone = [s for s in group.instance_states if s.instance.id in instance_ids]
            for state in gone:
                tracked = self._track(state)
                if tracked.activity is not None:
                    tracked.activity.end(now, "Cancelled")
                # "At 2019-10-30T17:21:23Z an instance was taken out of service in response to a EC2
                # health check indicating it has been terminated or stopped." (a real activity's cause)
                ended = Activity(
                    group,
                    f"Terminating EC2 instance: {state.instance.id}",
                    f"At {_at(now)} an instance was taken out of service in response to a EC2 health check "
                    "indicating it has been terminated or stopped.",
                    now,
                    _where(state),
                )
                ended.end(now)
                self.activities.append(ended)
                self._forget(state)
                # moto terminates at once, skipping shutting-down: the machine stops and is gone.
                for listener in [*self.on_stopping, *self.on_terminated]:
                    listener(state.instance.id)
            if gone:
                self.reconcile(group)

    def set_health(self, backend: AutoScalingBackend, instance_id: str, health_status: str) -> None:
        """ReplaceUnhealthy [SUSPEND]: an Unhealthy instance is terminated (through termination
        hooks) and replaced; with Launch suspended it is terminated but not replaced; with
        Terminate or ReplaceUnhealthy suspended it stays."""
        state = self._find(backend, instance_id)
        state.health_status = health_status
        group = state.auto_scaling_group
        if (
            health_status == "Unhealthy"
            and state.lifecycle_state == "InService"
            and not any(_suspended(group, p) for p in ("ReplaceUnhealthy", "Terminate"))
        ):
            self.begin_termination(
                state,
                f"At {_at(self.scheduler.clock.wall())} an instance was taken out of service in response "
                "to a user health-check.",
            )
            self.reconcile(group)

    def _shut_down(self, state: InstanceState) -> None:
        _set_ec2_state(state.instance, _EC2_SHUTTING_DOWN)
        activity = self._track(state).activity
        if activity is not None:
            activity.progressed("InProgress", 80)
        for listener in self.on_stopping:
            listener(state.instance.id)

        def terminated() -> None:
            group = state.auto_scaling_group
            # What EC2's TerminateInstances does to the instance, without moto's lookup of it, which
            # copies every reservation of the account.
            state.instance.terminate()
            if activity is not None:
                activity.end(self.scheduler.clock.wall())
            self._forget(state)
            for listener in self.on_terminated:
                listener(state.instance.id)
            self.reconcile(group)

        self.scheduler.call_later(self.timing.shutdown_seconds, terminated)

    def _forget(self, state: InstanceState) -> None:
        group = state.auto_scaling_group
        if state in group.instance_states:
            group.instance_states.remove(state)
        tracked = self.tracked.pop(state.instance.id, None)
        for action in tracked.actions.values() if tracked else ():
            action.timer.cancel()

    # ----- launch progress ------------------------------------------------------------------

    def _booted(self, state: InstanceState) -> None:
        if state.instance.id not in self.tracked or state.lifecycle_state not in CAPACITY_STATES:
            return
        _set_ec2_state(state.instance, _EC2_RUNNING)
        self._track(state).booted = True
        for listener in self.on_running:
            listener(state.instance)
        self._maybe_in_service(state)

    def _maybe_in_service(self, state: InstanceState) -> None:
        tracked = self._track(state)
        if not tracked.booted or tracked.actions or state.lifecycle_state not in CAPACITY_STATES:
            return
        state.lifecycle_state = "InService"
        now = self.scheduler.clock.wall()
        if tracked.activity is not None:
            tracked.activity.end(now)
        group = state.auto_scaling_group
        if tracked.replaces is not None:
            victim, tracked.replaces = tracked.replaces, None
            if victim.instance.id in self.tracked:
                desired = group.desired_capacity or 0
                self.begin_termination(
                    victim,
                    f"At {_at(now)} an instance was taken out of service in response to a difference "
                    f"between desired and actual capacity, shrinking the capacity from {desired + 1} to "
                    f"{desired}.",
                )
        self.rebalance(group)
        self._sync_target_groups(group)

    # ----- lifecycle actions ----------------------------------------------------------------

    def _start_actions(
        self, group: FakeAutoScalingGroup, state: InstanceState, transition: str, wait_state: str
    ) -> bool:
        hooks = [
            hook
            for hook in group.autoscaling_backend.lifecycle_hooks.values()
            if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == transition
        ]
        if not hooks:
            return False
        tracked = self._track(state)
        now = self.scheduler.clock.now()
        for hook in hooks:
            timer = self._timeout_timer(state, hook, hook.heartbeat_timeout)
            tracked.actions[hook.name] = LifecycleAction(hook, str(uuid.uuid4()), now, timer)
        state.lifecycle_state = wait_state
        if tracked.activity is not None:
            tracked.activity.progressed("MidLifecycleAction", tracked.activity.progress)
        return True

    def _timeout_timer(self, state: InstanceState, hook: LifecycleHook, delay: float) -> Timer:
        # [ADDHOOK] when the heartbeat timeout elapses, the hook's DefaultResult applies.
        return self.scheduler.call_later(
            delay, lambda: self._finish(state, hook.name, hook.default_result, "Heartbeat Timeout")
        )

    def complete(
        self,
        group: FakeAutoScalingGroup,
        hook_name: str,
        result: str,
        token: str | None,
        instance_id: str | None,
    ) -> None:
        """CompleteLifecycleAction [COMPLETE]."""
        if result not in ("CONTINUE", "ABANDON"):
            raise ValidationError(
                f"Value '{result}' at 'lifecycleActionResult' failed to satisfy constraint: "
                "Member must satisfy enum value set: [CONTINUE, ABANDON]"
            )
        state, _ = self._pending_action(group, hook_name, token, instance_id)
        self._finish(state, hook_name, result, f"Lifecycle Action Completed with {result} Result")

    def heartbeat(
        self, group: FakeAutoScalingGroup, hook_name: str, token: str | None, instance_id: str | None
    ) -> None:
        """RecordLifecycleActionHeartbeat [HEARTBEAT]: restarts the heartbeat timeout, but never
        past the global timeout. [HOOKS]"""
        state, action = self._pending_action(group, hook_name, token, instance_id)
        action.timer.cancel()
        now = self.scheduler.clock.now()
        delay = min(action.hook.heartbeat_timeout, action.global_deadline - now)
        action.timer = self._timeout_timer(state, action.hook, delay)

    def hook_deleted(self, group: FakeAutoScalingGroup, hook_name: str) -> None:
        """[DELHOOK] outstanding actions of a deleted hook are completed: ABANDON for launching
        instances, CONTINUE for terminating ones."""
        for state in list(group.instance_states):
            action = self._track(state).actions.get(hook_name)
            if action is not None:
                result = "ABANDON" if action.hook.lifecycle_transition == LAUNCHING else "CONTINUE"
                self._finish(state, hook_name, result, f"Lifecycle Action Completed with {result} Result")

    def _finish(self, state: InstanceState, hook_name: str, result: str, how: str) -> None:
        """[ADDHOOK] for a terminating instance both results let it terminate, but ABANDON stops
        the remaining hooks; for a launching instance ABANDON terminates it, and [HOOKFAIL] its launch
        activity ends: "Instance failed to complete user's Lifecycle Action: Lifecycle Action with token
        ... was abandoned: Lifecycle Action Completed with ABANDON Result" (or "Heartbeat Timeout")."""
        tracked = self.tracked.get(state.instance.id)
        if tracked is None or hook_name not in tracked.actions:
            return
        leaving = state.lifecycle_state.startswith("Terminating")
        if leaving and tracked.actions[hook_name].hook.lifecycle_transition == LAUNCHING:
            return  # a launch action outliving the launch decides nothing for a leaving instance
        action = tracked.actions.pop(hook_name)
        action.timer.cancel()
        if result == "ABANDON":
            for other in tracked.actions.values():
                other.timer.cancel()
            tracked.actions.clear()
        if tracked.actions:
            return
        group = state.auto_scaling_group
        if action.hook.lifecycle_transition == TERMINATING:
            state.lifecycle_state = "Terminating:Proceed"
            self._shut_down(state)
        elif result == "ABANDON":
            if tracked.activity is not None:
                tracked.activity.end(
                    self.scheduler.clock.wall(),
                    "Cancelled",
                    f"Instance failed to complete user's Lifecycle Action: Lifecycle Action with token "
                    f"{action.token} was abandoned: {how}",
                )
            state.lifecycle_state = "Terminating"
            self._shut_down(state)
            self.reconcile(group)
        else:
            state.lifecycle_state = "Pending:Proceed"
            self._maybe_in_service(state)

    def _pending_action(
        self, group: FakeAutoScalingGroup, hook_name: str, token: str | None, instance_id: str | None
    ) -> tuple[InstanceState, LifecycleAction]:
        for state in group.instance_states:
            action = self._track(state).actions.get(hook_name)
            if action is None:
                continue
            if (token and action.token == token) or (not token and state.instance.id == instance_id):
                return state, action
        what = f"token {token}" if token else f"instance ID {instance_id}"
        raise ValidationError(f"No active Lifecycle Action found with {what}")

    # ----- helpers --------------------------------------------------------------------------

    def _track(self, state: InstanceState) -> Tracked:
        # Instances moto created before the rules were installed (or attached) report the
        # template moto would: there is no record of what they launched from.
        return self.tracked.setdefault(state.instance.id, Tracked(launched_from=None, booted=True))

    @staticmethod
    def _find(backend: AutoScalingBackend, instance_id: str) -> InstanceState:
        for group in backend.autoscaling_groups.values():
            for state in group.instance_states:
                if state.instance.id == instance_id:
                    return state
        raise ValidationError(
            f"Instance Id not found - No managed instance found for instance ID: {instance_id}"
        )

    def _zone_counts(self, group: FakeAutoScalingGroup) -> dict[str, int]:
        counts = dict.fromkeys(group.availability_zones, 0)
        for state in self.capacity(group):
            counts[_zone(state)] = counts.get(_zone(state), 0) + 1
        return counts

    @staticmethod
    def _current_template(group: FakeAutoScalingGroup) -> dict[str, str] | None:
        template = group.ec2_launch_template
        if template is None:
            return None
        return {
            "LaunchTemplateId": template.id,
            "LaunchTemplateName": template.name,
            "Version": str(template.get_version(group.launch_template_version).number),
        }

    @staticmethod
    def _subnet_in(group: FakeAutoScalingGroup, zone: str) -> str | None:
        # [BALANCE] "If there are multiple subnets in the chosen zone, selects a subnet at random":
        # the sandbox takes the first, to stay deterministic.
        if not group.vpc_zone_identifier:
            return None
        ids = group.vpc_zone_identifier.split(",")
        for subnet in group.ec2_backend.describe_subnets(subnet_ids=ids):
            if subnet.availability_zone == zone:
                return str(subnet.id)
        return None

    @staticmethod
    def _sync_target_groups(group: FakeAutoScalingGroup) -> None:
        backend = group.autoscaling_backend
        if group.name in backend.autoscaling_groups:
            backend.update_attached_elbs(group.name)
            backend.update_attached_target_groups(group.name)


def _bounds(group: FakeAutoScalingGroup) -> tuple[int, int, int]:
    """(min, max, desired): moto types them optional, but every created group has all three."""
    return group.min_size or 0, group.max_size or 0, group.desired_capacity or 0


def _suspended(group: FakeAutoScalingGroup, process: str) -> bool:
    return any(p["ProcessName"] == process for p in group.suspended_processes)


def _target_groups(group: FakeAutoScalingGroup) -> list[FakeTargetGroup]:
    elbv2: ELBv2Backend = group.autoscaling_backend.elbv2_backend
    return [elbv2.target_groups[arn] for arn in group.target_group_arns if arn in elbv2.target_groups]


def _drained_target(target_group: FakeTargetGroup, instance_id: str) -> None:
    """[DRAIN] the deregistration delay has elapsed: the target is unused (Target.NotRegistered)."""
    target = target_group.terminated_targets.pop(instance_id, None)
    if target is not None:
        target_group.deregistered_targets[instance_id] = target


_active: AutoScalingRules | None = None


def _rules() -> AutoScalingRules:
    if _active is None:
        raise RuntimeError("the sandbox's Auto Scaling rules are not installed")
    return _active


def _group(backend: AutoScalingBackend, name: str) -> FakeAutoScalingGroup:
    group: FakeAutoScalingGroup | None = backend.autoscaling_groups.get(name)
    if group is None:
        raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
    return group


# ----- validation AWS performs and moto skips ------------------------------------------------


def _check_bounds(min_size: int, max_size: int, desired: int | None) -> None:
    if min_size > max_size:
        raise ValidationError(
            f"Max bound, {max_size}, must be greater than or equal to min bound, {min_size}"
        )
    if desired is not None and not min_size <= desired <= max_size:
        raise ValidationError(
            f"Desired capacity:{desired} must be between the specified min size:{min_size} "
            f"and max size:{max_size}"
        )


def _check_hook(timeout: int | None, transition: str | None, result: str | None) -> None:
    low, high = HEARTBEAT_RANGE
    if timeout is not None and not low <= timeout <= high:
        raise ValidationError(f"Heartbeat timeout must be between {low} and {high} seconds, got {timeout}")
    if transition not in (LAUNCHING, TERMINATING):
        raise ValidationError(f"Invalid Lifecycle Transition: {transition}")
    if result not in (None, "CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid DefaultResult: {result}")


# ----- the patches ----------------------------------------------------------------------------

# moto's own implementations, kept for the patches that add a rule and then defer to moto.
_ORIGINALS: dict[str, Callable[..., Any]] = {
    name: getattr(AutoScalingBackend, name)
    for name in (
        "create_auto_scaling_group",
        "update_auto_scaling_group",
        "create_lifecycle_hook",
        "delete_lifecycle_hook",
        "resume_processes",
    )
}
_MOTO_MODIFY_TARGET_GROUP_ATTRIBUTES: Callable[..., None] = ELBv2Backend.modify_target_group_attributes
_MOTO_PUT_LIFECYCLE_HOOK: Callable[..., ActionResult] = asg_responses.AutoScalingResponse.put_lifecycle_hook
_MOTO_CREATE_VERSION: Callable[..., LaunchTemplateVersion] = LaunchTemplate.create_version
_MOTO_CREATE_VERSION_ACTION: Callable[..., ActionResult] = LaunchTemplates.create_launch_template_version
# The data of the SourceVersion while a CreateLaunchTemplateVersion that names one runs.
_source_data: ContextVar[dict[str, Any] | None] = ContextVar("source_data", default=None)
_MOTO_DESCRIBE_IMAGES = AmiBackend.describe_images
_MOTO_POSSIBLE_KEYS = XFormedAttributePicker.get_possible_keys
_WILDCARDS = frozenset("*?[")  # an EC2 filter value with these is a pattern, not a plain value
_MOTO_LAUNCH_TEMPLATE: Callable[[InstanceState], dict[str, Any] | None] = InstanceState.launch_template.fget  # type: ignore[attr-defined]


def _now() -> str:
    return _at(_rules().scheduler.clock.wall())


def _create_auto_scaling_group(self: AutoScalingBackend, **kwargs: Any) -> FakeAutoScalingGroup:
    min_size = asg_models.make_int(kwargs["min_size"]) or 0
    max_size = asg_models.make_int(kwargs["max_size"]) or 0
    _check_bounds(min_size, max_size, asg_models.make_int(kwargs["desired_capacity"]))
    group: FakeAutoScalingGroup = _ORIGINALS["create_auto_scaling_group"](self, **kwargs)
    _, _, desired = _bounds(group)
    if desired:
        cause = (
            f"At {_now()} a user request created an AutoScalingGroup changing the desired capacity "
            f"from 0 to {desired}."
        )
        _rules().desire_changed(group, cause)
    return group


def _update_auto_scaling_group(self: AutoScalingBackend, **kwargs: Any) -> FakeAutoScalingGroup:
    group = _group(self, kwargs["name"])
    current_min, current_max, current_desired = _bounds(group)
    min_size = current_min if kwargs["min_size"] is None else kwargs["min_size"]
    max_size = current_max if kwargs["max_size"] is None else kwargs["max_size"]
    _check_bounds(min_size, max_size, kwargs["desired_capacity"])
    if kwargs["desired_capacity"] is None:
        # AWS moves desired into new bounds; moto compares against its instance count instead.
        kwargs["desired_capacity"] = min(max(current_desired, min_size), max_size)
    policy = group.mixed_instances_policy
    updated: FakeAutoScalingGroup = _ORIGINALS["update_auto_scaling_group"](self, **kwargs)
    if kwargs.get("mixed_instances_policy") is None:
        # moto clears the policy on any update that does not repeat it; AWS keeps it.
        updated.mixed_instances_policy = policy
    desired = kwargs["desired_capacity"]
    if desired != current_desired:
        # [VERIFY] "At 2020-10-30T19:35:51Z a user request update of AutoScalingGroup constraints to
        # min: 0, max: 16, desired: 16 changing the desired capacity from 0 to 16."
        cause = (
            f"At {_now()} a user request update of AutoScalingGroup constraints to min: {min_size}, "
            f"max: {max_size}, desired: {desired} changing the desired capacity from {current_desired} "
            f"to {desired}."
        )
        _rules().desire_changed(updated, cause)
    return updated


def _set_desired_capacity(self: AutoScalingBackend, group_name: str, desired_capacity: int | None) -> None:
    group = _group(self, group_name)
    min_size, max_size, _ = _bounds(group)
    if desired_capacity is not None and desired_capacity > max_size:
        raise ValidationError(
            f"New SetDesiredCapacity value {desired_capacity} is above max value {max_size} "
            "for the AutoScalingGroup."
        )
    if desired_capacity is not None and desired_capacity < min_size:
        raise ValidationError(
            f"New SetDesiredCapacity value {desired_capacity} is below min value {min_size} "
            "for the AutoScalingGroup."
        )
    _, _, current = _bounds(group)
    group.set_desired_capacity(desired_capacity)
    if group.desired_capacity != current:
        # [SCALEIN] "a user request explicitly set group desired capacity changing the desired capacity
        # from 6 to 5"
        cause = (
            f"At {_now()} a user request explicitly set group desired capacity changing the desired "
            f"capacity from {current} to {group.desired_capacity}."
        )
        _rules().desire_changed(group, cause)


def _group_set_desired_capacity(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
    self.desired_capacity = self.min_size if new_capacity is None else new_capacity
    _rules().reconcile(self)


def _replace_instances(
    self: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]
) -> None:
    _rules().reconcile(self)


def _create_lifecycle_hook(self: AutoScalingBackend, **kwargs: Any) -> LifecycleHook:
    _group(self, kwargs["as_name"])
    _check_hook(kwargs["timeout"], kwargs["transition"], kwargs["result"])
    return _ORIGINALS["create_lifecycle_hook"](self, **kwargs)  # type: ignore[no-any-return]


def _delete_lifecycle_hook(self: AutoScalingBackend, as_name: str, name: str) -> None:
    _rules().hook_deleted(_group(self, as_name), name)
    _ORIGINALS["delete_lifecycle_hook"](self, as_name, name)


def _resume_processes(self: AutoScalingBackend, group_name: str, scaling_processes: list[str]) -> None:
    _ORIGINALS["resume_processes"](self, group_name, scaling_processes)
    _rules().reconcile(_group(self, group_name))


def _modify_target_group_attributes(
    self: ELBv2Backend, target_group_arn: str, attributes: dict[str, Any]
) -> None:
    """[TGATTR] the deregistration delay may be 0 to 3600 seconds, both included; moto refuses 3600.
    The delay is checked here, moto checks the rest (given a delay it accepts) and stores them."""
    delay = attributes.get(DEREGISTRATION_DELAY)
    if delay is None:
        _MOTO_MODIFY_TARGET_GROUP_ATTRIBUTES(self, target_group_arn, attributes)
        return
    low, high = DEREGISTRATION_DELAY_RANGE
    if not str(delay).isdigit() or not low <= int(delay) <= high:
        raise elbv2_exceptions.ValidationError(
            f"'{DEREGISTRATION_DELAY}' value '{delay}' must be between '{low}-{high}' inclusive"
        )
    _MOTO_MODIFY_TARGET_GROUP_ATTRIBUTES(
        self, target_group_arn, {**attributes, DEREGISTRATION_DELAY: str(low)}
    )
    self.target_groups[target_group_arn].attributes[DEREGISTRATION_DELAY] = delay


def _create_launch_template_version(
    self: LaunchTemplate, data: dict[str, Any], description: str
) -> LaunchTemplateVersion:
    """UserData is base64 in CreateLaunchTemplateVersion as in CreateLaunchTemplate [LTDATA]; moto wraps
    it as such only in the latter, and its launch path then rejects a version made by the former (as
    Terraform makes one for every template change)."""
    if isinstance(data.get("UserData"), str):
        data = {**data, "UserData": parse_user_data(data["UserData"])}
    return _MOTO_CREATE_VERSION(self, {**(_source_data.get() or {}), **data}, description)


def _create_launch_template_version_action(self: LaunchTemplates) -> ActionResult:
    """A version made from a SourceVersion "inherits the same launch parameters as the source version,
    except for parameters that you specify in LaunchTemplateData" [LTVERSION]; moto starts it empty,
    so an instance launched from it would have no instance type."""
    source = self._get_param("SourceVersion")
    if source is None:
        return _MOTO_CREATE_VERSION_ACTION(self)
    name, template_id = self._get_param("LaunchTemplateName"), self._get_param("LaunchTemplateId")
    template = (
        self.ec2_backend.get_launch_template(template_id)
        if template_id
        else self.ec2_backend.get_launch_template_by_name(name)
    )
    token = _source_data.set(copy.deepcopy(_source_version(template, source).data))
    try:
        return _MOTO_CREATE_VERSION_ACTION(self)
    finally:
        _source_data.reset(token)


def _source_version(template: LaunchTemplate, source: str) -> LaunchTemplateVersion:
    """The version a SourceVersion names: a version number [LTVERSION], or $Latest or $Default, which
    EC2 resolves here as in a launch template specification [LTSPEC] (the API reference lists no alias
    for SourceVersion, but EC2 accepts both, as the many scripts passing `--source-version '$Latest'`
    rely on). Anything else names no version of the template: InvalidLaunchTemplateId.VersionNotFound
    [EC2ERRORS]. moto would take "0" or "-1" for an index from the end, and fail on any other word."""
    number = re.fullmatch(r"[1-9][0-9]*", source)
    if source in ("$Latest", "$Default") or (number and int(source) <= len(template.versions)):
        return template.get_version(source)
    raise InvalidLaunchTemplateVersionNotFound(version=source, template_id=template.id)


def _describe_images(
    self: AmiBackend,
    ami_ids: list[str] | None = None,
    filters: dict[str, Any] | None = None,
    exec_users: list[str] | None = None,
    owners: list[str] | None = None,
) -> list[Ami]:
    """moto's DescribeImages, with the lookup of one image by its exact id (what every new Instance
    makes of its image) read from moto's index of images instead of matched against each of them
    (moto keeps a thousand stock images); the same answer: the image, or none."""
    image_id = (filters or {}).get("image-id") if len(filters or {}) == 1 else None
    if isinstance(image_id, str) and not (ami_ids or exec_users or owners or _WILDCARDS & set(image_id)):
        image = self.amis.get(image_id)
        return [image] if image is not None else []
    return _MOTO_DESCRIBE_IMAGES(self, ami_ids, filters, exec_users, owners)


def _get_instance(self: InstanceBackend, instance_id: str) -> Instance:
    """moto's lookup of one instance, over its reservations as they are: moto's copies every
    reservation of the account first, for each instance launched or terminated."""
    for reservation in self.reservations.values():
        instances: list[Instance] = reservation.instances
        for instance in instances:
            if instance.id == instance_id:
                return instance
    raise InvalidInstanceIdError(instance_id)


def _get_tags(self: TaggedEC2Resource) -> list[dict[str, str]]:
    """An EC2 resource's tags, as moto's DescribeTags filtered on its id lists them, read from moto's
    tags of that resource instead of matched against every tag of the account: the instances of a
    DescribeInstances, or of a filter on their tags, each did that."""
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    tags: dict[str, str] = self.ec2_backend.tags.get(resource_id, {})  # type: ignore[attr-defined]
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": kind}
        for key, value in tags.items()
    ]


def _possible_keys(self: XFormedAttributePicker, context: AttributePickerContext) -> tuple[str, ...]:
    """The attribute names moto's response serializer tries for one member of a response, worked out
    once per response for each kind of object, member and shape instead of for every object: its
    alias rules read only the object's class (its name, its Meta), the member's name, the shape and
    the shape's parent. A DescribeInstances of 300 instances asked them 40,000 times."""
    cache: dict[tuple[Any, ...], tuple[str, ...]] = self.__dict__.setdefault("_keys", {})
    shape = context.shape
    key = (type(context.obj), context.key, shape, getattr(shape, "parent", None))
    keys = cache.get(key)
    if keys is None:
        keys = cache[key] = tuple(_MOTO_POSSIBLE_KEYS(self, context))
    return keys


def _pick(self: AttributePicker, context: AttributePickerContext) -> Any:
    """moto's value of one member of a response: the first of its possible attribute names the object
    has, then the response's transformer for that member's path, if any. Which transformer applies is
    worked out once per path per response, not by trying each transformer on every value."""
    obj = context.obj
    for possible_key in self.get_possible_keys(context):
        value = get_value(obj, possible_key, MISSING)
        if value is not MISSING:
            break
    else:
        value = None
    transforms: dict[str, Callable[[Any], Any] | None] = self.__dict__.setdefault("_transforms", {})
    path = f"{context.key_path}.{context.key}"
    if path not in transforms:
        transforms[path] = next(
            (transform for end, transform in self.response_transformers.items() if path.endswith(end)),
            None,
        )
    transform = transforms[path]
    return value if transform is None else transform(value)


def _launch_template(self: InstanceState) -> dict[str, Any] | None:
    tracked = _rules().tracked.get(self.instance.id)
    if tracked is not None and tracked.launched_from is not None:
        return tracked.launched_from
    return _MOTO_LAUNCH_TEMPLATE(self)


def _complete_lifecycle_action(self: asg_responses.AutoScalingResponse) -> ActionResult:
    _rules().complete(
        _group(self.autoscaling_backend, self._get_param("AutoScalingGroupName")),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionResult"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    return EmptyResult()


def _put_lifecycle_hook(self: asg_responses.AutoScalingResponse) -> ActionResult:
    """A hook has the notification target and role it was given, or none [PUTHOOK]; moto gives every hook
    the same made-up ones, which a client comparing what it asked for (Terraform) sees as drift."""
    result = _MOTO_PUT_LIFECYCLE_HOOK(self)
    (hook,) = self.autoscaling_backend.describe_lifecycle_hooks(
        self._get_param("AutoScalingGroupName"), [self._get_param("LifecycleHookName")]
    )
    hook.role_arn = self._get_param("RoleARN")
    hook.notification_target_arn = self._get_param("NotificationTargetARN")
    return result


def _describe_scaling_activities(self: asg_responses.AutoScalingResponse) -> ActionResult:
    """DescribeScalingActivities [DESCACT]: the activities of the named group (of every group when none
    is named), or those of ActivityIds among them ("If unknown activities are requested, they are
    ignored with no error"), those of deleted groups only with IncludeDeletedGroups; in progress first,
    then newest first; MaxRecords (default and at most 100) a page, NextToken for the next."""
    name = self._get_param("AutoScalingGroupName")
    ids = set(self._get_param("ActivityIds", []))
    include_deleted = self._get_bool_param("IncludeDeletedGroups", False)
    max_records = self._get_int_param("MaxRecords") or MAX_RECORDS
    if max_records > MAX_RECORDS or len(ids) > MAX_ACTIVITY_IDS:
        raise ValidationError(
            f"MaxRecords must be at most {MAX_RECORDS} and ActivityIds list at most {MAX_ACTIVITY_IDS} IDs"
        )
    groups = self.autoscaling_backend.autoscaling_groups
    listed = sorted(
        (
            a
            for a in _rules().activities
            if (not name or a.group.name == name)
            and (not ids or a.activity_id in ids)
            and (include_deleted or groups.get(a.group.name) is a.group)
        ),
        key=Activity.order,
    )
    token = self._get_param("NextToken")
    if token:
        try:
            ended, seq = (int(part) for part in token.split(":"))
        except ValueError:
            raise ValidationError("Invalid NextToken") from None
        listed = [a for a in listed if a.order() > (bool(ended), seq)]
    page = listed[:max_records]
    result: dict[str, Any] = {"Activities": page}
    if len(listed) > max_records:
        last = page[-1].order()
        result["NextToken"] = f"{int(last[0])}:{last[1]}"
    return ActionResult(result)


def _record_lifecycle_action_heartbeat(self: asg_responses.AutoScalingResponse) -> ActionResult:
    _rules().heartbeat(
        _group(self.autoscaling_backend, self._get_param("AutoScalingGroupName")),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    return EmptyResult()


_PATCHES: dict[tuple[type, str], Any] = {
    (AutoScalingBackend, "create_auto_scaling_group"): _create_auto_scaling_group,
    (AutoScalingBackend, "update_auto_scaling_group"): _update_auto_scaling_group,
    (AutoScalingBackend, "set_desired_capacity"): _set_desired_capacity,
    (AutoScalingBackend, "create_lifecycle_hook"): _create_lifecycle_hook,
    (AutoScalingBackend, "delete_lifecycle_hook"): _delete_lifecycle_hook,
    (AutoScalingBackend, "resume_processes"): _resume_processes,
    (AutoScalingBackend, "terminate_instance"): lambda self, instance_id, should_decrement: (
        _rules().terminate_in_group(self, instance_id, should_decrement)
    ),
    (AutoScalingBackend, "notify_terminate_instances"): lambda self, ids: _rules().notify_ec2_terminated(
        self, ids
    ),
    (AutoScalingBackend, "update_attached_target_groups"): lambda self, group_name: (
        _rules().register_in_service(_group(self, group_name))
    ),
    (ELBv2Backend, "modify_target_group_attributes"): _modify_target_group_attributes,
    (AutoScalingBackend, "set_instance_health"): lambda self, instance_id, health_status: _rules().set_health(
        self, instance_id, health_status
    ),
    (FakeAutoScalingGroup, "set_desired_capacity"): _group_set_desired_capacity,
    (FakeAutoScalingGroup, "replace_autoscaling_group_instances"): _replace_instances,
    (InstanceState, "launch_template"): property(_launch_template),
    (AmiBackend, "describe_images"): _describe_images,
    (TaggedEC2Resource, "get_tags"): _get_tags,
    (XFormedAttributePicker, "get_possible_keys"): _possible_keys,
    (AttributePicker, "__call__"): _pick,
    (InstanceBackend, "get_instance"): _get_instance,
    (LaunchTemplate, "create_version"): _create_launch_template_version,
    (LaunchTemplates, "create_launch_template_version"): _create_launch_template_version_action,
    (asg_responses.AutoScalingResponse, "put_lifecycle_hook"): _put_lifecycle_hook,
    (asg_responses.AutoScalingResponse, "complete_lifecycle_action"): _complete_lifecycle_action,
    (asg_responses.AutoScalingResponse, "describe_scaling_activities"): _describe_scaling_activities,
    (
        asg_responses.AutoScalingResponse,
        "record_lifecycle_action_heartbeat",
    ): _record_lifecycle_action_heartbeat,
}


def _install_patches() -> None:
    for (cls, name), replacement in _PATCHES.items():
        setattr(cls, name, replacement)
