"""Scenario files: the documented default is the built-in one, and malformed files are reported with
the file, the field and what was expected."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nodeswap.errors import ScenarioError
from nodeswap.sandbox.scenario import DEFAULT_SCENARIO, Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_configs_sandbox_yaml_is_the_default_scenario() -> None:
    assert (ROOT / "configs" / "sandbox.yaml").resolve() == DEFAULT_SCENARIO.resolve()
    assert load_scenario(None) == load_scenario(DEFAULT_SCENARIO)


def test_an_empty_file_takes_the_schema_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_scenario(path) == Scenario()
    assert Scenario().kubernetes.workloads == []


def leaves(value: Any, path: tuple[str | int, ...] = ()) -> dict[tuple[str | int, ...], Any]:
    """Every field of a scenario dump by its path; a list of mappings by index, other lists whole."""
    if isinstance(value, dict):
        return {p: v for key, item in value.items() for p, v in leaves(item, (*path, key)).items()}
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return {p: v for index, item in enumerate(value) for p, v in leaves(item, (*path, index)).items()}
    return {path: value}


def test_the_default_file_marks_what_a_scenario_that_leaves_a_field_out_gets() -> None:
    """Where the default scenario differs from the schema's defaults, its line says what the schema
    gives ("left out: ..."), so that a scenario written from it knows what it drops."""
    default = load_scenario(None).model_dump(mode="json")
    lines = DEFAULT_SCENARIO.read_text().splitlines()
    differing = []
    for path, bare in leaves(Scenario().model_dump(mode="json")).items():
        value = default
        for part in path:
            value = value[part]
        if value != bare:
            (line,) = [line for line in lines if re.match(rf"\s*-?\s*{path[-1]}:", line)]
            assert f"left out: {json.dumps(bare)}" in line, path
            differing.append(path[-1])
    # Slower machines, no termination hook, no workloads.
    assert {"boot_seconds", "join_seconds", "lifecycle_hooks", "workloads"} <= set(differing)


def test_the_default_scenario_rehearses_a_replacement_that_waits_on_budgets() -> None:
    """Its workloads make `plan`, `replace` and `demo` move pods: a web Deployment behind a Service,
    probed and with a preStop delay, more replicas than nodes under a budget of one at a time; a
    StatefulSet with its own budget; a DaemonSet that drains leave in place."""
    scenario = load_scenario(None)
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for manifest in scenario.kubernetes.workloads:
        by_kind.setdefault(manifest["kind"], {})[manifest["metadata"]["name"]] = manifest
    web = by_kind["Deployment"]["web"]["spec"]
    (container,) = web["template"]["spec"]["containers"]
    assert container["readinessProbe"]
    assert container["lifecycle"]["preStop"]
    assert by_kind["Service"]["web"]["spec"]["selector"] == web["selector"]["matchLabels"]
    assert by_kind["PodDisruptionBudget"]["web"]["spec"]["maxUnavailable"] == 1
    assert web["replicas"] >= 2 * scenario.groups[0].desired_capacity  # several on each node
    db = by_kind["StatefulSet"]["db"]["spec"]
    assert by_kind["PodDisruptionBudget"]["db"]["spec"]["selector"] == db["selector"]
    assert by_kind["Service"]["db"]["spec"]["clusterIP"] == "None"
    assert set(by_kind["DaemonSet"]) == {"node-agent"}


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
