"""The sandbox: moto with nodeswap's Auto Scaling rules, on a loopback port, seeded from a scenario."""

from __future__ import annotations

import logging
import threading
from typing import Any

from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from nodeswap.sandbox.aws_rules import AutoScalingRules
from nodeswap.sandbox.clock import Clock, Scheduler
from nodeswap.sandbox.faults import Faults
from nodeswap.sandbox.gateway import AwsGateway
from nodeswap.sandbox.record import Record
from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.seed import SeededWorld, seed

DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The record keeps every request; an access log on stderr would only add noise."""


class Sandbox:
    """A local AWS for one scenario. Only one sandbox runs per process (moto's state is global)."""

    def __init__(self, scenario: Scenario, host: str = "127.0.0.1", aws_port: int = 0) -> None:
        self.scenario = scenario
        self.lock = threading.RLock()
        self.scheduler = Scheduler(Clock(), self.lock)
        self.record = Record()
        self.faults = Faults([], scenario.seed)
        self.rules = AutoScalingRules(self.scheduler, scenario.timing)
        self._host, self._aws_port = host, aws_port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.world: SeededWorld | None = None

    @property
    def aws_endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{self._host}:{self._server.server_port}"

    def environment(self) -> dict[str, str]:
        """The variables that point the AWS SDKs and CLI at this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_DEFAULT_REGION": self.scenario.region,
            **DUMMY_CREDENTIALS,
        }

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_api_backend.reset()
        self.rules.install()
        gateway = AwsGateway(DomainDispatcherApplication(create_backend_app), self)
        self._server = make_server(
            self._host, self._aws_port, gateway, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-aws", daemon=True
        )
        self._thread.start()
        self.scheduler.start()
        self.world = seed(self.scenario, self.aws_endpoint, self.scheduler)
        # Faults and the record start with the clients: seeding is neither faulted nor recorded.
        self.faults.replace(self.scenario.faults)
        self.record.enabled = True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self.scheduler.stop()

    def report(self) -> dict[str, Any]:
        return self.record.report()

    def info(self) -> dict[str, Any]:
        return {
            "aws_endpoint": self.aws_endpoint,
            "region": self.scenario.region,
            "world": self.world.as_dict() if self.world else None,
            "scenario": self.scenario.model_dump(mode="json"),
        }
