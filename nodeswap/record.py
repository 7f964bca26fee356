"""The rollout record: what a rollout set out to do, how far it got, and what undoing it needs.

It is written before the first change and updated as the rollout moves on, in two places, because
either can be lost while a rollout is interrupted:
- a ConfigMap in kube-system holds the whole record;
- tags on the group hold it without its instance lists (an Auto Scaling tag value is at most 256
  characters, so the JSON is split over ``nodeswap.io/rollout.0``, ``.1``, ...), rewritten when what
  they hold changes but for the phase alone (see ``RecordStore.save``).
An authoritative ``terraform apply`` may drop the group's tags mid-run and someone may delete the
ConfigMap: either copy alone resumes or undoes the rollout, and the next save writes both again. The
instances a rollout launched are also known without the lists: they were launched after it started.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from nodeswap.aws import STATE_TAG_PREFIX, Aws
from nodeswap.errors import OperationError
from nodeswap.kube import Kube, object_name
from nodeswap.model import Group, Instance

RECORD_TAG = f"{STATE_TAG_PREFIX}rollout."  # + the chunk's number
TAG_VALUE_LIMIT = 256
CONFIG_MAP_KEY = "record.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Capacity(_Frozen):
    min_size: int
    max_size: int
    desired: int

    def describe(self) -> str:
        return f"min {self.min_size}, max {self.max_size}, desired {self.desired}"


class Selection(_Frozen):
    """Which instances the rollout replaces and how many at once: the options a re-run must repeat."""

    ami: str | None = None
    replace_all: bool = False
    older_than_seconds: int | None = None
    surge: int | str | None = None
    canary: int | None = None

    def flags(self) -> list[str]:
        """The command-line options that ask for this selection."""
        flags = ["--ami", self.ami] if self.ami else []
        flags += ["--all"] if self.replace_all else []
        if self.older_than_seconds is not None:
            flags += ["--older-than", _duration(self.older_than_seconds)]
        flags += ["--surge", str(self.surge)] if self.surge is not None else []
        flags += ["--canary", str(self.canary)] if self.canary is not None else []
        return flags

    def describe(self) -> str:
        return " ".join(self.flags()) or "no selection options (the group's launch template)"


class Template(_Frozen):
    """The launch template the group named before the rollout: as written ("$Latest", "$Default" or a
    number) and the version number that resolved to."""

    id: str
    asked: str
    version: str


Phase = Literal["started", "surge", "join", "fence", "drain", "settle", "restore", "failed", "rollback"]


class Record(_Frozen):
    format: Literal[1] = 1
    group: str
    run: str  # the rollout's id, kept across resumes: fence taints and node marks carry it
    started: datetime
    selection: Selection
    # --all/--older-than: the launch time of the newest instance the rollout set out to replace, so the
    # instances it launches are never themselves replaced by it.
    launched_before: datetime | None = None
    capacity: Capacity  # before the rollout
    template: Template | None = None  # None: a launch configuration
    baked: str | None = None  # the launch template version an --ami run created
    suspended: tuple[str, ...] = ()  # the processes nodeswap suspended (not those already suspended)
    phase: Phase = "started"
    failure: str | None = None  # why the run stopped, for `status`
    before: tuple[str, ...] = ()  # the group's instances when the rollout started
    launched: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()

    def command(self) -> str:
        """The command that continues this rollout."""
        return replace_command(self.group, self.selection)

    def launched_by(self, instance: Instance) -> bool:
        """Whether this rollout launched ``instance``: it was not in the group when the rollout started
        (or, with only the tags' copy of the record, it was launched after that)."""
        if self.before:
            return instance.id not in self.before
        launched_at = instance.launched_at
        return instance.id in self.launched or (launched_at is not None and launched_at >= self.started)


class RecordStore:
    """Reads and writes group records in both of their places."""

    def __init__(self, aws: Aws, kube: Kube) -> None:
        self.aws, self.kube = aws, kube
        self._tags: dict[str, dict[str, str]] = {}  # group -> the record's tags as last read or written

    def load(self, group: Group) -> Record | None:
        """The group's record: the ConfigMap's, else the tags' (``group`` as read, with its tags)."""
        chunks = {k: v for k, v in group.tags.items() if _is_chunk(k)}
        self._tags[group.name] = chunks
        stored = self.kube.config_map(config_map_name(group.name))
        if stored is not None and CONFIG_MAP_KEY in stored:
            return _parse(stored[CONFIG_MAP_KEY], f"ConfigMap kube-system/{config_map_name(group.name)}")
        if chunks:
            return _parse(_joined(chunks), f"the {RECORD_TAG}* tags of group {group.name}")
        return None

    def save(self, record: Record) -> None:
        """Write both copies: the ConfigMap always; the tags when what they carry changed, other than the
        phase. The phase changes at each step of each wave and is read from the ConfigMap: rewriting
        the tags for it would spend Auto Scaling's request budget (shared with cluster-autoscaler) on
        what resuming and undoing do not need. The tags' phase is the one of their last write."""
        self.kube.write_config_map(
            config_map_name(record.group),
            {CONFIG_MAP_KEY: record.model_dump_json()},
            {"app.kubernetes.io/managed-by": "nodeswap"},
        )
        short = record.model_dump_json(exclude={"before", "launched", "retired"}, exclude_none=True)
        chunks = {
            f"{RECORD_TAG}{i}": short[start : start + TAG_VALUE_LIMIT]
            for i, start in enumerate(range(0, len(short), TAG_VALUE_LIMIT))
        }
        written = self._tags.get(record.group, {})
        if _but_phase(chunks) != _but_phase(written):
            self.aws.tag(record.group, chunks)
            self.aws.untag(record.group, [k for k in written if k not in chunks])
            self._tags[record.group] = chunks

    def remove(self, group: str) -> None:
        """Delete both copies (the tags last: while they stand, a re-run still finds the rollout)."""
        self.kube.delete_config_map(config_map_name(group))
        self.aws.untag(group, list(self._tags.pop(group, {})))


def replace_command(group: str, selection: Selection) -> str:
    """The command that asks for (and so continues) the rollout of ``group`` with ``selection``."""
    return " ".join(["nodeswap", "replace", "--asg", group, *selection.flags(), "--yes"])


def config_map_name(group: str) -> str:
    return object_name("nodeswap-rollout", group)


def _is_chunk(key: str) -> bool:
    return key.startswith(RECORD_TAG) and key[len(RECORD_TAG) :].isdigit()


def _joined(chunks: dict[str, str]) -> str:
    return "".join(chunks[k] for k in sorted(chunks, key=lambda k: int(k[len(RECORD_TAG) :])))


def _but_phase(chunks: dict[str, str]) -> Any:
    """What the tags carry, less the phase; None for no tags, or tags that do not parse (rewritten)."""
    try:
        carried = json.loads(_joined(chunks)) if chunks else None
    except ValueError:
        return None
    if isinstance(carried, dict):
        carried.pop("phase", None)
    return carried


def _parse(text: str, where: str) -> Record:
    try:
        return Record.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise OperationError(
            f"the rollout record in {where} cannot be read: {exc}",
            "it was changed by hand or by a newer nodeswap; restore it, or delete it and check the group "
            "by hand (nodeswap status shows what is fenced and suspended)",
        ) from exc


def _duration(seconds: int) -> str:
    """Seconds in the form --older-than takes (7d, 1h30m)."""
    left, text = timedelta(seconds=seconds), ""
    for unit, size in (("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1))):
        count, left = divmod(left, size)
        text += f"{count}{unit}" if count else ""
    rest = int(left.total_seconds())
    return text + (f"{rest}s" if rest or not text else "")
