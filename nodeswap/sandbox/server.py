"""The sandbox: a local AWS (moto with nodeswap's Auto Scaling rules) and a Kubernetes API server over
a simulated cluster that follows it, each on a loopback port, seeded from a scenario."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import yaml
from moto.ec2.models.instances import Instance
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from nodeswap.sandbox.aws_rules import AutoScalingRules
from nodeswap.sandbox.clock import Clock, Scheduler
from nodeswap.sandbox.faults import Faults
from nodeswap.sandbox.gateway import AwsGateway
from nodeswap.sandbox.kube.apiserver import KubeApi
from nodeswap.sandbox.kube.cluster import Cluster, Machine
from nodeswap.sandbox.kube.observe import Observer
from nodeswap.sandbox.kube.resources import BY_KIND
from nodeswap.sandbox.kube.store import Store
from nodeswap.sandbox.record import Record
from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.seed import IMAGE_TAG, SeededWorld, seed

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
KUBE_CONTEXT = "nodeswap-sandbox"
# How far ahead of "now" the start-up settling may run timers: boots, joins and pod starts are due
# within it, lifecycle-hook timeouts are not.
SETTLE_HORIZON_SECONDS = 25.0
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The record keeps every request; an access log on stderr would only add noise."""


class _Server:
    """One WSGI app on a loopback port, served by threads."""

    def __init__(self, host: str, port: int, app: WsgiApp, name: str) -> None:
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Sandbox:
    """A local AWS and Kubernetes for one scenario. One sandbox per process (moto's state is global)."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1") -> None:
        self.scenario = scenario
        self.lock = threading.RLock()
        self.scheduler = Scheduler(Clock(), self.lock)
        self.record = Record()
        self.faults = Faults([], scenario.seed)
        self.rules = AutoScalingRules(self.scheduler, scenario.timing)
        self.store = Store(self.scheduler.clock, scenario.kubernetes.watch_history)
        self.observer = Observer(self.scheduler.clock)
        self.cluster = Cluster(self.store, self.scheduler, scenario.kubernetes, self.observer)
        self.rules.on_running.append(self._instance_running)
        self.rules.on_stopping.append(self.cluster.instance_stopping)
        self.rules.on_terminated.append(self.cluster.instance_terminated)
        self._host = host
        self._aws: _Server | None = None
        self._kube: _Server | None = None
        self.world: SeededWorld | None = None

    @property
    def aws_endpoint(self) -> str:
        if self._aws is None:
            raise RuntimeError("the sandbox is not started")
        return self._aws.url

    @property
    def kube_endpoint(self) -> str:
        if self._kube is None:
            raise RuntimeError("the sandbox is not started")
        return self._kube.url

    def environment(self) -> dict[str, str]:
        """The variables that point the AWS SDKs and CLI at this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_DEFAULT_REGION": self.scenario.region,
            **DUMMY_CREDENTIALS,
        }

    def kubeconfig(self) -> str:
        """A kubeconfig for the sandbox's API server (plain HTTP on loopback, no credentials needed)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": KUBE_CONTEXT, "cluster": {"server": self.kube_endpoint}}],
            "users": [{"name": KUBE_CONTEXT, "user": {"token": "sandbox"}}],
            "contexts": [
                {
                    "name": KUBE_CONTEXT,
                    "context": {"cluster": KUBE_CONTEXT, "user": KUBE_CONTEXT, "namespace": "default"},
                }
            ],
            "current-context": KUBE_CONTEXT,
        }
        return yaml.safe_dump(config, sort_keys=False)

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_api_backend.reset()
        self.rules.install()
        self._aws = _Server(
            self._host, 0, AwsGateway(DomainDispatcherApplication(create_backend_app), self), "aws"
        )
        self._kube = _Server(self._host, 0, KubeApi(self, self.store, self.cluster), "kube")
        self.scheduler.start()
        self.world = seed(self.scenario, self.aws_endpoint, self.scheduler)
        # The world starts at rest, as a live cluster is: nodes joined and Ready, then the workloads,
        # scheduled over all of them (not piled onto whichever node happened to be Ready first).
        self.scheduler.settle(SETTLE_HORIZON_SECONDS)
        with self.lock:
            for manifest in self.scenario.kubernetes.workloads:
                self._apply(manifest)
        self.scheduler.settle(SETTLE_HORIZON_SECONDS)
        # Faults and the record start with the clients: seeding is neither faulted nor recorded.
        self.faults.replace(self.scenario.faults)
        self.record.enabled = True

    def stop(self) -> None:
        for server in (self._aws, self._kube):
            if server is not None:
                server.stop()
        self.scheduler.stop()

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.record.requests(), **self.observer.report()}

    def info(self) -> dict[str, Any]:
        return {
            "aws_endpoint": self.aws_endpoint,
            "kube_endpoint": self.kube_endpoint,
            "region": self.scenario.region,
            "world": self.world.as_dict() if self.world else None,
            "scenario": self.scenario.model_dump(mode="json"),
        }

    def _apply(self, manifest: dict[str, Any]) -> None:
        resource = BY_KIND.get((manifest.get("apiVersion", ""), manifest["kind"]))
        if resource is None:
            raise ValueError(f"the sandbox does not serve {manifest.get('apiVersion')}/{manifest['kind']}")
        if resource.namespaced:
            manifest = {**manifest, "metadata": {"namespace": "default", **manifest["metadata"]}}
        self.store.create(resource, self.cluster.defaulted(resource, manifest))

    def _instance_running(self, instance: Instance) -> None:
        # An AMI's role (old/new) is its nodeswap-sandbox:image tag, so it is known while seeding too.
        role = instance.ec2_backend.tags.get(instance.image_id, {}).get(IMAGE_TAG)
        self.cluster.instance_running(
            Machine(
                instance_id=instance.id,
                zone=str(instance.placement),
                private_dns=instance.private_dns_name,
                private_ip=instance.private_ip or "",
                instance_type=instance.instance_type,
                image_role=role,
            )
        )
