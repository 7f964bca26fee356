"""What a command that reaches AWS and Kubernetes starts from: its command line made into clients, groups
and settings, every check on the input done.

The commands import this module in their bodies, never at the top: it loads boto3 and the Kubernetes
client, most of nodeswap's start-up time, which `nodeswap --help`, `--version` and a mistyped option do
without.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer

from nodeswap.aws import Aws
from nodeswap.cli.options import Format, checked_output, duration, surge
from nodeswap.config import ReplaceConfig, load_config
from nodeswap.errors import UsageError
from nodeswap.kube import Kube
from nodeswap.model import Group
from nodeswap.plan import Settings
from nodeswap.run import OnFailure, RolloutSettings


@dataclass(frozen=True)
class Prepared:
    """A command line made into clients, groups and settings; every check on the input is done."""

    aws: Aws
    kube: Kube
    groups: list[Group]
    settings: dict[str, RolloutSettings]  # per group named in --config
    default: RolloutSettings
    output: Format

    def settings_for(self, group: str) -> RolloutSettings:
        return self.settings.get(group, self.default)


def prepare(ctx: typer.Context) -> Prepared:
    """The options of `replace` (and `plan`, which takes the same), merged with --config and checked,
    and the groups they name. Reads only."""
    file = load_config(ctx.params["config"]) if ctx.params["config"] else ReplaceConfig()
    # Flags given on the command line (or by environment) win over the file; the file over defaults.
    given = {
        name for name in ctx.params if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"
    }
    flags = {name: ctx.params[name] for name in given}
    top = {**ctx.params, **file.model_dump(exclude_none=True, exclude={"groups"}), **flags}
    output = checked_output(top["output"])
    dry_run = bool(ctx.params.get("dry_run"))
    groups_settings = {
        name: _settings({**ctx.params, **file.for_group(name), **flags}, dry_run) for name in file.groups
    }
    default_settings = _settings(top, dry_run)
    images = {settings.plan.image for settings in [default_settings, *groups_settings.values()]} - {None}
    aws, kube, groups = connect(top, images=images)
    return Prepared(aws, kube, groups, groups_settings, default_settings, output)


def _settings(options: dict[str, Any], dry_run: bool) -> RolloutSettings:
    """Settings from merged options; every duration is checked here, before anything changes."""
    return RolloutSettings(
        plan=Settings(
            replace_all=options["replace_all"],
            older_than=duration(options["older_than"], "--older-than") if options["older_than"] else None,
            image=options["ami"],
            ignore_daemonsets=options["ignore_daemonsets"],
            delete_emptydir_data=options["delete_emptydir_data"],
            force=options["force"],
            may_raise_max_size=not options["no_raise_max"],
        ),
        drain_timeout=duration(options["drain_timeout"], "--drain-timeout"),
        join_timeout=duration(options["join_timeout"], "--join-timeout"),
        grace_period=options["grace_period"],
        lifecycle_hook=options["lifecycle_hook"],
        launch_hook=options["launch_hook"],
        lock_duration=duration(options["lock_duration"], "--lock-duration"),
        surge=None if options["surge"] is None else surge(str(options["surge"])),
        max_unavailable=options["max_unavailable"],
        canary=options["canary"],
        on_failure=_on_failure(options["on_failure"]),
        dry_run=dry_run,
    )


def _on_failure(text: str) -> OnFailure:
    if text not in ("rollback", "keep"):
        raise UsageError(
            f"--on-failure: {text!r} is not rollback or keep", "pass --on-failure rollback or keep"
        )
    return "rollback" if text == "rollback" else "keep"


def connect(options: dict[str, Any], images: set[str | None] | None = None) -> tuple[Aws, Kube, list[Group]]:
    """The clients and the groups named by --asg or --asg-tag, each checked (the AMIs too)."""
    if bool(options["asg"]) == bool(options["asg_tag"]):
        raise UsageError(
            "name the groups with --asg NAME (repeatable) or --asg-tag KEY=VALUE", "pass exactly one"
        )
    if options["asg_tag"] is not None and "=" not in options["asg_tag"]:
        raise UsageError(
            f"--asg-tag: {options['asg_tag']!r} is not KEY=VALUE", "write it like --asg-tag role=workers"
        )
    aws = Aws(region=options["region"], profile=options["profile"])
    kube = Kube(kubeconfig=options["kubeconfig"], context=options["context"])
    for image in images or set():
        aws.check_image(str(image))
    if options["asg"]:
        groups = aws.groups(list(options["asg"]), full=True)
    else:
        groups = aws.groups_by_tag(*str(options["asg_tag"]).split("=", 1))
    _check_in_cluster(groups, kube)
    return aws, kube, groups


def _check_in_cluster(groups: list[Group], kube: Kube) -> None:
    """A group none of whose instances is a node of this cluster means a wrong kubeconfig or context."""
    known = {node.instance_id for node in kube.nodes()}
    for group in groups:
        if group.instances and not any(i.id in known for i in group.instances):
            raise UsageError(
                f"none of the {len(group.instances)} instances of group {group.name} is a node of this "
                "cluster",
                "check --kubeconfig and --context point at the cluster the group's instances join",
            )
