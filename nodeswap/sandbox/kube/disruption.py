"""PodDisruptionBudgets as the disruption controller computes them and the Eviction API judges them.

Pure functions over API objects, following kubernetes/kubernetes pkg/controller/disruption and
pkg/registry/core/pod/storage/eviction.go, and the documented formulas
(https://kubernetes.io/docs/tasks/run-application/configure-pdb/):

- minAvailable as an integer: expectedPods = the pods the selector matches; desiredHealthy = minAvailable.
- maxUnavailable (integer or percentage) or minAvailable as a percentage: expectedPods = the sum of the
  scales of the pods' top controllers (a Deployment once, however many ReplicaSets it has; pods with no
  controller are left out as unmanaged); percentages round up; desiredHealthy = expected -
  maxUnavailable, or the rounded-up percentage of expected.
- currentHealthy = matched pods that are Ready, not being deleted and not in status.disruptedPods.
- disruptionsAllowed = max(0, currentHealthy - desiredHealthy), and 0 when expectedPods <= 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Object = dict[str, Any]
# An eviction recorded in status.disruptedPods stops counting against the budget after this long if
# the pod was not deleted (DeletionTimeout in the disruption controller).
DISRUPTED_POD_TIMEOUT = timedelta(minutes=2)
EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_PDBS = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)


UNMANAGED_PODS = (
    "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a "
    "result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. "
    'To account for these pods please set ".spec.minAvailable" field of the PDB to an integer value.'
)
# What ``controller_scale`` returns: the UID of the pod's top controller (the Deployment, not its
# ReplicaSet) and that controller's replicas.
ControllerScale = Callable[[Object], tuple[str, int]]


class ScaleUnknown(Exception):
    """A matched pod has a controller whose scale could not be read."""


def scaled(value: int | str, total: int) -> int:
    """An IntOrString against ``total``; percentages round up (GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * total / 100)


def is_ready(pod: Object) -> bool:
    # A loop, not any() over a generator (twice the cost): controllers ask it of thousands of pods a pass.
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return False


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class BudgetStatus:
    expected_pods: int
    desired_healthy: int
    current_healthy: int
    disruptions_allowed: int
    disrupted_pods: dict[str, str]
    unmanaged_pods: tuple[str, ...] = ()  # selected pods without a controller, left out of expectedPods

    def as_status(self, generation: int, now: str) -> Object:
        allowed = self.disruptions_allowed > 0
        return {
            "observedGeneration": generation,
            "expectedPods": self.expected_pods,
            "desiredHealthy": self.desired_healthy,
            "currentHealthy": self.current_healthy,
            "disruptionsAllowed": self.disruptions_allowed,
            "disruptedPods": self.disrupted_pods or None,
            "conditions": [
                {
                    "type": "DisruptionAllowed",
                    "status": "True" if allowed else "False",
                    "reason": "SufficientPods" if allowed else "InsufficientPods",
                    "message": "",
                    "observedGeneration": generation,
                    "lastTransitionTime": now,
                }
            ],
        }


def budget_status(
    pdb: Object, pods: list[Object], controller_scale: ControllerScale, now: datetime
) -> BudgetStatus:
    """The status the disruption controller computes for ``pdb`` over the pods it selects.

    ``controller_scale(pod)`` returns the UID and replicas of the pod's top controller or raises
    ScaleUnknown.
    """
    spec = pdb.get("spec", {})
    recorded = pdb.get("status", {}).get("disruptedPods") or {}
    # An entry counts while its pod is still there and not being deleted, until it expires.
    remaining = (
        {p["metadata"]["name"] for p in pods if "deletionTimestamp" not in p["metadata"]}
        if recorded
        else set()
    )
    disrupted = {
        name: when
        for name, when in recorded.items()
        if timestamp(when) + DISRUPTED_POD_TIMEOUT > now and name in remaining
    }
    min_available = spec.get("minAvailable")
    max_unavailable = spec.get("maxUnavailable")
    unmanaged: tuple[str, ...] = ()
    if isinstance(min_available, int):
        expected, desired = len(pods), min_available
    else:
        expected, unmanaged = _expected_scale(pods, controller_scale)
        if max_unavailable is not None:
            desired = max(0, expected - scaled(max_unavailable, expected))
        elif min_available is not None:
            desired = scaled(min_available, expected)
        else:
            desired = expected  # neither set: the API requires one; treat as no disruption allowed
    healthy = len(
        [
            pod
            for pod in pods
            if is_ready(pod)
            and "deletionTimestamp" not in pod["metadata"]
            and pod["metadata"]["name"] not in disrupted
        ]
    )
    allowed = max(0, healthy - desired) if expected > 0 else 0
    return BudgetStatus(expected, desired, healthy, allowed, disrupted, unmanaged)


