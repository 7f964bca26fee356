"""`replace` options from a YAML file (``--config``), with per-group overrides. Flags win over the file.

Keys are the long option names without dashes (``drain-timeout`` or ``drain_timeout``); a group's
section under ``groups:`` overrides the top level for that group. Unknown keys and invalid values are
rejected before anything changes, naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodeswap.errors import UsageError
from nodeswap.yamlfile import load_mapping, validated

DURATION = r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$"


class GroupOptions(BaseModel):
    """The options that may differ between groups."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    replace_all: bool | None = Field(default=None, alias="all")
    older_than: str | None = Field(default=None, pattern=DURATION)
    ami: str | None = Field(default=None, pattern=r"^ami-[0-9a-f]+$")
    ignore_daemonsets: bool | None = None
    delete_emptydir_data: bool | None = None
    force: bool | None = None
    grace_period: int | None = Field(default=None, ge=0)
    drain_timeout: str | None = Field(default=None, pattern=DURATION)
    join_timeout: str | None = Field(default=None, pattern=DURATION)
    lifecycle_hook: str | None = None
    launch_hook: str | None = None
    lock_duration: str | None = Field(default=None, pattern=DURATION)
    no_raise_max: bool | None = None
    surge: str | int | None = None  # checked with the flag's rules when the settings are built
    max_unavailable: int | None = Field(default=None, ge=1)
    canary: int | None = Field(default=None, ge=1)
    on_failure: str | None = Field(default=None, pattern=r"^(rollback|keep)$")


class ReplaceConfig(GroupOptions):
    asg: list[str] | None = None
    asg_tag: str | None = Field(default=None, pattern=r"^[^=]+=.*$")
    region: str | None = None
    profile: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    output: str | None = Field(default=None, pattern=r"^(text|json)$")
    groups: dict[str, GroupOptions] = Field(default_factory=dict)

    def for_group(self, name: str) -> dict[str, Any]:
        """The options set for ``name``: the group's section over the top level."""
        top = self.model_dump(exclude_none=True, exclude={"groups", "asg", "asg_tag"})
        section = self.groups.get(name)
        return {**top, **(section.model_dump(exclude_none=True) if section else {})}


def load_config(path: Path) -> ReplaceConfig:
    example = "configs/replace.yaml"
    data = load_mapping(
        path, kind="config", fields="options", option="--config", example=example, error=UsageError
    )
    return validated(ReplaceConfig, _underscored(data), path, label="key", example=example, error=UsageError)


def _underscored(data: dict[str, Any]) -> dict[str, Any]:
    """Accept option names as written on the command line (drain-timeout) or in Python (drain_timeout)."""
    top = {str(key).replace("-", "_"): value for key, value in data.items()}
    groups = top.get("groups")
    if isinstance(groups, dict):
        top["groups"] = {
            name: _underscored(section) if isinstance(section, dict) else section
            for name, section in groups.items()
        }
    return top
