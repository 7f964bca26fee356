"""Every retry nodeswap makes, in one place (tenacity): which failures are tried again, how long to wait
between tries, and when to give up. The adapters say which of their errors are which (``aws``, ``kube``);
this module says what is done about each.

Two kinds of failure are worth another try, and they are waited out differently:

- throttling: the API's request budget is spent for now (Auto Scaling's ``Throttling``, EC2's
  ``RequestLimitExceeded``, the API server's 429). The budget is shared (Auto Scaling's with
  cluster-autoscaler and every other client of the account) and refills over seconds; asking sooner
  spends it for everyone. Each wait is drawn at random up to a bound that doubles to
  ``THROTTLED_MAX_WAIT`` (full jitter: clients throttled together do not come back together), and the
  call is tried again for as long as ``THROTTLED_PATIENCE`` in all. Throttling is never fatal before
  that: a rollout stopped half-way, with nodes fenced and the group surged, costs more than one that
  waits;
- transient failures: a 5xx, a dropped or timed-out connection. Tried ``TRANSIENT_ATTEMPTS`` times in
  all, waiting 0.5 s doubling: a server still failing after that is not answering the next second either,
  and the error (with its remedy) is the better answer.

Any other error is an answer: raised at once, as is the last error once a policy gives up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import RetryCallState, retry, retry_if_exception, wait_exponential, wait_random_exponential

Classifier = Callable[[BaseException], bool]
P = ParamSpec("P")
R = TypeVar("R")

TRANSIENT_ATTEMPTS = 5
_TRANSIENT_WAIT = wait_exponential(multiplier=0.5, max=8)  # 0.5, 1, 2, 4 s
THROTTLED_MAX_WAIT = 20.0
_THROTTLED_WAIT = wait_random_exponential(multiplier=0.5, max=THROTTLED_MAX_WAIT)
# Longer than a shared budget stays spent unless something is hammering it, and shorter than the
# rollout's own timeouts (--join-timeout and --drain-timeout, 15 minutes by default).
THROTTLED_PATIENCE = 600.0


def never(_error: BaseException) -> bool:
    return False


def retrying(
    *, throttled: Classifier = never, transient: Classifier = never, patience: float = THROTTLED_PATIENCE
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The retry policy for requests whose errors ``throttled`` and ``transient`` classify, as a
    decorator: ``retrying(...)(request)()`` makes the request, retried as this module says. ``patience``:
    how long throttling is waited out, in all, before its error is raised."""

    def is_throttled(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        return error is not None and throttled(error)

    def wait(state: RetryCallState) -> float:
        return _THROTTLED_WAIT(state) if is_throttled(state) else _TRANSIENT_WAIT(state)

    def stop(state: RetryCallState) -> bool:
        if is_throttled(state):  # the wait just drawn would end past the patience: give up now
            return (state.seconds_since_start or 0.0) + state.upcoming_sleep >= patience
        return state.attempt_number >= TRANSIENT_ATTEMPTS

    policy: Callable[[Callable[P, R]], Callable[P, R]] = retry(
        retry=retry_if_exception(lambda error: throttled(error) or transient(error)),
        wait=wait,
        stop=stop,
        reraise=True,
    )
    return policy
