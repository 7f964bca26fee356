"""`nodeswap plan`'s report: each group's plan under the keys the README documents (``--output json``),
and as tables for a person, blockers first."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from nodeswap.plan import Action, GroupPlan, age, surge_change
from nodeswap.record import Record

INSTANCE_ROWS = 20  # a large group's instances are listed in the JSON; the text stays scannable


def as_dict(plan: GroupPlan, record: Record | None) -> dict[str, Any]:
    """One group's plan with the keys the README documents; they stay stable for pipelines. ``record``:
    the group's interrupted rollout, which a `replace` with these options would continue."""
    group, now = plan.group, datetime.now(UTC)
    counts = {action.value: 0 for action in Action}
    for decision in plan.decisions:
        counts[decision.action.value] += 1
    return {
        "group": group.name,
        "blockers": [b.as_dict() for b in plan.blockers],
        "interrupted_rollout": {
            "run": record.run,
            "phase": record.phase,
            "started": record.started.isoformat(),
            "options": record.selection.flags(),
            "continue_command": record.command(),
            "abort_command": f"nodeswap abort --asg {group.name}",
        }
        if record
        else None,
        "instances": [
            {
                "instance": i.id,
                "node": node.name if (node := plan.nodes.get(i.id)) else None,
                "zone": i.zone,
                "instance_type": i.instance_type,
                "launch": i.launch.describe() if i.launch else None,
                "image": i.image_id,
                "launched_at": i.launched_at.isoformat() if i.launched_at else None,
                "age_seconds": round((now - i.launched_at).total_seconds()) if i.launched_at else None,
                "reason": plan.reasons[i.id],
            }
            for i in plan.outdated
        ],
        "capacity": {
            "desired": group.desired,
            "desired_before": plan.desired_before,
            "max_size": group.max_size,
            "surge": plan.surge,
            "max_size_needed": plan.max_size_needed,
            "raises_max_size": plan.max_size_needed > group.max_size,
        },
        "waves": [list(wave) for wave in plan.waves],
        "pods": counts,
        "fit": plan.fit.as_dict() if plan.fit else None,
        "warnings": [w.as_dict() for w in plan.warnings],
        "estimate": plan.estimate.as_dict() if plan.estimate else None,
    }


def print_report(report: dict[str, Any]) -> None:
    """Tables, blockers first; colours only on a terminal."""
    # Piped (a CI log, grep), a line of text stays one line; the tables are laid out at 140 columns.
    piped = not sys.stdout.isatty()
    console = Console(highlight=False, width=140 if piped else None, soft_wrap=piped)
    for group in report["groups"]:
        name, capacity = group["group"], group["capacity"]
        if interrupted := group["interrupted_rollout"]:
            console.print(
                f"[bold yellow]{name}[/]: a rollout is interrupted (phase {interrupted['phase']}, started "
                f"{interrupted['started']}); continue: {interrupted['continue_command']}; undo: "
                f"{interrupted['abort_command']}",
                markup=True,
            )
        if not group["instances"] and not group["blockers"]:
            console.print(f"[bold]{name}[/]: nothing to replace, every instance is up to date")
            continue
        raise_note = f", MaxSize {capacity['max_size']} -> {capacity['max_size_needed']}"
        console.print(
            f"[bold]{name}[/]: replace {len(group['instances'])} instances; surge "
            f"{surge_change(capacity['desired_before'], capacity['desired'], capacity['surge'])}"
            f"{raise_note if capacity['raises_max_size'] else ''}; pods: {group['pods']['evict']} to evict, "
            f"{group['pods']['skip']} left with their node, {group['pods']['block']} blocked"
        )
        _findings(console, "Blockers", "red", group["blockers"])
        _instances(console, group)
        _fit(console, group["fit"])
        _findings(console, "Warnings", "yellow", group["warnings"])
        _estimate(console, group["estimate"])
    if report["blocked"]:
        console.print("[bold red]blocked[/]: `replace` would refuse to start; fix the blockers above")
    else:
        console.print("[bold green]ready[/]: `replace` with the same options may start")


def _findings(console: Console, title: str, colour: str, findings: list[dict[str, str]]) -> None:
    if not findings:
        return
    table = Table(title=f"{title} ({len(findings)})", title_style=f"bold {colour}", title_justify="left")
    for column in ("check", "object", "cause", "fix"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        table.add_row(finding["check"], finding["subject"], finding["cause"], finding["remedy"])
    console.print(table)


def _instances(console: Console, group: dict[str, Any]) -> None:
    rows = group["instances"]
    if not rows:
        return
    # One reason for all (a new template version, --all) is said once, in the title.
    reasons = {row["reason"] for row in rows}
    title = f"Instances to replace: {reasons.pop()}" if len(reasons) == 1 else "Instances to replace"
    columns = ["wave", "instance", "node", "zone", "type", "age", *(["reason"] if reasons else [])]
    table = Table(title=title, title_style="bold", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    wave_of = {i: n + 1 for n, wave in enumerate(group["waves"]) for i in wave}
    ordered = sorted(rows, key=lambda row: (wave_of.get(row["instance"], 0), row["instance"]))
    if len(ordered) > INSTANCE_ROWS:
        table.caption = f"... and {len(ordered) - INSTANCE_ROWS} more (--output json lists every one)"
    for row in ordered[:INSTANCE_ROWS]:
        seconds = row["age_seconds"]
        cells = [
            str(wave_of.get(row["instance"], "")),
            row["instance"],
            row["node"] or "-",
            row["zone"],
            row["instance_type"] or "-",
            age(timedelta(seconds=seconds)) if seconds is not None else "-",
            row["reason"],
        ]
        table.add_row(*cells[: len(columns)])
    console.print(table)


def _fit(console: Console, fit: dict[str, Any] | None) -> None:
    if fit is None:
        return
    if not fit["checked"]:
        console.print("[yellow]Fit not checked[/]: the instance type the group launches is unknown")
        return
    verdict = "[green]fits[/]" if fit["fits"] else "[red]does not fit[/]"
    table = Table(title=f"Will it fit: {verdict}", title_style="bold", title_justify="left")
    for column in ("", "CPU", "memory", "pods"):
        table.add_column(column, justify="right" if column else "left")
    rows = (
        (f"new {fit['instance_type']} node ({fit['allocatable_source']})", fit["allocatable_per_node"]),
        ("DaemonSets on each node", fit["daemonsets_per_node"]),
        ("pods to move (largest wave)", fit["needed"]),
        ("room: that wave's new nodes + free room elsewhere", fit["room"]),
    )
    for label, amounts in rows:
        table.add_row(
            label, f"{amounts['cpu']:.2f}", f"{amounts['memory_bytes'] / 2**30:.1f} GiB", str(amounts["pods"])
        )
    console.print(table)
    for pod in fit["unplaceable_pods"]:
        console.print(f"  [red]{pod['pod']}[/]: {pod['reason']}")


def _estimate(console: Console, estimate: dict[str, Any] | None) -> None:
    if estimate is None:
        return
    console.print(
        f"[bold]Estimate[/]: about {estimate['seconds']:.0f} s ({estimate['waves']} wave(s): "
        f"{estimate['join_seconds_per_wave']:.0f} s to join each, "
        f"{estimate['drain_seconds']:.0f} s of drain); critical path: {estimate['critical_path']}"
    )
    for assumption in estimate["assumptions"]:
        console.print(f"  assumes {assumption}")
