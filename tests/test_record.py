"""The rollout record and the lock's pure parts: the options a record asks a re-run to repeat, its two
copies (a ConfigMap and group tags of at most 256 characters) and which one a load trusts, which
instances a rollout launched, object names for any group name, and which lock holders are gone.
The adapters are replaced by in-memory fakes at their boundary."""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from nodeswap.aws import Aws
from nodeswap.kube import Kube, object_name
from nodeswap.lease import holder_gone, holder_running_here
from nodeswap.model import Group, Instance, LaunchSpec
from nodeswap.record import TAG_VALUE_LIMIT, Capacity, Record, RecordStore, Selection, Template

STARTED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "group": "workers",
        "run": "abcd1234",
        "started": STARTED,
        "selection": Selection(ami="ami-0123456789abcdef0", surge="25%", canary=1),
        "capacity": Capacity(min_size=3, max_size=6, desired=3),
        "template": Template(id="lt-0123456789abcdef0", asked="$Latest", version="1"),
        "suspended": ("AZRebalance", "AlarmNotification", "ScheduledActions"),
        "before": tuple(f"i-{n:017x}" for n in range(60)),
        "retired": ("i-00000000000000001",),
        **changes,
    }
    return Record(**fields)


class FakeAws:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.writes = 0

    def tag(self, group: str, tags: dict[str, str]) -> None:
        self.writes += 1
        self.tags.update(tags)

    def untag(self, group: str, keys: list[str]) -> None:
        for key in keys:
            self.tags.pop(key, None)


class FakeKube:
    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}

    def config_map(self, name: str) -> dict[str, str] | None:
        return self.maps.get(name)

    def write_config_map(self, name: str, data: dict[str, str], labels: dict[str, str]) -> None:
        self.maps[name] = dict(data)

    def delete_config_map(self, name: str) -> None:
        self.maps.pop(name, None)


def group(tags: dict[str, str]) -> Group:
    return Group("workers", 3, 6, 3, LaunchSpec("lt-0123456789abcdef0", "workers", "1"), (), tags=dict(tags))


@pytest.fixture
def fakes() -> tuple[FakeAws, FakeKube, RecordStore]:
    aws, kube = FakeAws(), FakeKube()
    return aws, kube, RecordStore(cast(Aws, aws), cast(Kube, kube))


@pytest.mark.parametrize(
    ("selection", "flags"),
    [
        (Selection(), []),
        (Selection(ami="ami-1", surge=2), ["--ami", "ami-1", "--surge", "2"]),
        (Selection(replace_all=True, surge="25%", canary=1), ["--all", "--surge", "25%", "--canary", "1"]),
        (Selection(older_than_seconds=7 * 86400), ["--older-than", "7d"]),
        (Selection(older_than_seconds=5400), ["--older-than", "1h30m"]),
        (Selection(older_than_seconds=45), ["--older-than", "45s"]),
    ],
)
def test_a_selection_is_the_options_that_ask_for_it(selection: Selection, flags: list[str]) -> None:
    assert selection.flags() == flags


def test_the_command_that_continues_a_rollout() -> None:
    assert record().command() == (
        "nodeswap replace --asg workers --ami ami-0123456789abcdef0 --surge 25% --canary 1 --yes"
    )


def test_both_copies_are_written_and_the_tags_hold_no_lists(
    fakes: tuple[FakeAws, FakeKube, RecordStore],
) -> None:
    aws, kube, store = fakes
    store.load(group({}))
    store.save(record())
    assert all(len(value) <= TAG_VALUE_LIMIT for value in aws.tags.values())
    assert all(key.startswith("nodeswap.io/rollout.") for key in aws.tags)
    assert len(aws.tags) >= 2  # split over several tags
    assert store.load(group(aws.tags)) == record()  # the ConfigMap's whole copy wins
    kube.maps.clear()  # deleted by hand
    from_tags = store.load(group(aws.tags))
    assert from_tags == record(before=(), retired=())  # the tags' copy: all but the instance lists


