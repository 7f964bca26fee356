"""The sandbox's HTTP servers keep a connection open between requests (HTTP/1.1 keep-alive), whatever
the request before left unread or however its answer was framed, and close it when they stop; while a
sandbox serves, the garbage collector leaves its world alone."""

from __future__ import annotations

import gc
import http.client
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from nodeswap.sandbox.scenario import Scenario
from nodeswap.sandbox.server import Sandbox, _ThreadedServer
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


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """A WSGI app answering with what it was given: the request's headers, path and body."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = {key: value for key, value in environ.items() if key.startswith(("HTTP_", "CONTENT_", "PATH_"))}
    answer = json.dumps({**seen, "body": body.decode()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return b"\n".join([head.split(b"\r\n")[0], body])  # the status line and the body (no Date)


HEADERS = [f"X-{n}: v\r\n".encode() for n in range(100)]


@pytest.mark.parametrize(
    "request_",
    [
        b"POST //a/b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        b"GET /folded HTTP/1.1\r\nX-Long: a\r\n  b\r\n\tc\r\n first\r\nConnection: close\r\n\r\n",
        b"GET /stray HTTP/1.1\r\n:nameless\r\nNot a header\r\nX-Ignored: 1\r\n\r\n",
        b"GET /twice HTTP/1.1\r\nX-Dup: 1\r\nx-dup: 2\r\nX_Under: 3\r\nX-Pad:   p  \r\n\r\n",
        b"GET /bare-lf HTTP/1.1\nHost: h\nConnection: close\n\n",
        b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n",
        b"GET /oldest\r\n",
        b"GET /99 HTTP/1.1\r\n" + b"".join(HEADERS[:98]) + b"Connection: close\r\n\r\n",
        b"GET /100 HTTP/1.1\r\n" + b"".join(HEADERS[:99]) + b"Connection: close\r\n\r\n",
        b"GET /long HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"GET /next HTTP/2.0\r\n\r\n",
    ],
)
def test_requests_are_read_as_http_server_reads_them(request_: bytes) -> None:
    """The sandbox reads request headers with its own code: what an app sees, and the errors for what
    is too long or too many, are what werkzeug's server over http.server's parsing gives."""
    ours, theirs = _ThreadedServer("127.0.0.1", 0, echo), make_server("127.0.0.1", 0, echo, threaded=True)
    for server in (ours, theirs):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert exchange(ours.server_port, request_) == exchange(theirs.server_port, request_)
    finally:
        for server in (ours, theirs):
            server.shutdown()
            server.server_close()
