"""The group's lock: a ``coordination.k8s.io/v1`` Lease in kube-system, renewed while a run holds it.

Expiry follows client-go's leader election: a lease held by another is taken over only once this run
has seen it unchanged for the lease's whole duration, timed on this run's own clock; the holder's
timestamps are never compared with this machine's clock, as the two may disagree. A holder on this host
whose process is gone is taken over at once; one whose nodeswap still runs refuses the new run at once.
The lock is lost once another run holds it, or once no renewal has succeeded for the lock's duration (a
renewal the API server fails is tried again at the next turn, as client-go retries until its renew
deadline): the run then stops before its next step rather than carry on unlocked.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from kubernetes import client

from nodeswap.errors import OperationError
from nodeswap.kube import LOCK_NAMESPACE, Kube, object_name

# Renew a few times per duration, so one slow answer does not lose the lock.
RENEWALS_PER_DURATION = 3


def lock_name(group: str) -> str:
    return object_name("nodeswap", group)


class Lock:
    """Hold the lock of ``group`` for a ``with`` block; ``check()`` raises once it is lost."""

    def __init__(
        self, kube: Kube, group: str, run: str, duration: timedelta, say: Callable[[str], None]
    ) -> None:
        self.kube, self.group, self.duration, self.say = kube, group, duration, say
        self.name = lock_name(group)
        self.holder = f"{socket.gethostname()}/{os.getpid()}/{run}"
        self._lost = threading.Event()
        self._renewed = 0.0  # when the lease was last written, by this process's clock
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, daemon=True, name=f"lock-{group}")
        self.contended = False  # another holder had the lock when this run came for it

    def __enter__(self) -> Lock:
        self._acquire()
        self._renewer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._renewer.join()
        try:
            self.kube.release_lease(self.name, self.holder)
        except OperationError as exc:
            # The work is done or recorded; a lock left behind expires, and a run on this host takes
            # it over at once. Not worth failing a finished run for.
            self.say(f"could not release the lock {self.name} ({exc.message}); it expires unrenewed")

    def check(self) -> None:
        """Raise once the lock is lost: another holder has it, or no renewal has succeeded (the API
        server failing or not answering) for longer than the lock lasts."""
        overdue = time.monotonic() - self._renewed > self.duration.total_seconds()
        if self._lost.is_set() or overdue:
            raise OperationError(
                f"lost the lock of group {self.group} (it could not be renewed, or another run took it "
                "over); stopped before the next step",
                f"check for another nodeswap run (nodeswap status --asg {self.group}); re-run the same "
                "command to continue",
            )

    def _acquire(self) -> None:
        seen: tuple[str, float] | None = None  # the holder's record as first seen, and when
        while True:
            current = self.kube.lease(self.name)
            if current is None:
                if self.kube.write_lease(self._lease(), create=True) is not None:
                    self._renewed = time.monotonic()
                    return
                continue  # created by another run at the same moment: look at it
            spec, version = current.spec, current.metadata.resource_version
            holder, duration = spec.holder_identity or "", float(spec.lease_duration_seconds or 0)
            self.contended |= bool(holder) and holder != self.holder
            if holder and holder != self.holder and not holder_gone(holder):  # an empty holder: free
                # A renewal seen, or the holder a nodeswap still running on this host: it is alive.
                if (seen is not None and seen[0] != version) or holder_running_here(holder):
                    raise OperationError(
                        f"group {self.group} is being worked on by {holder}: its lock {self.name} in "
                        f"{LOCK_NAMESPACE} is being renewed",
                        f"wait for that run to finish (nodeswap status --asg {self.group} shows it)",
                    )
                if seen is None:
                    seen = (version, time.monotonic())
                    self.say(
                        f"the lock is held by {holder}; waiting up to {duration:.0f} s to see whether "
                        "that run is alive"
                    )
                left = seen[1] + duration - time.monotonic()
                if left > 0:
                    self.kube.wait_lease_change(self.name, version, left)
                    continue
            if self.kube.write_lease(self._lease(version), create=False) is None:
                continue  # another run wrote it first: look again
            self._renewed = time.monotonic()
            if holder:
                why = "its process is gone" if holder_gone(holder) else f"not renewed for {duration:.0f} s"
                self.say(f"took over the lock of {holder}: {why}")
            return

    def _lease(self, version: str | None = None) -> client.V1Lease:
        now = datetime.now(UTC)
        return client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, resource_version=version),
            spec=client.V1LeaseSpec(
                holder_identity=self.holder,
                lease_duration_seconds=max(int(self.duration.total_seconds()), 1),
                acquire_time=now,
                renew_time=now,
            ),
        )

    def _renew(self) -> None:
        interval = self.duration.total_seconds() / RENEWALS_PER_DURATION
        while not self._stop.wait(interval):
            started = time.monotonic()
            try:
                renewed = self.kube.renew_lease(self.name, self.holder)
            except OperationError:
                continue  # tried again next turn; check() says the lock is lost once it is overdue
            except Exception:  # a cause not foreseen: the lock can no longer be vouched for
                renewed = False
            if not renewed:
                self._lost.set()
                return
            self._renewed = started


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` was a process on this host that no longer runs."""
    pid = _local_pid(holder)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def holder_running_here(holder: str) -> bool:
    """Whether ``holder`` is a nodeswap process running on this host now (its command line says so,
    lest a process that took over its pid pass for it)."""
    pid = _local_pid(holder)
    try:
        return pid is not None and b"nodeswap" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone, or no /proc here: the lease's renewals will tell
        return False


def _local_pid(holder: str) -> int | None:
    """The pid of ``holder`` when it is another process of this host."""
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return None
    return int(pid)
