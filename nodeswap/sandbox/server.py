"""The sandbox: a local AWS (moto with nodeswap's Auto Scaling rules) and a Kubernetes API server over
a simulated cluster that follows it, each on a loopback port, seeded from a scenario."""

from __future__ import annotations

import contextlib
import gc
import http.client
import io
import itertools
import logging
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import yaml
from moto.ec2.models.instances import Instance
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.exceptions import InternalServerError
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

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


class _MotoApp(DomainDispatcherApplication):
    """moto's server, each host's backend remembered once found: moto looks for it among the names of
    its package's directories, listed from disk, on every request."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


# http.client's limits on a request's header lines: their length and count.
_MAX_LINE, _MAX_HEADERS = 65536, 100
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]*")  # what the email parser takes for a header name


class _Handler(WSGIRequestHandler):
    """werkzeug's WSGI request handler, with the connection kept open between requests (HTTP/1.1
    keep-alive, as API servers and AWS endpoints do) instead of closed after each: clients then reuse
    their connections rather than open one, and the sandbox start a thread, per request. werkzeug
    closes every connection because it cannot tell a request body the app left unread from the next
    request; here the body is read whole before the app runs."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # a streamed answer goes out in several writes

    server: _ThreadedServer

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The record keeps every request; an access log on stderr would only add noise."""

    def parse_request(self) -> bool:
        """http.server's, with the headers of a well-formed HTTP/1.x request read by a plain split:
        the email parser http.server reads them with costs more than most of the sandbox's answers.
        Anything else gets http.server's own reading, checks and errors."""
        words = self.raw_requestline.split()
        if len(words) != 3 or words[2] not in (b"HTTP/1.0", b"HTTP/1.1"):
            return super().parse_request()
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        self.command, path, self.request_version = (str(word, "iso-8859-1") for word in words)
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path  # as http.server does
        fields: list[list[str]] = []
        in_headers = True  # until a line that is no header: the email parser takes the rest for a body
        for count in itertools.count():
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                explain = f"got more than {_MAX_LINE} bytes when reading header line"
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", explain)
                return False
            if count >= _MAX_HEADERS:  # the blank line that ends them counts too
                explain = f"got more than {_MAX_HEADERS} headers"
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", explain)
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            text = str(line, "iso-8859-1").rstrip("\r\n")
            if text[:1] in (" ", "\t"):  # a folded line continues the header before it
                if in_headers and fields:
                    fields[-1][1] += text
                continue
            name, colon, value = text.partition(":")
            in_headers = in_headers and bool(colon) and _HEADER_NAME.fullmatch(name) is not None
            if in_headers and name:  # a line without a name is skipped
                fields.append([name, value.lstrip(" \t")])
        self.headers = headers = http.client.HTTPMessage()
        for name, value in fields:
            headers.set_raw(name, value)
        connection = headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def run_wsgi(self) -> None:
        environ = self.make_environ()
        stream = environ["wsgi.input"]
        try:
            # A chunked body is read to its last chunk (the dechunked stream ends there).
            chunked = environ.get("wsgi.input_terminated")
            body = stream.read() if chunked else stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        except ValueError:  # a Content-Length that is not a number: where the body ends is unknown
            self.close_connection = True
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        response = _Response(self)
        try:
            response.run(self.server.app, environ)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            self.close_connection = True
            self.server.log("error", f"Error on request:\n{traceback.format_exc()}")
            if not response.started:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    _Response(self).run(InternalServerError(), environ)


class _Response:
    """One WSGI response, written as the app yields it: with its Content-Length, or else chunked."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.head: tuple[str, list[tuple[str, str]]] | None = None
        self.started = False  # whether the head was written
        self.chunked = False

    def run(self, app: WsgiApp, environ: dict[str, Any]) -> None:
        result = app(environ, self.start_response)
        try:
            for data in result:
                self.write(data)
            if not self.started:
                self.write(b"")
            if self.chunked:
                self.handler.wfile.write(b"0\r\n\r\n")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info and self.started:
            raise exc_info[1].with_traceback(exc_info[2])
        self.head = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        head = b"" if self.started else self._head()
        if data and self.chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if head or data:
            self.handler.wfile.write(head + data)  # the head goes with the first data, in one write

    def _head(self) -> bytes:
        """The status line and headers, as BaseHTTPRequestHandler's send_response and send_header
        write them; without a length the body is chunked, but for answers that have none (RFC 9112 6.3)."""
        assert self.head is not None, "write() before start_response"
        handler, (status, headers) = self.handler, self.head
        self.started = True
        code, _, reason = status.partition(" ")
        self.chunked = not (
            any(key.lower() == "content-length" for key, _ in headers)
            or handler.command == "HEAD"
            or int(code) < 200
            or int(code) in (204, 304)
        )
        if self.chunked:
            headers = [*headers, ("Transfer-Encoding", "chunked")]
        for key, value in headers:
            if key.lower() == "connection":
                handler.close_connection = value.lower() == "close" or (
                    value.lower() != "keep-alive" and handler.close_connection
                )
        if handler.request_version == "HTTP/0.9":
            return b""  # an HTTP/0.9 answer is its body alone
        lines = [
            f"{handler.protocol_version} {int(code)} {reason}",
            f"Server: {handler.version_string()}",
            f"Date: {handler.date_time_string()}",
            *(f"{key}: {value}" for key, value in headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")


class _ThreadedServer(ThreadedWSGIServer):
    """A threaded WSGI server that knows its open connections, to close them when it stops."""

    def __init__(self, host: str, port: int, app: WsgiApp) -> None:
        super().__init__(host, port, app, handler=_Handler)
        self.connections: set[socket.socket] = set()

    def close_connections(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Server:
    """One WSGI app on a loopback port, served by threads."""

    def __init__(self, host: str, port: int, app: WsgiApp, name: str) -> None:
        self.server = _ThreadedServer(host, port, app)
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
        self.server.close_connections()  # idle kept-alive connections end with the server
        self.thread.join()


class _Heap:
    """The garbage collector's settings while sandboxes serve in this process. The world a sandbox
    builds before it serves (moto's models, the cluster's objects: millions of Python objects at 300
    nodes) lives as long as it does, so the collector leaves it out (gc.freeze), where each full
    collection would walk all of it, half a second at that scale, while the sandbox stands still. And
    since most objects a sandbox makes are kept (stored objects and their history), the youngest are
    collected every YOUNG_THRESHOLD allocations rather than every 700, so that the collections of the
    older generations, which walk all that was kept, come as many times less often. All is as it was
    once the last sandbox stops."""

    YOUNG_THRESHOLD = 50_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: set[int] = set()
        self._threshold = gc.get_threshold()

    def hold(self, sandbox: Sandbox) -> None:
        with self._lock:
            if not self._holders:
                self._threshold = gc.get_threshold()
                gc.set_threshold(self.YOUNG_THRESHOLD, *self._threshold[1:])
            self._holders.add(id(sandbox))
            gc.freeze()

    def release(self, sandbox: Sandbox) -> None:
        with self._lock:
            if id(sandbox) not in self._holders:
                return
            self._holders.discard(id(sandbox))
            if not self._holders:
                gc.unfreeze()
                gc.set_threshold(*self._threshold)


_HEAP = _Heap()


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
        self._aws = _Server(self._host, 0, AwsGateway(_MotoApp(), self), "aws")
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
        _HEAP.hold(self)

    def stop(self) -> None:
        for server in (self._aws, self._kube):
            if server is not None:
                server.stop()
        self.scheduler.stop()
        _HEAP.release(self)

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
