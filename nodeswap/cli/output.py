"""Rendering the engine's events: timestamped lines for people, one JSON object per line for machines."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from nodeswap.rollout import Event

Format = Literal["text", "json"]


class Renderer:
    def __init__(self, output: Format) -> None:
        self.output = output

    def event(self, event: Event) -> None:
        now = datetime.now(UTC)
        if self.output == "json":
            record = {
                "time": now.isoformat(),
                "group": event.group,
                "phase": event.phase,
                "message": event.message,
                **event.data,
            }
            print(json.dumps(record), flush=True)
        else:
            print(f"{now:%H:%M:%S} {event.group} {event.phase:<8} {event.message}", flush=True)

    def summary(self, summaries: list[dict[str, Any]]) -> None:
        if self.output == "json":
            print(json.dumps({"summary": summaries}), flush=True)
            return
        for summary in summaries:
            if summary["nothing_to_do"]:
                continue
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in summary["phase_seconds"].items())
            print(
                f"{summary['group']}: replaced {summary['nodes_replaced']} nodes, evicted "
                f"{summary['pods_evicted']} pods ({phases})"
            )
            for budget, seconds in summary["waited_on_budgets_seconds"].items():
                print(f"  waited {seconds:.1f}s on {budget}")
        sys.stdout.flush()
