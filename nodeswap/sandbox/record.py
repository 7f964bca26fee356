"""Observation: every request the sandbox served, as the basis of later checks.

The record answers questions such as "did a read-only command make a mutating call?", "does the IAM
policy cover exactly what was called?" and "how many API calls per replaced node?". Callers are told
apart by their User-Agent. The sandbox's own seeding is not recorded.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

READ_ONLY_PREFIXES = ("Describe", "List", "Get")


def is_mutating(operation: str) -> bool:
    return not operation.startswith(READ_ONLY_PREFIXES)


@dataclass(frozen=True)
class RequestEntry:
    seq: int
    api: str  # "aws" or "kube"
    service: str
    operation: str
    mutating: bool
    target: dict[str, list[str]]
    status: int
    error: str | None
    fault: str | None  # the injected fault, when the sandbox answered with one
    time: str
    duration_ms: float
    user_agent: str
    # Kubernetes requests: what the verb in ``operation`` acted on.
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None


@dataclass
class Record:
    enabled: bool = False
    _entries: list[RequestEntry] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **fields: Any) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._entries.append(
                RequestEntry(seq=next(self._seq), time=datetime.now(UTC).isoformat(), **fields)
            )

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(entry) for entry in self._entries]