def test_tags_are_rewritten_only_when_their_part_changes(
    fakes: tuple[FakeAws, FakeKube, RecordStore],
) -> None:
    aws, kube, store = fakes
    store.load(group({}))
    store.save(record())
    store.save(record(retired=("i-1", "i-2")))  # the lists live in the ConfigMap only
    store.save(record(phase="drain"))  # so does the phase, which changes at each step of each wave
    assert aws.writes == 1
    assert store.load(group(aws.tags)).phase == "drain"  # the ConfigMap's copy is current
    store.save(record(phase="drain", baked="2"))  # what an undo needs: the tags carry it at once
    assert aws.writes == 2
    kube.maps.clear()
    assert store.load(group(aws.tags)) == record(phase="drain", baked="2", before=(), retired=())


def test_tags_dropped_mid_run_are_written_again(fakes: tuple[FakeAws, FakeKube, RecordStore]) -> None:
    aws, _, store = fakes
    store.load(group({}))
    store.save(record())
    written = dict(aws.tags)
    aws.tags.clear()  # an authoritative terraform apply
    assert store.load(group({})) == record()
    store.save(record())
    assert aws.tags == written


def test_remove_deletes_both_copies(fakes: tuple[FakeAws, FakeKube, RecordStore]) -> None:
    aws, kube, store = fakes
    store.load(group({"team": "platform"}))
    store.save(record())
    store.remove("workers")
    assert aws.tags == {}
    assert kube.maps == {}


def test_a_damaged_record_is_an_error_that_says_where(fakes: tuple[FakeAws, FakeKube, RecordStore]) -> None:
    _, kube, store = fakes
    kube.maps["nodeswap-rollout-workers"] = {"record.json": '{"format": 9}'}
    with pytest.raises(Exception, match="ConfigMap kube-system/nodeswap-rollout-workers cannot be read"):
        store.load(group({}))


def instance(instance_id: str, launched_at: datetime | None = None) -> Instance:
    return Instance(instance_id, "us-east-1a", "InService", True, None, launched_at=launched_at)


def test_the_instances_a_rollout_launched() -> None:
    listed = record(before=("i-old",))
    assert not listed.launched_by(instance("i-old", STARTED + timedelta(hours=1)))
    assert listed.launched_by(instance("i-new", STARTED - timedelta(hours=1)))
    from_tags = record(before=())  # only the tags' copy: by launch time
    assert from_tags.launched_by(instance("i-new", STARTED + timedelta(seconds=1)))
    assert not from_tags.launched_by(instance("i-old", STARTED - timedelta(seconds=1)))


@pytest.mark.parametrize(
    ("group_name", "expected"),
    [("workers", "nodeswap-workers"), ("eks-workers-1", "nodeswap-eks-workers-1")],
)
def test_object_names_of_plain_group_names_are_kept(group_name: str, expected: str) -> None:
    assert object_name("nodeswap", group_name) == expected


def test_object_names_of_other_group_names_are_valid_and_distinct() -> None:
    names = {object_name("nodeswap", g) for g in ("Workers", "workers_1", "workers:1", "workers 1")}
    assert len(names) == 4
    assert all(n.replace("-", "").isalnum() and n.islower() for n in names)


def test_a_holder_whose_process_is_gone_on_this_host() -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    host = socket.gethostname()
    assert holder_gone(f"{host}/{process.pid}/abcd")
    assert not holder_gone(f"{host}/1/abcd")  # alive (pid 1 always is)
    assert not holder_gone(f"another-host/{process.pid}/abcd")  # cannot be told from here
    assert not holder_gone("not-a-holder")


def test_a_holder_whose_nodeswap_runs_on_this_host() -> None:
    host = socket.gethostname()
    waits = "import sys; print('up', flush=True); sys.stdin.read()"
    running = subprocess.Popen(  # a nodeswap, as ps shows it
        [sys.executable, "-c", waits, "nodeswap"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert running.stdout is not None
        assert running.stdout.readline() == b"up\n"  # started
        assert holder_running_here(f"{host}/{running.pid}/abcd")
        assert not holder_running_here(f"{host}/1/abcd")  # alive, but not a nodeswap (a reused pid)
        assert not holder_running_here(f"another-host/{running.pid}/abcd")  # cannot be told from here
    finally:
        running.communicate(b"")
    assert not holder_running_here(f"{host}/{running.pid}/abcd")  # gone
