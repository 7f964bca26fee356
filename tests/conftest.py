"""Shared fixtures: a fresh sandbox per test, reached over real HTTP with plain boto3 clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.server import Sandbox
from tests.e2e import Cli, demo_scenario
from tests.sandbox_client import FROZEN_TIMING, SandboxClient


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., SandboxClient]]:
    """Start a sandbox for a scenario given as keyword fields (timings frozen unless overridden)."""
    started: list[Sandbox] = []

    def start(**fields: Any) -> SandboxClient:
        fields.setdefault("timing", FROZEN_TIMING)
        sandbox = Sandbox(Scenario.model_validate(fields))
        sandbox.start()
        started.append(sandbox)
        return SandboxClient(sandbox)

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """The default scenario with frozen timings: group `workers`, 3 instances InService."""
    return start_sandbox()


@pytest.fixture
def world(start_sandbox: Callable[..., SandboxClient]) -> SandboxClient:
    """The demo scenario (the one `nodeswap demo` rehearses): workloads, PDBs, a termination hook."""
    return start_sandbox(**demo_scenario())


@pytest.fixture
def cli(world: SandboxClient, tmp_path: Path) -> Cli:
    """nodeswap, run as a user runs it, pointed at ``world``."""
    return Cli(world, tmp_path)
