"""`nodeswap demo`: a full replacement rehearsed in the sandbox, start to finish, in seconds."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from nodeswap.cli.options import Output
from nodeswap.errors import OperationError


def demo(
    scenario: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Scenario to rehearse in (default: the sandbox's, as in configs/sandbox.yaml).",
        ),
    ] = None,
    output: Output = "text",
) -> None:
    """Rehearse a full replacement in a local sandbox, start to finish.

    Starts the sandbox, bakes a new AMI into the group's launch template, replaces every node, and shows
    what the sandbox observed (PDB violations, lost pods). Needs the sandbox extra."""
    try:
        from nodeswap.sandbox.scenario import load_scenario  # noqa: PLC0415 - the sandbox extra is optional
        from nodeswap.sandbox.server import Sandbox  # noqa: PLC0415
    except ImportError as exc:
        raise OperationError(f"the sandbox is not installed ({exc})", "pip install -e '.[sandbox]'") from exc
    from nodeswap.aws import Aws  # noqa: PLC0415
    from nodeswap.cli.output import Renderer  # noqa: PLC0415
    from nodeswap.kube import Kube  # noqa: PLC0415
    from nodeswap.plan import Settings  # noqa: PLC0415
    from nodeswap.rollout import replace_groups  # noqa: PLC0415
    from nodeswap.run import RolloutSettings  # noqa: PLC0415

    renderer = Renderer("json" if output == "json" else "text")
    sandbox = Sandbox(load_scenario(scenario))
    typer.echo("starting the sandbox ...")
    sandbox.start()
    try:
        os.environ.update(sandbox.environment())
        os.environ.pop("AWS_PROFILE", None)
        with tempfile.TemporaryDirectory() as directory:
            kubeconfig = Path(directory) / "kubeconfig"
            kubeconfig.write_text(sandbox.kubeconfig())
            aws, kube = Aws(region=sandbox.scenario.region), Kube(kubeconfig=str(kubeconfig))
            world = sandbox.world
            assert world is not None
            new_image = world.images["new"]
            typer.echo(f"the sandbox's group runs AMI {world.images['old']}; rolling out {new_image}\n")
            settings = RolloutSettings(plan=Settings(image=new_image))
            groups = aws.groups([g.name for g in world.groups], full=True)
            summaries = replace_groups(aws, kube, groups, lambda _name: settings, renderer.event)
            renderer.summary([s.as_dict() for s in summaries])
        report = sandbox.report()
        violations, lost = len(report["pdb_violations"]), len(report["lost_pods"])
        typer.echo(
            f"\nsandbox report: {violations} PDB violations, {lost} lost pods, "
            f"{len(report['requests'])} API requests served"
        )
        if report["pdb_violations"] or report["lost_pods"]:
            raise OperationError(
                "the rehearsal lost availability (see the report above)", "file a bug with the output"
            )
    finally:
        sandbox.stop()
