"""`nodeswap replace`: the zero-downtime rollout of one or more Auto Scaling groups."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nodeswap.cli.options import (
    Asg,
    AsgTag,
    Context,
    Kubeconfig,
    Profile,
    Region,
    Yes,
    confirm,
    duration_option,
)

if TYPE_CHECKING:
    from nodeswap.plan import GroupPlan


def replace(  # noqa: PLR0917 - a Typer command: its parameters are the command line
    ctx: typer.Context,
    asg: Asg = None,
    asg_tag: AsgTag = None,
    replace_all: Annotated[
        bool, typer.Option("--all", help="Replace every instance, not only outdated ones.")
    ] = False,
    older_than: Annotated[str | None, duration_option("Replace instances older than this (e.g. 7d).")] = None,
    ami: Annotated[
        str | None,
        typer.Option(
            metavar="AMI_ID",
            help="The AMI to roll out: instances running another are outdated (replace points the "
            "group at a new launch template version with it).",
        ),
    ] = None,
    ignore_daemonsets: Annotated[bool, typer.Option(help="Leave DaemonSet pods in place.")] = True,
    delete_emptydir_data: Annotated[
        bool, typer.Option(help="Evict pods using emptyDir (their data is lost).")
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Evict pods that have no controller (they are not recreated).")
    ] = False,
    grace_period: Annotated[
        int | None,
        typer.Option(metavar="SECONDS", help="Override the pods' termination grace period.", min=0),
    ] = None,
    drain_timeout: Annotated[str, duration_option("Give up draining after this long.")] = "15m",
    join_timeout: Annotated[str, duration_option("Give up waiting for new nodes after this long.")] = "15m",
    lifecycle_hook: Annotated[
        str | None, typer.Option(metavar="NAME", help="Termination hook to complete (default: discovered).")
    ] = None,
    launch_hook: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Launch hook nodeswap completes once a new node is Ready."),
    ] = None,
    lock_duration: Annotated[
        str, duration_option("How long the group's lock outlives a run that stopped renewing it.")
    ] = "60s",
    no_raise_max: Annotated[
        bool, typer.Option("--no-raise-max", help="Refuse instead of raising MaxSize.")
    ] = False,
    surge: Annotated[
        str | None, typer.Option(metavar="N|P%", help="Replace in waves of N instances or P% of desired.")
    ] = None,
    max_unavailable: Annotated[
        int | None, typer.Option(metavar="N", help="Drain at most N old nodes at once.", min=1)
    ] = None,
    canary: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Replace N instances first; go on only once they and their pods are healthy.",
            min=1,
        ),
    ] = None,
    on_failure: Annotated[
        str,
        typer.Option(
            metavar="rollback|keep",
            help="When a wave fails: rollback (undo it, as abort does) or keep (leave it).",
        ),
    ] = "rollback",
    region: Region = None,
    profile: Profile = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    config: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="YAML file of these options, with per-group overrides."),
    ] = None,
    yes: Yes = False,
    dry_run: Annotated[bool, typer.Option(help="Plan and check, change nothing.")] = False,
    output: Annotated[
        str, typer.Option(metavar="text|json", help="text or json (one event per line).")
    ] = "text",
) -> None:
    """Replace the outdated worker nodes of Auto Scaling groups without dropping any PodDisruptionBudget.

    Asks to confirm once the plan is printed, unless --yes; answered no, it exits 6 and changes nothing."""
    # Here, not at the top: --help and --version never load the SDKs (see nodeswap.cli.session).
    from nodeswap.cli.output import Renderer  # noqa: PLC0415
    from nodeswap.cli.session import prepare  # noqa: PLC0415
    from nodeswap.rollout import replace_groups  # noqa: PLC0415
    from nodeswap.status import group_status  # noqa: PLC0415

    prepared = prepare(ctx)

    def confirmed(plans: list[GroupPlan]) -> None:
        if not yes:
            confirm(f"replace {sum(len(p.outdated) for p in plans)} instances?")

    renderer = Renderer(prepared.output)
    try:
        summaries = replace_groups(
            prepared.aws,
            prepared.kube,
            prepared.groups,
            prepared.settings_for,
            renderer.event,
            confirm=confirmed,
        )
    except KeyboardInterrupt:
        # The lock is released by now; say where each group stands and both ways on.
        for group in prepared.aws.groups([g.name for g in prepared.groups]):
            for line in group_status(prepared.aws, prepared.kube, group).lines():
                typer.echo(line, err=True)
        raise
    renderer.summary([s.as_dict() for s in summaries])
