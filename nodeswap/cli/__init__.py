"""The `nodeswap` command line. Commands are thin; errors are reported in one place.

Exit codes: 0 success or nothing to do; 1 failure (the state is as reported: `nodeswap status` shows it);
2 bad usage or configuration; 3 refused by preflight; 4 a wave failed and was rolled back; 5 (`status`)
a rollout is interrupted; 6 the confirmation was answered no (nothing changed); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from nodeswap import __version__
from nodeswap.cli.abort import abort
from nodeswap.cli.demo import demo
from nodeswap.cli.plan import plan
from nodeswap.cli.replace import replace
from nodeswap.cli.sandbox import sandbox_app
from nodeswap.cli.status import status
from nodeswap.errors import NodeswapError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class _Group(TyperGroup):
    """Reports nodeswap's errors as a message and a remedy on stderr, never a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except NodeswapError as exc:
            typer.echo(f"{exc.label}: {exc.message}", err=True)
            if exc.remedy:
                typer.echo(f"  fix: {exc.remedy}", err=True)
            raise typer.Exit(exc.exit_code) from exc
        except KeyboardInterrupt as exc:
            # Ctrl-C: the steps taken are recorded in the systems themselves (the rollout record, taints).
            typer.echo(
                "interrupted: nothing is lost; every step taken is recorded on the group and in the cluster",
                err=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from exc


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # credentials live in locals
    # Help as click writes it, one option a line with its help beside or below: Rich's panel splits
    # 80 columns into six, and cut the option names (--ignore-daemons…) to fit.
    rich_markup_mode=None,
    help="Replace the Kubernetes worker nodes behind an AWS Auto Scaling group without downtime.",
)
app.add_typer(sandbox_app, name="sandbox")
# Short help that fits the command list of `nodeswap --help` at 80 columns (click cuts longer ones).
app.command(short_help="Show what replace would do, and what would stop or slow it.")(plan)
app.command(short_help="Replace a group's outdated nodes without dropping any PDB.")(replace)
app.command(short_help="Show each group's rollout: running, interrupted, or none.")(status)
app.command()(abort)
app.command("rollback", help="The same as abort.")(abort)
app.command()(demo)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nodeswap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Replace the Kubernetes worker nodes behind an AWS Auto Scaling group without downtime."""


def main() -> None:
    app()
