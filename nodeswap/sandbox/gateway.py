"""The sandbox's AWS front door: a WSGI layer around moto's server.

Every AWS request passes through here: it is identified (service, operation, the parameters naming
its target), may be answered with an injected fault or, with IAM enforced (``iam``), refused as AWS
would refuse it, is otherwise served by moto under the sandbox's lock (so simulated timers never
interleave with a request), and is recorded. Paths under ``/_sandbox/`` are the sandbox's own admin
endpoints (report, info, faults, clock).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import TypeAdapter, ValidationError
from werkzeug.wrappers import Request, Response

from nodeswap.sandbox import iam
from nodeswap.sandbox.faults import render
from nodeswap.sandbox.record import is_mutating
from nodeswap.sandbox.scenario import FaultSpec

if TYPE_CHECKING:
    from nodeswap.sandbox.server import Sandbox

# Request parameters that say what an operation acts on (list members are folded to their base name).
TARGET_PARAMETERS = frozenset(
    {
        "AutoScalingGroupName",
        "AutoScalingGroupNames",
        "InstanceId",
        "InstanceIds",
        "LifecycleHookName",
        "LifecycleHookNames",
        "LaunchTemplateId",
        "LaunchTemplateName",
        "ImageId",
        "TargetGroupArn",
        "TargetGroupArns",
        "DesiredCapacity",
        "MinSize",
        "MaxSize",
        "ShouldDecrementDesiredCapacity",
        "LifecycleActionResult",
        "ScalingProcesses",
    }
)
_MEMBER = re.compile(r"(\.member)?\.\d+$")
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_FAULTS = TypeAdapter(list[FaultSpec])

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    target: dict[str, list[str]]


def identify(environ: dict[str, Any], body: bytes) -> AwsCall:
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else "unknown"
    amz_target = environ.get("HTTP_X_AMZ_TARGET", "")
    form = parse_qs(body.decode("utf-8", "replace")) if not amz_target else {}
    operation = amz_target.rpartition(".")[2] if amz_target else form.get("Action", ["unknown"])[0]
    target: dict[str, list[str]] = {}
    for key, values in form.items():
        base = _MEMBER.sub("", key)
        if base in TARGET_PARAMETERS:
            target.setdefault(base, []).extend(values)
    return AwsCall(service, operation, target)


class AwsGateway:
    def __init__(
        self, moto_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], sandbox: Sandbox
    ):
        self.moto_app = moto_app
        self.sandbox = sandbox

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith("/_sandbox/"):
            response = self.admin(Request(environ))
            return response(environ, start_response)
        started = time.monotonic()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = identify(environ, body)
        fault = self.sandbox.faults.draw("aws", call.operation)
        refused = render(call.service, fault) if fault is not None else None
        if refused is None:
            with self.sandbox.lock:  # the policies judged are those in force when moto serves it
                if self.sandbox.scenario.iam.enforce:
                    refused = iam.authorize(environ, body, call.service, call.operation)
                if refused is None:
                    status, chunks = self._serve(environ, start_response)
        if refused is not None:
            status, chunks, error = refused.status, [refused.body], refused.code
            start_response(f"{status} {'Injected' if fault else 'Refused'}", [("Content-Type", "text/xml")])
        else:
            error = None
            if status >= 400:
                match = _ERROR_CODE.search(b"".join(chunks))
                error = match.group(1).decode() if match else None
        self.sandbox.record.add(
            api="aws",
            service=call.service,
            operation=call.operation,
            mutating=is_mutating(call.operation),
            target=call.target,
            status=status,
            error=error,
            fault=fault,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            user_agent=environ.get("HTTP_USER_AGENT", ""),
        )
        return chunks

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> tuple[int, list[bytes]]:
        seen: list[str] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status)
            return start_response(status, headers, exc_info)

        with self.sandbox.lock:
            result = self.moto_app(environ, capture)
            try:
                chunks = list(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return int(seen[0].split()[0]), chunks

    def admin(self, request: Request) -> Response:
        route = (request.method, request.path.removeprefix("/_sandbox/").rstrip("/"))
        if route == ("GET", "report"):
            return _json(self.sandbox.report())
        if route == ("GET", "info"):
            return _json(self.sandbox.info())
        if route == ("GET", "faults"):
            return _json(_FAULTS.dump_python(self.sandbox.faults.rules(), mode="json"))
        if route == ("PUT", "faults"):
            try:
                rules = _FAULTS.validate_json(request.get_data())
            except ValidationError as exc:
                return _json({"error": str(exc)}, status=400)
            self.sandbox.faults.replace(rules)
            return _json(_FAULTS.dump_python(rules, mode="json"))
        if route == ("POST", "kube/cut-watches"):
            with self.sandbox.lock:
                return _json({"cut": self.sandbox.store.cut_watches()})
        if route == ("POST", "clock"):
            body = request.get_json(force=True, silent=True)
            advance = body.get("advance_seconds") if isinstance(body, dict) else None
            if not isinstance(advance, int | float) or advance < 0:
                return _json({"error": 'expected {"advance_seconds": <number >= 0>}'}, status=400)
            self.sandbox.scheduler.fast_forward(float(advance))
            return _json({"advanced_seconds": advance})
        return _json({"error": f"no sandbox endpoint {request.method} {request.path}"}, status=404)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")
