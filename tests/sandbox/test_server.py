"""The sandbox's HTTP servers keep a connection open between requests (HTTP/1.1 keep-alive), whatever
the request before left unread or however its answer was framed, and close it when they stop; while a
sandbox serves, the garbage collector leaves its world alone."""

from __future__ import annotations

import gc
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.server import Sandbox
from tests.sandbox_client import FROZEN_TIMING, SandboxClient

JSON = {"Content-Type": "application/json"}


def connect(endpoint: str) -> http.client.HTTPConnection:
    url = urlsplit(endpoint)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)


def ask(
    connection: http.client.HTTPConnection, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, bytes]:
    connection.request(method, path, body=body, headers=headers, encode_chunked=isinstance(body, Iterator))
    response = connection.getresponse()
    return response.status, response.read()


def test_one_connection_serves_request_after_request(sandbox: SandboxClient) -> None:
    kube = connect(sandbox.sandbox.kube_endpoint)
    assert ask(kube, "GET", "/version")[0] == 200
    opened = kube.sock
    # A body the API server never reads (no such path) is not taken for the next request.
    assert (
        ask(kube, "POST", "/nowhere", b'{"kind": "Pod"}' * 100, **{"Content-Type": "application/json"})[0]
        == 404
    )
    status, body = ask(kube, "GET", "/api/v1/namespaces/default")
    assert (status, json.loads(body)["metadata"]["name"]) == (200, "default")
    aws = connect(sandbox.sandbox.aws_endpoint)
    assert [ask(aws, "GET", "/_sandbox/info")[0] for _ in range(2)] == [200, 200]
    assert opened is not None
    assert kube.sock is opened
    assert aws.sock is not None


def test_a_chunked_body_and_a_chunked_answer_leave_the_connection_usable(sandbox: SandboxClient) -> None:
    kube = connect(sandbox.sandbox.kube_endpoint)
    config_map = json.dumps({"metadata": {"name": "settings"}, "data": {"mode": "fast"}}).encode()

    def in_pieces() -> Iterator[bytes]:
        yield config_map[:10]
        yield config_map[10:]

    path = "/api/v1/namespaces/default/configmaps"
    assert ask(kube, "POST", path, in_pieces(), **JSON)[0] == 201
    opened = kube.sock
    # A watch's answer has no length: it is chunked, and ends with the watch.
    status, events = ask(kube, "GET", f"{path}?watch=1&timeoutSeconds=1")
    assert status == 200
    assert [json.loads(line)["object"]["data"] for line in events.splitlines()] == [{"mode": "fast"}]
    status, body = ask(kube, "GET", f"{path}/settings")
    assert (status, json.loads(body)["data"]) == (200, {"mode": "fast"})
    assert opened is not None
    assert kube.sock is opened


def test_stopping_the_sandbox_closes_its_open_connections(sandbox: SandboxClient) -> None:
    kube = connect(sandbox.sandbox.kube_endpoint)
    assert ask(kube, "GET", "/version")[0] == 200
    assert kube.sock is not None
    sandbox.sandbox.stop()
    assert kube.sock.recv(1) == b""  # the server's end is closed: the client reads the end of the stream


def test_the_garbage_collector_leaves_a_serving_sandbox_alone_then_is_as_it_was() -> None:
    threshold = gc.get_threshold()
    sandbox = Sandbox(Scenario.model_validate({"timing": FROZEN_TIMING}))
    sandbox.start()
    try:
        # The world built at start is out of the collector's sight; young objects are collected rarely.
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] > threshold[0]
    finally:
        sandbox.stop()
    sandbox.stop()  # stopping twice changes nothing more
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
