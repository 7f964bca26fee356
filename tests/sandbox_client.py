"""How tests reach a sandbox: over real HTTP, with plain boto3 clients and the admin endpoints."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from kubernetes.client import ApiClient, Configuration

from nodeswap.sandbox.server import Sandbox

# Long enough that no scaling activity starts and nothing boots or shuts down unless a test moves the clock.
FROZEN_TIMING = {"activity_seconds": 5.0, "boot_seconds": 30.0, "shutdown_seconds": 10.0}
# Short enough that a test watching the cluster in real time waits a second or two at most.
QUICK_TIMING = {"activity_seconds": 0.1, "boot_seconds": 0.3, "shutdown_seconds": 0.2}
QUICK_KUBERNETES = {
    "join_seconds": 0.2,
    "node_ready_seconds": 0.1,
    "node_gone_seconds": 0.5,
    "pod_start_seconds": 0.2,
}


@dataclass
class SandboxClient:
    """A running sandbox and the ways a test talks to it: boto3 and the admin endpoints."""

    sandbox: Sandbox
    user_agent: str = "nodeswap-tests"

    def client(self, service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.sandbox.aws_endpoint,
            region_name=self.sandbox.scenario.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(user_agent_extra=self.user_agent, **config),
        )

    @cached_property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @cached_property
    def ec2(self) -> Any:
        return self.client("ec2")

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.sandbox.aws_endpoint}/_sandbox/{path}", data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def advance(self, seconds: float) -> None:
        """Fast-forward the sandbox's clock; every timer due by then has fired when this returns."""
        self.admin("POST", "clock", {"advance_seconds": seconds})

    def set_desired(self, desired: int, name: str = "workers") -> None:
        """Set the group's desired capacity and let the scaling activities it calls for start (the clock
        moves on by the scenario's activity delay)."""
        self.autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired)
        self.advance(self.sandbox.scenario.timing.activity_seconds)

    def group(self, name: str = "workers") -> dict[str, Any]:
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        group: dict[str, Any] = groups["AutoScalingGroups"][0]
        return group

    def states(self, name: str = "workers") -> dict[str, str]:
        """Instance id -> lifecycle state, for the group's instances."""
        return {i["InstanceId"]: i["LifecycleState"] for i in self.group(name)["Instances"]}

    def kube(self) -> ApiClient:
        """An official Kubernetes Python client for the sandbox's API server."""
        configuration = Configuration(host=self.sandbox.kube_endpoint)
        client = ApiClient(configuration)
        client.user_agent = self.user_agent
        return client

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(self.sandbox.kubeconfig())
        return path

    def ec2_state(self, instance_id: str) -> str:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        state: str = reservations[0]["Instances"][0]["State"]["Name"]
        return state
