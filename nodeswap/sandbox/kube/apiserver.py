"""The sandbox's Kubernetes API server: the REST API that kubectl and the Python client speak, in JSON.

Routes: discovery (/api, /apis, /version, /openapi/v3), and for every served resource the collection
and item paths with get, list, watch, create, update, patch and delete, the status and scale
subresources, and pods/eviction. Reads and writes run under the sandbox's lock; a watch waits for its
events outside it. ``dryRun=All`` runs a write through the same code without committing it. Every
request is recorded (the sandbox's own controllers write to the store directly and are not), and chosen
requests can be answered with injected faults.
"""

from __future__ import annotations

import base64
import json
import queue
import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
from werkzeug.wrappers import Request, Response

from nodeswap.sandbox.kube import discovery, errors, tables, validation
from nodeswap.sandbox.kube.cluster import Cluster
from nodeswap.sandbox.kube.controllers import NODE
from nodeswap.sandbox.kube.patch import PATCH_CONTENT_TYPES, PatchError
from nodeswap.sandbox.kube.resources import BY_KEY, NAMESPACES, PODS, Resource
from nodeswap.sandbox.kube.selectors import (
    SelectorError,
    check_supported,
    field_selector_value,
    parse_field_selector,
    parse_label_selector,
)
from nodeswap.sandbox.kube.store import Object, Store, Watcher

if TYPE_CHECKING:
    from nodeswap.sandbox.server import Sandbox

MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
MAX_WATCH_SECONDS = 1800
BOOKMARK_SECONDS = 5.0
HANGUP_CHECK_SECONDS = 1.0  # how soon a watch whose client left frees its thread
StartResponse = Callable[..., Any]


class Route:
    """A resource request: which resource, where, and what to do."""

    def __init__(self, resource: Resource, namespace: str | None, name: str | None, sub: str | None) -> None:
        self.resource, self.namespace, self.name, self.subresource = resource, namespace, name, sub

    @property
    def path(self) -> str:
        return f"{self.resource.plural}/{self.subresource}" if self.subresource else self.resource.plural


