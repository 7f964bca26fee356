"""`replace --config`: options from YAML with per-group overrides; bad files are rejected naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeswap.config import load_config
from nodeswap.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_config_loads_with_its_group_override() -> None:
    config = load_config(ROOT / "configs" / "replace.yaml")
    assert config.asg == ["workers", "batch"]
    assert config.for_group("workers")["drain_timeout"] == "15m"
    assert config.for_group("batch")["drain_timeout"] == "45m"
    assert config.for_group("batch")["delete_emptydir_data"] is True
    assert config.for_group("workers")["delete_emptydir_data"] is False


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("drain-timeout: soon\n", "key drain-timeout: not a duration; write it like 90s, 15m"),
        ("drain_timeout: soon\n", "key drain_timeout: not a duration"),  # the key as written
        ("drian-timeout: 5m\n", "key drian-timeout: Extra inputs are not permitted"),
        (
            "groups:\n  batch:\n    grace-period: -1\n",
            "key groups.batch.grace-period: Input should be greater than",
        ),
        ("groups:\n  batch:\n    surge: 0\n", "key groups.batch.surge: out of range; a surge is 1 or more"),
        ("surge: 500%\n", "key surge: out of range; a surge is 1 or more instances, or 1% to 100%"),
        ("surge: lots\n", "key surge: not a number of instances or a percentage"),
        ("on-failure: maybe\n", "key on-failure: Input should be 'rollback' or 'keep'"),
        ("output: xml\n", "key output"),
        ("ami: not-an-ami\n", "key ami: not an AMI id"),
        ("[1, 2]\n", "expected a mapping of options"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_file_and_key(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as raised:
        load_config(path)
    assert str(path) in raised.value.message
    assert says in raised.value.message
