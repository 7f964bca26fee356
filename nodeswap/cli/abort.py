"""`nodeswap abort` (alias `rollback`): undo a group's rollout from whatever point it reached.

Exit codes: 0 undone, or nothing to undo; 1 the undo could not finish (state as reported; run it again);
2 bad usage; 6 the confirmation was answered no; refused while another live run holds the group's lock
(exit 1)."""

from __future__ import annotations

from typing import Annotated

import typer

from nodeswap.cli.options import (
    Asg,
    AsgTag,
    Context,
    Kubeconfig,
    Output,
    Profile,
    Region,
    Yes,
    checked_output,
    confirm,
    duration,
    duration_option,
)


def abort(  # noqa: PLR0917 - a Typer command: its parameters are the command line
    asg: Asg = None,
    asg_tag: AsgTag = None,
    drain_timeout: Annotated[
        str, duration_option("Give up moving pods off the new nodes after this long.")
    ] = "15m",
    lock_duration: Annotated[str, duration_option("How long the group's lock outlives this run.")] = "60s",
    region: Region = None,
    profile: Profile = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    yes: Yes = False,
    output: Output = "text",
) -> None:
    """Undo a group's rollout, from wherever it stopped.

    Un-fences the old nodes, removes the instances it launched (each by id), points the group back at the
    launch template version it used, restores capacity and the processes nodeswap suspended."""
    # Here, not at the top: --help and --version never load the SDKs (see nodeswap.cli.session).
    from nodeswap.cli.output import Renderer  # noqa: PLC0415
    from nodeswap.cli.session import connect  # noqa: PLC0415
    from nodeswap.rollout import GroupRollout  # noqa: PLC0415
    from nodeswap.run import Event, RolloutSettings  # noqa: PLC0415
    from nodeswap.status import group_status  # noqa: PLC0415

    output = checked_output(output)
    settings = RolloutSettings(
        drain_timeout=duration(drain_timeout, "--drain-timeout"),
        lock_duration=duration(lock_duration, "--lock-duration"),
    )
    aws, kube, groups = connect(locals())
    renderer = Renderer(output)
    for group in groups:
        found = group_status(aws, kube, group)
        if found.record is not None and not yes:
            for line in found.lines():
                typer.echo(line, err=True)
            confirm(f"undo the rollout of {group.name}?")
        rollout = GroupRollout(aws, kube, settings, renderer.event)
        with rollout.lock(group.name) as lock:
            if not rollout.abort(aws.groups([group.name])[0], lock):
                renderer.event(
                    Event(group.name, "abort", "no rollout is recorded on the group: nothing to undo")
                )
