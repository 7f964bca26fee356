"""The options that name groups and reach the two APIs, shared by every command that takes them, and the
checks of option values that more than one command takes."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Annotated, Any, Literal

import typer

from nodeswap import values
from nodeswap.errors import Declined, UsageError

Asg = Annotated[
    list[str] | None, typer.Option("--asg", metavar="NAME", help="Auto Scaling group (repeatable).")
]
AsgTag = Annotated[
    str | None, typer.Option("--asg-tag", metavar="KEY=VALUE", help="Select groups by tag KEY=VALUE.")
]
Region = Annotated[str | None, typer.Option(envvar="AWS_REGION", metavar="REGION", help="AWS region.")]
Profile = Annotated[str | None, typer.Option(envvar="AWS_PROFILE", metavar="NAME", help="AWS profile.")]
Kubeconfig = Annotated[str | None, typer.Option(envvar="KUBECONFIG", metavar="FILE", help="kubeconfig file.")]
Context = Annotated[str | None, typer.Option(metavar="NAME", help="kubeconfig context.")]
Output = Annotated[str, typer.Option(metavar="text|json", help="text or json.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def duration_option(text: str) -> Any:
    """An option that takes a duration (90s, 15m, 1h30m, 7d), with ``text`` as its help."""
    return typer.Option(metavar="DURATION", help=text)


Format = Literal["text", "json"]


def duration(text: str, option: str) -> timedelta:
    """kubectl-style durations: 90s, 15m, 1h30m, 7d."""
    try:
        return values.duration(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {text!r} is {exc}", f"pass it like {option} 1h30m") from exc


def surge(text: str) -> int | str:
    try:
        return values.surge(text)
    except ValueError as exc:
        raise UsageError(f"--surge: {text!r} is {exc}", "pass it like --surge 3 or --surge 25%") from exc


def confirm(question: str) -> None:
    """Ask on stderr (stdout is the command's output, JSON with --output json) and read the answer from
    standard input: Declined for no. With no answer to read (standard input closed or at its end: no
    terminal), a UsageError saying to pass --yes."""
    while True:
        typer.echo(f"{question} [y/N]: ", nl=False, err=True)
        line = sys.stdin.readline() if sys.stdin is not None else ""
        if not line:
            typer.echo(err=True)
            raise UsageError(
                "no terminal to confirm on: standard input is closed, or ended without an answer",
                "pass --yes to go ahead without being asked",
            )
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return
        if answer in ("", "n", "no"):
            raise Declined()


def checked_output(text: str) -> Format:
    if text not in ("text", "json"):
        raise UsageError(f"--output: {text!r} is not text or json", "pass --output text or --output json")
    return "json" if text == "json" else "text"
