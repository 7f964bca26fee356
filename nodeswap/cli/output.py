"""Rendering the engine's events: a progress bar on a terminal, timestamped lines otherwise, one JSON
object per line for machines."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nodeswap.cli.options import Format

if TYPE_CHECKING:
    from nodeswap.run import Event

_COLOURS = {"preflight": "red", "drain": "cyan", "retire": "magenta", "done": "green", "resume": "yellow"}


class Renderer:
    def __init__(self, output: Format) -> None:
        self.output = output
        self.console = Console(highlight=False)
        # Progress bars only where someone watches: a terminal, in text mode.
        self.progress: Progress | None = None
        if output == "text" and sys.stdout.isatty():
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
        self._bars: dict[str, Any] = {}

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
            return
        line = f"{now:%H:%M:%S} {event.group} {event.phase:<8} {event.message}"
        if self.progress is None:
            print(line, flush=True)
            return
        self.console.print(line, style=_COLOURS.get(event.phase), markup=False)
        self._advance(event)

    def _advance(self, event: Event) -> None:
        assert self.progress is not None
        if "evictions" in event.data:
            self.progress.start()
            self._bars[event.group] = self.progress.add_task(
                f"{event.group} pods moved", total=event.data["evictions"]
            )
        elif "pod" in event.data and event.message.startswith("evicted") and event.group in self._bars:
            self.progress.advance(self._bars[event.group])
        elif event.phase == "done":
            self.progress.stop()

    def summary(self, summaries: list[dict[str, Any]]) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.output == "json":
            print(json.dumps({"summary": summaries}), flush=True)
            return
        for summary in summaries:
            if summary["dry_run"]:
                print(f"{summary['group']}: dry run, nothing was changed")
                continue
            if summary["nothing_to_do"]:
                continue
            phases = ", ".join(f"{k} {v:.1f}s" for k, v in summary["phase_seconds"].items())
            print(
                f"{summary['group']}: replaced {summary['nodes_replaced']} nodes, evicted "
                f"{summary['pods_evicted']} pods ({phases})"
            )
            print(
                f"  launches {summary['launch']} ({summary['image'] or 'image unknown'}); MaxSize "
                + (
                    "was raised during the rollout and restored"
                    if summary["max_size_changed"]
                    else "unchanged"
                )
            )
            waits = summary["waited_on_budgets_seconds"]
            for budget in sorted(waits, key=waits.__getitem__, reverse=True):
                pace = " (set the pace)" if budget == summary["paced_by"] else ""
                print(f"  waited {waits[budget]:.1f}s on {budget}{pace}")
        sys.stdout.flush()
