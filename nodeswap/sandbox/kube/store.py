"""The object store behind the sandbox's Kubernetes API: objects, resourceVersions, history and watches.

Every object lives as the JSON the API serves. Each write takes the next resourceVersion (one
counter for the whole store, as etcd's revision) and is appended to a bounded history; a watch
resumes from any version still in the history and gets ``410 Expired`` for older ones. The store is
used under the sandbox's lock; watchers receive events through thread-safe queues. Inside
``dry_run()`` writes are computed but not committed.

Objects are kept by namespace, and by any key an index derives from them (pods by node, by owner, by
label...), updated on each write as the API server's watch cache indexers are, so that controllers
find the few objects a change concerns without scanning them all.
"""

from __future__ import annotations

import builtins
import queue
import random
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nodeswap.sandbox.clock import Clock
from nodeswap.sandbox.kube import errors
from nodeswap.sandbox.kube.clone import clone
from nodeswap.sandbox.kube.patch import merge_patch_sharing
from nodeswap.sandbox.kube.resources import Resource

_RANDOM = random.Random()
GENERATE_NAME_ATTEMPTS = 8
Object = dict[str, Any]
Matcher = Callable[[Object], bool]
Key = tuple[str, str]  # (namespace, name); the namespace is "" for cluster-scoped objects
IndexKeys = Callable[[Object], Iterable[Hashable]]


def rfc3339(clock: Clock) -> str:
    return clock.wall().strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Change:
    rv: int
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED
    object: Object
    old: Object | None


@dataclass(eq=False)
class Watcher:
    """One open watch: what it selects and the queue its events go to (None closes it)."""

    resource: Resource
    namespace: str | None
    matches: Matcher
    events: queue.SimpleQueue[tuple[str, Object] | None] = field(default_factory=queue.SimpleQueue)

    def offer(self, change: Change) -> None:
        # A filtered watch sees an object leave its selection as DELETED and enter it as ADDED,
        # as the API server's watch cache reports it (cacher's convertToWatchEvent).
        if change.type == "DELETED":
            if self._selects(change.object):
                self.events.put(("DELETED", change.object))
            return
        now = self._selects(change.object)
        before = change.old is not None and self._selects(change.old)
        if now and before:
            self.events.put(("MODIFIED", change.object))
        elif now:
            self.events.put(("ADDED", change.object))
        elif before and change.old is not None:
            # The object as the watcher last saw it (it no longer matches now), at the event's version.
            gone = {**change.old, "metadata": {**change.old["metadata"], "resourceVersion": str(change.rv)}}
            self.events.put(("DELETED", gone))

    def close(self) -> None:
        self.events.put(None)

    def _selects(self, obj: Object) -> bool:
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.matches(obj)


Listener = Callable[[Change], None]


class _Index:
    """Objects by the keys ``keys`` derives from each; every bucket keeps its objects in the order
    they entered it (an object changed in place keeps its place), as the store's own buckets do."""

    def __init__(self, keys: IndexKeys) -> None:
        self.keys = keys
        self.buckets: dict[Hashable, dict[Key, Object]] = {}
        self._keys_of: dict[Key, list[Hashable]] = {}  # the keys each object is indexed by now

    def update(self, key: Key, new: Object | None) -> None:
        """The object stored under ``key`` is now ``new`` (None: it is gone)."""
        before = self._keys_of.pop(key, [])
        after = [] if new is None else list(self.keys(new))
        if new is not None and before == after:  # most writes leave the keys as they were
            for value in after:
                self.buckets[value][key] = new
            self._keys_of[key] = after
            return
        for value in set(before) - set(after):
            bucket = self.buckets[value]
            del bucket[key]
            if not bucket:
                del self.buckets[value]
        if new is not None:
            for value in after:
                self.buckets.setdefault(value, {})[key] = new
            self._keys_of[key] = after


