"""The lock's renewals, with the Kubernetes adapter faked: a renewal the API server fails once does not
lose the lock (the next one succeeds in time), renewals that keep failing do once the lock is overdue,
and another holder loses it at once."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from nodeswap.errors import OperationError
from nodeswap.lease import Lock

DURATION = timedelta(seconds=0.6)  # renewed every 0.2 s


class Leases:
    """A Kubernetes adapter whose lease is free, and whose renewals answer from a script."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)

    def lease(self, _name: str) -> None:
        return None

    def write_lease(self, lease: Any, *, create: bool) -> Any:
        return lease

    def renew_lease(self, _name: str, _holder: str) -> bool:
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer

    def release_lease(self, _name: str, _holder: str) -> None:
        pass


def held(kube: Leases, seconds: float) -> None:
    """Hold the lock for ``seconds``, checking it as a run does between steps."""
    lock: Any = Lock(kube, "workers", "run-1", DURATION, lambda _message: None)
    with lock:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            lock.check()
            time.sleep(0.02)


def test_a_renewal_the_api_server_fails_once_does_not_lose_the_lock() -> None:
    held(Leases(OperationError("500 from the API server")), DURATION.total_seconds() * 3)


def test_renewals_that_keep_failing_lose_the_lock_once_it_is_overdue() -> None:
    failing = Leases(*[OperationError("the API server is not answering")] * 100)
    started = time.monotonic()
    with pytest.raises(OperationError, match="lost the lock of group workers"):
        held(failing, DURATION.total_seconds() * 10)
    assert time.monotonic() - started >= DURATION.total_seconds()


def test_another_holder_loses_the_lock_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(OperationError, match="lost the lock of group workers"):
        held(Leases(False), DURATION.total_seconds() * 10)
    assert time.monotonic() - started < DURATION.total_seconds()  # at the first renewal, not overdue
