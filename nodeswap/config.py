"""`replace` options from a YAML file (``--config``), with per-group overrides. Flags win over the file.

Keys are the long option names without dashes (``drain-timeout``, or ``drain_timeout``); a group's
section under ``groups:`` overrides the top level for that group. Unknown keys and invalid values are
rejected before anything changes, naming the file and the key as written there (a group's as
``groups.NAME.key``), with what the value may be: the flags' own rules (``nodeswap.values``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nodeswap import values
from nodeswap.errors import UsageError
from nodeswap.yamlfile import load_mapping, validated


def _checked(read: Callable[[str], object]) -> AfterValidator:
    """A value kept as written, once ``read`` accepts it (its ValueError says what is allowed)."""

    def check(value: Any) -> Any:
        read(str(value))
        return value

    return AfterValidator(check)


def _ami(text: str) -> None:
    if not text.startswith("ami-") or not text[4:].isalnum():
        raise ValueError("not an AMI id; write it like ami-0123456789abcdef0")


def _tag(text: str) -> None:
    if "=" not in text or text.startswith("="):
        raise ValueError("not KEY=VALUE; write it like role=workers")


Duration = Annotated[str, _checked(values.duration)]


class GroupOptions(BaseModel):
    """The options that may differ between groups."""

    # Keys as the flags are spelled (drain-timeout), or with underscores; errors name the key as written.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        alias_generator=lambda name: name.replace("_", "-"),
    )

    replace_all: bool | None = Field(default=None, alias="all")
    older_than: Duration | None = None
    ami: Annotated[str, _checked(_ami)] | None = None
    ignore_daemonsets: bool | None = None
    delete_emptydir_data: bool | None = None
    force: bool | None = None
    grace_period: int | None = Field(default=None, ge=0)
    drain_timeout: Duration | None = None
    join_timeout: Duration | None = None
    lifecycle_hook: str | None = None
    launch_hook: str | None = None
    lock_duration: Duration | None = None
    no_raise_max: bool | None = None
    surge: Annotated[str | int, _checked(values.surge)] | None = None
    max_unavailable: int | None = Field(default=None, ge=1)
    canary: int | None = Field(default=None, ge=1)
    on_failure: Literal["rollback", "keep"] | None = None


class ReplaceConfig(GroupOptions):
    asg: list[str] | None = None
    asg_tag: Annotated[str, _checked(_tag)] | None = None
    region: str | None = None
    profile: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    output: Literal["text", "json"] | None = None
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
    return validated(ReplaceConfig, data, path, label="key", example=example, error=UsageError)
