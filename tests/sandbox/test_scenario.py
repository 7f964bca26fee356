"""Scenario files: the documented default is the built-in one, and malformed files are reported with
the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeswap.errors import ScenarioError
from nodeswap.sandbox.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_configs_sandbox_yaml_is_the_built_in_default() -> None:
    assert load_scenario(ROOT / "configs" / "sandbox.yaml") == Scenario()
    assert load_scenario(None) == Scenario()


def test_an_empty_file_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_scenario(path) == Scenario()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "groups:\n  - name: workers\n    min_size: three\n",
            "field groups.0.min_size: Input should be a valid integer",
        ),
        ("groups:\n  - max_size: 2\n", "need min_size <= desired_capacity <= max_size, got 3 <= 3 <= 2"),
        (
            "timing:\n  boot_seconds: -1\n",
            "field timing.boot_seconds: Input should be greater than or equal to 0",
        ),
        ("regoin: us-east-1\n", "field regoin: Extra inputs are not permitted"),
        ("availability_zones: [eu-west-1a]\n", "are not in region us-east-1"),
        (
            "groups:\n  - lifecycle_hooks:\n"
            "      - {name: drain, transition: terminating, heartbeat_timeout: 5}\n",
            "field groups.0.lifecycle_hooks.0.heartbeat_timeout: Input should be greater than or equal to 30",
        ),
        (
            "faults:\n  - error: explode\n",
            "field faults.0.error: Input should be 'throttle', 'internal', 'unavailable' or 'drop'",
        ),
        (
            "groups:\n  - target_group: {name: web, deregistration_delay: 3601}\n",
            "field groups.0.target_group.deregistration_delay: Input should be less than or equal to 3600",
        ),
        ("groups: [\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping of scenario fields at the top level, got list"),
    ],
)
def test_malformed_scenarios_name_the_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(path) in raised.value.message
    assert expected in raised.value.message
    assert raised.value.remedy


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        load_scenario(tmp_path / "nope.yaml")