def _expected_scale(pods: list[Object], controller_scale: ControllerScale) -> tuple[int, tuple[str, ...]]:
    """The sum of the scales of the pods' distinct top controllers, keyed by the UID the finder
    returns (getExpectedScale), and the names of the pods with no controller, which it skips."""
    scales: dict[str, int] = {}
    unmanaged: list[str] = []
    # The pods of one controller share its answer: asked once per controller reference.
    known: dict[tuple[Any, ...], tuple[str, int]] = {}
    for pod in pods:
        owner = controller_of(pod)
        if owner is None:
            unmanaged.append(pod["metadata"]["name"])
            continue
        reference = (owner.get("kind"), owner.get("name"), owner.get("uid"))
        if reference not in known:
            known[reference] = controller_scale(pod)
        uid, scale = known[reference]
        scales[uid] = scale
    return sum(scales.values()), tuple(unmanaged)


def controller_of(obj: Object) -> Object | None:
    for owner in obj.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("controller"):
            owner_: Object = owner
            return owner_
    return None


@dataclass(frozen=True)
class Verdict:
    """What the eviction subresource answers: allow (delete the pod, maybe charge a PDB) or refuse."""

    code: int  # 201 allowed, 429 refused by a budget, 500 misconfigured
    message: str = ""
    cause: str | None = None
    charge: Object | None = None  # the PDB whose disruptionsAllowed the eviction consumes
    retry_after: int | None = None  # seconds, when the server knows when to come back

    @property
    def allowed(self) -> bool:
        return self.code == 201


def judge_eviction(pod: Object, pdbs: list[Object]) -> Verdict:
    """The eviction subresource's decision for ``pod`` given the PDBs that select it."""
    meta, phase = pod["metadata"], pod.get("status", {}).get("phase")
    # A pod that is terminal, still pending or already being deleted disrupts nothing further.
    if phase in ("Succeeded", "Failed", "Pending") or "deletionTimestamp" in meta:
        return Verdict(201)
    if len(pdbs) > 1:
        return Verdict(500, MULTIPLE_PDBS)
    if not pdbs:
        return Verdict(201)
    pdb = pdbs[0]
    status = pdb.get("status", {})
    policy = pdb.get("spec", {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
    if not is_ready(pod):
        if policy == "AlwaysAllow":
            return Verdict(201)
        desired, healthy = status.get("desiredHealthy", 0), status.get("currentHealthy", 0)
        if healthy >= desired > 0:
            return Verdict(201)
    name = pdb["metadata"]["name"]
    if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 0):
        processing = f"The disruption budget {name} is still being processed by the server."
        return Verdict(429, EVICTION_REFUSED, processing, retry_after=10)
    if status.get("disruptionsAllowed", 0) <= 0:
        return Verdict(
            429,
            EVICTION_REFUSED,
            f"The disruption budget {name} needs {status.get('desiredHealthy', 0)} healthy pods "
            f"and has {status.get('currentHealthy', 0)} currently",
        )
    return Verdict(201, charge=pdb)