def parse_route(path: str) -> Route | None:
    parts = [unquote(part) for part in path.strip("/").split("/")]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = BY_KEY.get(f"{group}/{rest[0]}")
    if resource is None or (namespace is not None and not resource.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in resource.subresources:
        return None
    return Route(resource, namespace, name, sub)


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    if method == "GET":
        if _flag(query.get("watch")):
            return "watch"
        return "get" if route.name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(
        method, "delete" if route.name else "deletecollection"
    )


class KubeApi:
    def __init__(self, sandbox: Sandbox, store: Store, cluster: Cluster) -> None:
        self.sandbox, self.store, self.cluster = sandbox, store, cluster

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        started = time.monotonic()
        route = parse_route(request.path)
        query = {key: request.args.get(key, "") for key in request.args}
        verb = verb_of(request.method, route, query) if route else request.method.lower()
        fault = self._fault(verb, route)
        if fault == "drop":
            self._drop(environ)
            response = Response(b"", status=500)
        elif fault is not None:
            response = _fault_response(fault)
        else:
            try:
                response = self._serve(request, route, verb, query)
            except errors.ApiError as exc:
                response = _status_response(exc)
        self.sandbox.record.add(
            api="kube",
            service=route.resource.group or "core" if route else "",
            operation=verb,
            mutating=verb in MUTATING_VERBS,
            target={},
            status=response.status_code,
            error=_reason(response),
            fault=fault,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            user_agent=request.headers.get("User-Agent", ""),
            resource=route.resource.plural if route else request.path,
            subresource=route.subresource if route else None,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
        )
        return response(environ, start_response)

    # ----- dispatch ----------------------------------------------------------------------------

    def _serve(self, request: Request, route: Route | None, verb: str, query: dict[str, str]) -> Response:
        if route is None:
            document = discovery.document(request.path)
            if document is None:
                raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
            return _json(document)
        if route.subresource == "eviction" and verb != "create":
            # pods/eviction serves POST only (the eviction REST storage is a Creater and nothing else).
            raise errors.ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {}
            )
        if verb == "watch":
            return self._watch(route, query, request.environ.get("werkzeug.socket"))
        dry_run = verb in MUTATING_VERBS and _dry_run(request.args.getlist("dryRun"), verb)
        with self.sandbox.lock, self.store.dry_run(dry_run):
            if verb == "list":
                return self._list(request, route, query)
            if verb == "get":
                return self._respond(request, route, self._get(route))
            if verb == "create":
                return self._create(route, _body(request))
            if verb == "update":
                return _json(self._write(route, _body(request), check_version=True))
            if verb == "patch":
                return _json(self._patch(request, route))
            if verb == "delete":
                return self._delete(route, request, query)
        raise errors.ApiError(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")

    # ----- reads -------------------------------------------------------------------------------

    def _get(self, route: Route) -> Object:
        obj = self.store.get(route.resource, route.namespace or "", route.name or "")
        if route.subresource == "scale":
            return _scale(obj)
        return obj

    def _list(self, request: Request, route: Route, query: dict[str, str]) -> Response:
        matches = self._selector(route, query)
        items = sorted(
            (obj for obj in self._candidates(route, query) if matches(obj)),
            key=lambda obj: (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]),
        )
        metadata: dict[str, Any] = {"resourceVersion": str(self.store.resource_version)}
        start = _decode_continue(query.get("continue", ""))
        if start:
            items = [
                obj
                for obj in items
                if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) > start
            ]
        limit = int(query.get("limit") or 0)
        if 0 < limit < len(items):
            last = items[limit - 1]["metadata"]
            metadata["continue"] = _encode_continue((last.get("namespace", ""), last["name"]))
            metadata["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        listing = {
            "kind": f"{route.resource.kind}List",
            "apiVersion": route.resource.api_version,
            "metadata": metadata,
            "items": items,
        }
        return self._respond(request, route, listing)

    def _candidates(self, route: Route, query: dict[str, str]) -> list[Object]:
        """The objects a list may return: the pods of one node when the field selector names it (as
        kubectl drain's does), from the store's index; else all of the resource in the namespace."""
        selector = query.get("fieldSelector")
        node = field_selector_value(selector, "spec.nodeName") or field_selector_value(selector, "spec.host")
        if route.resource is PODS and node:
            pods = self.store.indexed(PODS, NODE, node)
            return [p for p in pods if route.namespace in (None, p["metadata"]["namespace"])]
        return self.store.list(route.resource, route.namespace)

    def _respond(self, request: Request, route: Route, obj: Object) -> Response:
        if tables.wants_table(request.headers.get("Accept", "")):
            include = request.args.get("includeObject", "Metadata")
            return _json(
                tables.table(route.resource, obj, self.store.clock, include), tables.TABLE_CONTENT_TYPE
            )
        return _json(obj)

    def _selector(self, route: Route, query: dict[str, str]) -> Callable[[Object], bool]:
        try:
            check_supported(route.resource.plural, query.get("fieldSelector"))
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc
        if not query.get("labelSelector") and not query.get("fieldSelector"):
            return _everything  # a watch of everything is offered every change: no matching to do
        return lambda obj: labels(obj["metadata"].get("labels") or {}) and fields(obj)

    def _watch(self, route: Route, query: dict[str, str], connection: Any) -> Response:
        matches = self._selector(route, query)
        since_text = query.get("resourceVersion", "")
        since = int(since_text) if since_text not in ("", "0") else None
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        with self.sandbox.lock:
            try:
                watcher = self.store.watch(route.resource, route.namespace, matches, since)
            except errors.ApiError as exc:
                # A watch from a compacted version is accepted, then ends with an ERROR event (410).
                error = _line({"type": "ERROR", "object": exc.status()})
                return Response([error], mimetype="application/json")
        stream = self._stream(route.resource, watcher, timeout, bookmarks, connection)
        return Response(stream, mimetype="application/json", direct_passthrough=True)

    def _stream(
        self, resource: Resource, watcher: Watcher, timeout: float, bookmarks: bool, connection: Any
    ) -> Iterator[bytes]:
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + BOOKMARK_SECONDS
        try:
            yield b""  # send the headers now: clients wait for them before they count the watch as open
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = watcher.events.get(timeout=min(remaining, HANGUP_CHECK_SECONDS))
                except queue.Empty:
                    if _hung_up(connection):
                        return
                    if bookmarks and time.monotonic() >= next_bookmark:
                        bookmark = self._bookmark(resource, watcher)
                        if bookmark is not None:
                            next_bookmark = time.monotonic() + BOOKMARK_SECONDS
                            yield _line({"type": "BOOKMARK", "object": bookmark})
                    continue
                # The events queued by now go out in one write, in order.
                lines = []
                while event is not None:
                    kind, obj = event
                    lines.append(_line({"type": kind, "object": obj}))
                    try:
                        event = watcher.events.get_nowait()
                    except queue.Empty:
                        break
                if lines:
                    yield b"".join(lines)
                if event is None:
                    return
        finally:
            with self.sandbox.lock:
                self.store.unwatch(watcher)

    def _bookmark(self, resource: Resource, watcher: Watcher) -> Object | None:
        """A bookmark at the store's version, or None while an event is still queued for the watcher.

        Events are queued under the sandbox's lock as they are committed, so an empty queue read under
        the lock means every change up to this version has been sent: the bookmark cannot overtake
        one (the watch cache sends a bookmark only between events, at the version they reached)."""
        with self.sandbox.lock:
            if not watcher.events.empty():
                return None
            version = str(self.store.resource_version)
        return {
            "kind": resource.kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": version},
        }

    # ----- writes ------------------------------------------------------------------------------

    def _create(self, route: Route, body: Object) -> Response:
        if route.resource is PODS and route.subresource == "eviction":
            # An Eviction carries DeleteOptions, whose dryRun counts as the request's own.
            options = body.get("deleteOptions") or {}
            with self.store.dry_run(_dry_run(options.get("dryRun") or [], "delete")):
                evicted = self.cluster.evict(route.namespace or "", route.name or "", body)
            return _json(evicted, status=201)
        if route.name is not None:
            raise errors.ApiError(405, "MethodNotAllowed", "POST is only allowed on a collection")
        meta = body.setdefault("metadata", {})
        if route.resource.namespaced:
            namespace = route.namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            self.store.get(NAMESPACES, "", namespace)  # 404 for a namespace that does not exist
        self._check_kind(route.resource, body)
        defaulted = self.cluster.defaulted(route.resource, body)
        validation.validate(route.resource, defaulted)
        created = self.store.create(route.resource, defaulted)
        return _json(created, status=201)

    def _write(self, route: Route, body: Object, *, check_version: bool) -> Object:
        """An update (PUT) of the object or of its status or scale subresource."""
        meta = body.setdefault("metadata", {})
        if meta.get("name") not in (None, route.name):
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({route.name})"
            )
        meta["name"] = route.name
        if route.resource.namespaced:
            meta["namespace"] = route.namespace
        current = self.store.get(route.resource, route.namespace or "", route.name or "")
        if route.subresource == "scale":
            replicas = body.get("spec", {}).get("replicas")
            if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
                raise errors.conflict(route.resource, route.name or "")
            scaled = {"spec": {"replicas": replicas}}
            return _scale(self.store.merge(route.resource, route.namespace or "", route.name or "", scaled))
        if route.subresource == "status":
            # The store copies what it is given: the current object's parts are shared, not changed.
            merged = {**current, "metadata": {**current["metadata"]}, "status": body.get("status", {})}
            merged["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        else:
            self._check_kind(route.resource, body)
            merged = body
            if route.resource.has_status:
                merged["status"] = current.get("status", {})  # the status subresource owns it
            validation.validate(route.resource, merged)
        return self.store.update(route.resource, merged, check_version=check_version)

    def _patch(self, request: Request, route: Route) -> Object:
        content_type = request.mimetype
        apply = PATCH_CONTENT_TYPES.get(content_type)
        if apply is None:
            raise errors.ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(PATCH_CONTENT_TYPES),
            )
        current = self._get(route)
        try:
            # Every patch function works on a copy of the document: the stored object stays as it is.
            patched = apply(current, json.loads(request.get_data() or b"null"), route.resource.kind)
        except (PatchError, ValueError) as exc:
            raise errors.ApiError(
                422 if isinstance(exc, PatchError) else 400,
                "Invalid" if isinstance(exc, PatchError) else "BadRequest",
                str(exc),
            ) from exc
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        given = patched.get("metadata", {}).get("resourceVersion")
        # A patch is unconditional unless it names a resourceVersion itself.
        check = given is not None and given != current["metadata"].get("resourceVersion")
        if check:
            raise errors.conflict(route.resource, route.name or "")
        return self._write(route, patched, check_version=False)

    def _delete(self, route: Route, request: Request, query: dict[str, str]) -> Response:
        options = _body(request) if request.get_data() else {}
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        with self.store.dry_run(_dry_run(options.get("dryRun") or [], "delete")):
            result = self.cluster.delete(route.resource, route.namespace or "", route.name or "", options)
        return _json(result)

    @staticmethod
    def _check_kind(resource: Resource, body: Object) -> None:
        kind = body.get("kind")
        if kind not in (None, resource.kind):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {resource.kind}): {kind}"
            )

    # ----- faults ------------------------------------------------------------------------------

    def _fault(self, verb: str, route: Route | None) -> str | None:
        names = [verb] if route is None else [verb, route.path, f"{verb}:{route.path}"]
        return self.sandbox.faults.draw("kube", *names)

    @staticmethod
    def _drop(environ: dict[str, Any]) -> None:
        """Close the connection without an answer, as a network failure would."""
        connection = environ.get("werkzeug.socket")
        if isinstance(connection, socket.socket):
            connection.shutdown(socket.SHUT_RDWR)


