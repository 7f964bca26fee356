"""The sandbox's time: a clock that tests can fast-forward, and timers that fire on it.

Simulated durations (boot, shutdown, lifecycle-hook heartbeat timeouts) are timers on one scheduler
thread that sleeps until the next deadline; nothing polls. Advancing the clock (for a 3600-second
heartbeat timeout in a test) wakes the scheduler, which fires every timer that is now due.
Timers fire while holding the sandbox's lock, the same lock every API request holds.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


class Clock:
    """Monotonic seconds plus an offset that only grows."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self._offset

    def wall(self) -> datetime:
        """The wall-clock time of the simulated world: real UTC time moved forward with the clock."""
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Runs actions at clock times on one thread, under ``lock``."""

    def __init__(self, clock: Clock, lock: threading.RLock) -> None:
        self.clock = clock
        self._lock = lock
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join()

    def call_later(self, delay: float, action: Callable[[], None]) -> Timer:
        timer = Timer(self.clock.now() + max(delay, 0.0), next(self._seq), action)
        with self._wake:
            heapq.heappush(self._heap, timer)
            self._wake.notify()
        return timer

    def advance(self, seconds: float) -> None:
        """Move the clock forward; the scheduler thread then fires every timer now due."""
        with self._wake:
            self.clock.advance(seconds)
            self._wake.notify()

    def fast_forward(self, seconds: float) -> None:
        """Move the clock forward and fire the due timers in this thread before returning."""
        with self._lock:
            self.clock.advance(seconds)
            while (timer := self._pop_due()) is not None:
                self._fire(timer)

    def settle(self, horizon: float) -> None:
        """Run the simulation in virtual time, timer after timer, until nothing is due within
        ``horizon`` seconds: the world at rest, without waiting for it."""
        with self._lock:
            while True:
                with self._wake:
                    # Cancelled timers at the top of the heap are dropped: the next live one is the top.
                    while self._heap and self._heap[0].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        return
                    step = self._heap[0].when - self.clock.now()
                if step > horizon:
                    return
                self.fast_forward(max(step, 0.0))

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and not self._due():
                    timeout = self._heap[0].when - self.clock.now() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
            with self._lock:
                timer = self._pop_due()
                if timer is not None:
                    self._fire(timer)

    def _pop_due(self) -> Timer | None:
        with self._wake:
            return heapq.heappop(self._heap) if self._due() else None

    def _due(self) -> bool:
        return bool(self._heap) and self._heap[0].when <= self.clock.now()

    @staticmethod
    def _fire(timer: Timer) -> None:
        if timer.cancelled:
            return
        try:
            timer.action()
        except Exception:  # one broken timer must not stop the simulated world
            log.exception("sandbox timer failed")
