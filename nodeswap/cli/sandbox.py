"""`nodeswap sandbox`: a local AWS to try or rehearse a rollout without a cloud."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

# The sandbox's modules load in the commands' bodies, for a command that runs: not for --help.

sandbox_app = typer.Typer(no_args_is_help=True, help="Run a local AWS and Kubernetes sandbox.")

DirOption = Annotated[
    Path,
    typer.Option(
        "--dir", envvar="NODESWAP_SANDBOX_DIR", metavar="DIR", help="Directory for env.sh, state and log."
    ),
]
DEFAULT_DIR = Path(".nodeswap-sandbox")


@sandbox_app.command()
def up(
    scenario: Annotated[
        Path | None,
        typer.Option(
            "--scenario",
            metavar="FILE",
            help="Scenario YAML (default: the built-in one, as in configs/sandbox.yaml).",
        ),
    ] = None,
    directory: DirOption = DEFAULT_DIR,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background; stop with `down`.")
    ] = False,
    enforce_iam: Annotated[
        bool,
        typer.Option(
            "--enforce-iam",
            help="Check requests signed with IAM users' or roles' keys against their policies "
            "(the scenario's iam.enforce); the dummy keys of env.sh act as the account's root.",
        ),
    ] = False,
) -> None:
    """Start the sandbox and write DIR/env.sh. Runs until Ctrl-C unless --detach."""
    from nodeswap.sandbox import process  # noqa: PLC0415
    from nodeswap.sandbox.scenario import load_scenario  # noqa: PLC0415

    load_scenario(scenario)  # a malformed scenario is reported before anything starts
    env_file = directory / process.ENV_FILE
    if detach:
        state = process.start_detached(scenario, directory, enforce_iam=enforce_iam)
        _print_ready(state, directory, env_file, detached=True)
        return
    process.serve(
        scenario,
        directory,
        lambda state: _print_ready(state, directory, env_file, detached=False),
        enforce_iam=enforce_iam,
    )
    typer.echo("sandbox stopped")


@sandbox_app.command()
def down(directory: DirOption = DEFAULT_DIR) -> None:
    """Stop the detached sandbox running from DIR."""
    from nodeswap.sandbox import process  # noqa: PLC0415

    if process.stop_detached(directory):
        typer.echo(f"sandbox in {directory} stopped")
    else:
        typer.echo(f"no sandbox was running from {directory}")


@sandbox_app.command(short_help="Print what the sandbox observed, as JSON.")
def report(directory: DirOption = DEFAULT_DIR) -> None:
    """Print what the sandbox observed, as JSON: every request served, PDB violations, lost pods,
    workloads below strength."""
    from nodeswap.sandbox import process  # noqa: PLC0415

    typer.echo(json.dumps(process.fetch(directory, "report"), indent=2))


def _print_ready(state: dict[str, Any], directory: Path, env_file: Path, detached: bool) -> None:
    world = state["world"]
    names = [group["name"] for group in world["groups"]]
    typer.echo(
        f"sandbox is up: AWS at {state['aws_endpoint']} (region {state['region']}), "
        f"groups: {', '.join(names)}"
    )
    typer.echo(f"               Kubernetes at {state['kube_endpoint']}")
    images, image_names = world["images"], state["scenario"]["images"]
    typer.echo(f"               AMI in use:      {images['old']} ({image_names['old']})")
    typer.echo(f"               AMI to roll out: {images['new']} ({image_names['new']})")
    if state["scenario"]["iam"]["enforce"]:
        typer.echo(
            "  IAM is enforced: IAM users' and roles' keys are checked; env.sh's keys act as the root user"
        )
    # The rehearsal, ready to paste: every command here runs as printed once env.sh is sourced.
    groups = " ".join(f"--asg {shlex.quote(name)}" for name in names)
    there = shlex.quote(str(directory))
    steps = [
        (f"source {shlex.quote(str(env_file))}", "point boto3, the AWS CLI, kubectl, nodeswap at it"),
        (f"nodeswap plan {groups} --ami {images['new']}", "what the replacement would do; changes nothing"),
        (f"nodeswap replace {groups} --ami {images['new']}", "replace every node with the new AMI"),
        (f"nodeswap sandbox report --dir {there}", "what the sandbox saw: PDB violations, lost pods"),
    ]
    if detached:
        steps.append((f"nodeswap sandbox down --dir {there}", "stop the sandbox"))
    width = max(len(command) for command, _ in steps)
    typer.echo("next:")
    for command, why in steps:
        typer.echo(f"  {command.ljust(width)}  # {why}")
    if not detached:
        typer.echo("  Ctrl-C stops it")