def _fault_response(kind: str) -> Response:
    if kind == "throttle":
        # API Priority and Fairness rejects in plain text with Retry-After, not with a Status.
        response = Response("Too many requests, please try again later.\n", status=429, mimetype="text/plain")
        response.headers["Retry-After"] = "1"
        return response
    if kind == "unavailable":
        return _status_response(
            errors.ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        )
    return _status_response(
        errors.ApiError(500, "InternalError", "Internal error occurred: injected by the sandbox")
    )


def _status_response(error: errors.ApiError) -> Response:
    response = _json(error.status(), status=error.code)
    retry_after = (error.details or {}).get("retryAfterSeconds")
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _reason(response: Response) -> str | None:
    if response.status_code < 400 or response.is_streamed:
        return None
    try:
        reason = json.loads(response.get_data()).get("reason")
    except ValueError:
        return response.get_data(as_text=True).strip() or None
    return str(reason) if reason else None


def _json(data: Any, content_type: str = "application/json", status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status=status, content_type=content_type)


_OPTIONS_KIND = {"create": "CreateOptions", "update": "UpdateOptions", "patch": "PatchOptions"}


def _dry_run(values: list[str], verb: str) -> bool:
    """The dryRun option: ["All"] makes the request a dry run; any other value is refused, as the
    API server's ValidateDryRun does (apimachinery pkg/apis/meta/v1/validation)."""
    if not values:
        return False
    if all(value == "All" for value in values):
        return True
    kind = _OPTIONS_KIND.get(verb, "DeleteOptions")
    shown = ", ".join(json.dumps(value) for value in values)
    raise errors.ApiError(
        422,
        "Invalid",
        f'{kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{{{shown}}}: '
        'supported values: "All"',
        {"kind": kind, "group": "meta.k8s.io"},
    )


def _everything(_obj: Object) -> bool:
    return True


def _flag(value: str | None) -> bool:
    """A boolean query parameter, parsed as Go's strconv.ParseBool does."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _hung_up(connection: Any) -> bool:
    """True once the client closed its end (a readable socket with nothing to read)."""
    if not isinstance(connection, socket.socket):
        return False
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _line(event: Object) -> bytes:
    return msgspec.json.encode(event) + b"\n"


def _body(request: Request) -> Object:
    if "protobuf" in request.mimetype:
        raise errors.ApiError(
            415,
            "UnsupportedMediaType",
            "the sandbox's API server accepts JSON request bodies only, not protobuf",
        )
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON object")
    return body


def _scale(obj: Object) -> Object:
    meta = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
        "status": {"replicas": obj.get("status", {}).get("replicas", 0)},
    }


def _encode_continue(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc
    return str(namespace), str(name)