class Store:
    def __init__(self, clock: Clock, history_limit: int) -> None:
        self.clock = clock
        self._objects: dict[str, dict[Key, Object]] = {}
        self._by_namespace: dict[str, dict[str, dict[Key, Object]]] = {}
        self._indexes: dict[str, dict[str, _Index]] = {}
        self._rv = 0
        self._history: deque[Change] = deque(maxlen=history_limit)
        self._compacted = 0  # the newest resourceVersion no longer in the history
        self._watchers: set[Watcher] = set()
        self.listeners: list[Listener] = []
        self._dry_run = False

    @property
    def resource_version(self) -> int:
        return self._rv

    # ----- reads (return stored objects: callers must not mutate them) -------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Object:
        obj = self._bucket(resource).get((namespace, name))
        if obj is None:
            raise errors.not_found(resource, name)
        return obj

    def find(self, resource: Resource, namespace: str, name: str) -> Object | None:
        return self._bucket(resource).get((namespace, name))

    def list(self, resource: Resource, namespace: str | None = None) -> list[Object]:
        if namespace is None:
            return list(self._bucket(resource).values())
        return list(self._by_namespace.get(resource.key, {}).get(namespace, {}).values())

    def add_index(self, resource: Resource, name: str, keys: IndexKeys) -> None:
        """Keep ``resource``'s objects findable by every key ``keys(obj)`` yields (see ``indexed``)."""
        index = self._indexes.setdefault(resource.key, {})[name] = _Index(keys)
        for key, obj in self._bucket(resource).items():
            index.update(key, obj)

    def indexed(self, resource: Resource, name: str, key: Hashable) -> builtins.list[Object]:
        """The objects of ``resource`` for which index ``name`` yields ``key``."""
        bucket = self._indexes[resource.key][name].buckets.get(key)
        return list(bucket.values()) if bucket else []

    # ----- writes ----------------------------------------------------------------------------

    def create(self, resource: Resource, obj: Object) -> Object:
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "") if resource.namespaced else ""
        if resource.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            # A generated name already taken is drawn again, up to 8 attempts in all (the API server's
            # RetryGenerateName, on by default since Kubernetes 1.31).
            for _ in range(GENERATE_NAME_ATTEMPTS):
                meta["name"] = meta["generateName"] + _suffix()
                if (namespace, meta["name"]) not in self._bucket(resource):
                    break
        name = meta.get("name")
        if not name:
            raise errors.invalid(
                resource, "", "metadata.name: Required value: name or generateName is required"
            )
        if (namespace, name) in self._bucket(resource):
            raise errors.already_exists(resource, name)
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock)
        meta.pop("deletionTimestamp", None)
        if "spec" in obj:
            meta["generation"] = 1
        return self._commit(resource, "ADDED", obj, None)

    def update(self, resource: Resource, obj: Object, *, check_version: bool = True) -> Object:
        """Replace an object. A resourceVersion in ``obj`` must be the stored one (409 otherwise)."""
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "") if resource.namespaced else ""
        old = self.get(resource, namespace, meta.get("name", ""))
        given = meta.get("resourceVersion")
        if check_version and given and given != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource, meta["name"])
        return self._replace(resource, clone(obj), old)

    def _replace(self, resource: Resource, obj: Object, old: Object) -> Object:
        """Store ``obj`` in place of ``old``. ``obj`` is the store's from now on, and may share any part
        but its top level and metadata with ``old``: stored objects are never changed in place."""
        obj = {**obj, "metadata": {**obj["metadata"]}}
        meta = obj["metadata"]
        for immutable in ("uid", "creationTimestamp", "namespace"):
            if immutable in old["metadata"]:
                meta[immutable] = old["metadata"][immutable]
        if "deletionTimestamp" in old["metadata"]:
            meta["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
            meta["deletionGracePeriodSeconds"] = old["metadata"].get("deletionGracePeriodSeconds")
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        if "generation" in old["metadata"]:
            changed = obj.get("spec") != old.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        if "deletionTimestamp" in meta and not meta.get("finalizers") and resource.kind != "Pod":
            # The last finalizer is gone from an object being deleted: the registry deletes it instead
            # of storing the update, so watchers see one DELETED with its final state
            # (apiserver registry/generic/registry/store.go, Update -> deleteWithoutFinalizers).
            return self._commit(resource, "DELETED", obj, old)
        return self._commit(resource, "MODIFIED", obj, old)

    def modify(
        self, resource: Resource, namespace: str, name: str, change: Callable[[Object], None]
    ) -> Object:
        """Read, change and write back an object (for the simulated controllers)."""
        old = self.get(resource, namespace, name)
        obj = clone(old)
        change(obj)
        return self._replace(resource, obj, old)

    def merge(self, resource: Resource, namespace: str, name: str, changes: Object) -> Object:
        """Apply a JSON merge patch (RFC 7386: maps merge, None deletes, lists are replaced)."""
        old = self.get(resource, namespace, name)
        return self._replace(resource, merge_patch_sharing(old, changes), old)

    def remove(self, resource: Resource, namespace: str, name: str) -> Object:
        """Delete an object for good (graceful deletion is the API layer's concern)."""
        old = self.get(resource, namespace, name)
        # Stored objects are never changed in place (the history holds them): the deleted state is a
        # new top level and metadata, sharing the rest.
        return self._commit(resource, "DELETED", {**old, "metadata": {**old["metadata"]}}, old)

    @contextmanager
    def dry_run(self, enabled: bool = True) -> Iterator[None]:
        """Writes made inside are checked and computed as usual, then neither stored, versioned nor
        announced: the API server's ``dryRun=All`` ("all dry run stages will be processed", nothing
        persisted; https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run)."""
        previous, self._dry_run = self._dry_run, self._dry_run or enabled
        try:
            yield
        finally:
            self._dry_run = previous

    # ----- watches ---------------------------------------------------------------------------

    def watch(
        self, resource: Resource, namespace: str | None, matches: Matcher, since: int | None
    ) -> Watcher:
        """Open a watch. From ``since`` it replays later changes (410 if they are compacted away);
        without it, it first reports every current object as ADDED."""
        watcher = Watcher(resource, namespace, matches)
        if since is None:
            for obj in self.list(resource, namespace):
                if matches(obj):
                    watcher.events.put(("ADDED", obj))
        else:
            if since < self._compacted:
                raise errors.gone(f"too old resource version: {since} ({self._compacted + 1})")
            for change in self._history:
                if change.rv > since and change.resource is resource:
                    watcher.offer(change)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def cut_watches(self) -> int:
        """End every open watch, as an API server restart or a network cut would."""
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.close()
        return len(watchers)

    def changes_since(self, since: int) -> Iterator[Change]:
        return (change for change in self._history if change.rv > since)

    # ----- internals -------------------------------------------------------------------------

    def _bucket(self, resource: Resource) -> dict[Key, Object]:
        return self._objects.setdefault(resource.key, {})

    def _commit(self, resource: Resource, kind: str, obj: Object, old: Object | None) -> Object:
        meta = obj["metadata"]
        if self._dry_run:
            # The object as the write would leave it, at the version it has now (none if new).
            if old is None:
                meta.pop("resourceVersion", None)
            else:
                meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return obj
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (meta.get("namespace", ""), meta["name"])
        in_namespace = self._by_namespace.setdefault(resource.key, {}).setdefault(key[0], {})
        if kind == "DELETED":
            self._bucket(resource).pop(key, None)
            in_namespace.pop(key, None)
        else:
            self._bucket(resource)[key] = obj
            in_namespace[key] = obj
        for index in self._indexes.get(resource.key, {}).values():
            index.update(key, None if kind == "DELETED" else obj)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        change = Change(self._rv, resource, kind, obj, old)
        self._history.append(change)
        for watcher in list(self._watchers):
            if watcher.resource is resource:
                watcher.offer(change)
        for listener in self.listeners:
            listener(change)
        return obj


def _suffix() -> str:
    # generateName suffixes use the same alphabet as the API server: no vowels, no confusable digits;
    # like the API server's (math/rand), they need not be unpredictable.
    return "".join(_RANDOM.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
