"""`nodeswap status`: whether each group has a rollout running or interrupted, what it changed, and the
commands that continue or undo it. Changes nothing.

Exit codes: 0 every group is idle or running; 5 a rollout is interrupted (continue or abort it)."""

from __future__ import annotations

import json

import typer

from nodeswap.cli.options import Asg, AsgTag, Context, Kubeconfig, Output, Profile, Region, checked_output
from nodeswap.errors import EXIT_INTERRUPTED_ROLLOUT


def status(  # noqa: PLR0917 - a Typer command: its parameters are the command line
    asg: Asg = None,
    asg_tag: AsgTag = None,
    region: Region = None,
    profile: Profile = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    output: Output = "text",
) -> None:
    """Show whether a rollout is running or interrupted on each group, and how to continue or undo it.

    Changes nothing. Exit codes: 0 every group is idle or its rollout running; 5 a rollout is interrupted."""
    # Here, not at the top: --help and --version never load the SDKs (see nodeswap.cli.session).
    from nodeswap.cli.session import connect  # noqa: PLC0415
    from nodeswap.status import group_status  # noqa: PLC0415

    output = checked_output(output)
    aws, kube, groups = connect(locals())
    statuses = [group_status(aws, kube, group) for group in groups]
    if output == "json":
        print(json.dumps({"groups": [s.as_dict() for s in statuses]}, indent=2))
    else:
        for line in (line for s in statuses for line in s.lines()):
            print(line)
    if any(s.state == "interrupted" for s in statuses):
        raise typer.Exit(EXIT_INTERRUPTED_ROLLOUT)
