"""`nodeswap plan`: what `replace` would do with the same options, and what would stop or slow it,
without changing anything. The analysis is replace's own preflight (``rollout.plan_groups``)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import typer

from nodeswap.cli.replace import replace
from nodeswap.errors import EXIT_REFUSED

# `plan` takes replace's options, so the same command line can be planned, then run; these two only
# concern running it.
_RUN_ONLY = ("yes", "dry_run")


def plan(ctx: typer.Context, **options: Any) -> None:
    """Show what `replace` would do with these options, and what would stop or slow it. Changes nothing.

    Exit codes: 0 the rollout may start (warnings at most); 3 a blocker would refuse it."""
    # Here, not at the top: --help and --version never load the SDKs (see nodeswap.cli.session).
    from nodeswap.cli.plan_report import as_dict, print_report  # noqa: PLC0415
    from nodeswap.cli.session import prepare  # noqa: PLC0415
    from nodeswap.rollout import plan_groups, refusals  # noqa: PLC0415

    prepared = prepare(ctx)
    rollouts, plans = plan_groups(
        prepared.aws, prepared.kube, prepared.groups, prepared.settings_for, emit=lambda event: None
    )
    report = {
        "blocked": bool(refusals(plans)),
        "groups": [as_dict(p, rollouts[p.group.name].record) for p in plans],
    }
    if prepared.output == "json":
        print(json.dumps(report, indent=2), flush=True)
    else:
        print_report(report)
    if report["blocked"]:
        raise typer.Exit(EXIT_REFUSED)


_signature = inspect.signature(replace, eval_str=True)
plan.__signature__ = _signature.replace(  # type: ignore[attr-defined]
    parameters=[p for name, p in _signature.parameters.items() if name not in _RUN_ONLY]
)
