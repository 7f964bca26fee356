"""The options that name groups and reach the two APIs, shared by every command that takes them."""

from __future__ import annotations

from typing import Annotated

import typer

Asg = Annotated[list[str] | None, typer.Option("--asg", help="Auto Scaling group (repeatable).")]
AsgTag = Annotated[str | None, typer.Option("--asg-tag", help="Select groups by tag KEY=VALUE.")]
Region = Annotated[str | None, typer.Option(envvar="AWS_REGION", help="AWS region.")]
Profile = Annotated[str | None, typer.Option(envvar="AWS_PROFILE", help="AWS profile.")]
Kubeconfig = Annotated[str | None, typer.Option(envvar="KUBECONFIG", help="kubeconfig file.")]
Context = Annotated[str | None, typer.Option(help="kubeconfig context.")]
Output = Annotated[str, typer.Option(help="text or json.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
