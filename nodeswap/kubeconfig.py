"""Loading the kubeconfig: its file (or KUBECONFIG's list of files, merged as kubectl merges them), the
context, and that context's cluster and user, checked as kubectl checks them before it connects. A file
that is not there, not YAML or not a kubeconfig, or a context, cluster, server or user it lacks, is a
UsageError saying which and how to fix it (exit 2): never a traceback, and never a connection to the
client's default address (``http://localhost``), which is where a cluster without a server would go.

kubectl's checks (client-go, tools/clientcmd/validation.go) and its words: ``context was not found for
specified context: X``, ``cluster "X" was not found for context "Y"``, ``no server found for cluster
"X"``, ``user "X" was not found for context "Y"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader, KubeConfigMerger

from nodeswap.errors import UsageError

DEFAULT = "~/.kube/config"
# What a problem in the file itself is fixed by.
_FIX_FILE = "fix the file, or pass --kubeconfig FILE (or set KUBECONFIG) for another"


@dataclass(frozen=True)
class Target:
    """The API server a kubeconfig points at, and where that was said: for the messages about it."""

    files: str  # as given: one path, or KUBECONFIG's list
    context: str
    server: str

    def describe(self) -> str:
        return f"context {self.context} of {self.files}"


def load(path: str | None, context: str | None, configuration: client.Configuration) -> Target:
    """Set ``configuration`` from the kubeconfig at ``path`` (None: KUBECONFIG, else ~/.kube/config) and
    its ``context`` (None: its current-context); a UsageError names what is wrong."""
    files = path or os.environ.get("KUBECONFIG") or DEFAULT
    merged = _read(files)
    data = merged.config.value
    name = context or data.get("current-context")
    contexts = _named(data, "contexts")
    if not name:
        raise UsageError(
            f"kubeconfig {files} sets no current-context", f"pass --context NAME ({_listed(contexts)})"
        )
    if name not in contexts:
        raise UsageError(
            f"context was not found for specified context: {name} (in kubeconfig {files})",
            f"pass --context NAME ({_listed(contexts)}; kubectl config get-contexts lists them)",
        )
    chosen = _mapping(contexts[name].get("context"))
    cluster_name, user_name = chosen.get("cluster"), chosen.get("user")
    cluster = _named(data, "clusters").get(cluster_name)
    if cluster is None:
        raise UsageError(f'cluster "{cluster_name}" was not found for context "{name}" in {files}', _FIX_FILE)
    server = _mapping(cluster.get("cluster")).get("server")
    if not server:
        raise UsageError(
            f'no server found for cluster "{cluster_name}" (context {name} of {files})',
            f"set the server of cluster {cluster_name} in {files} to its API server's address, as "
            "https://HOST:PORT",
        )
    if user_name is not None and user_name not in _named(data, "users"):
        raise UsageError(f'user "{user_name}" was not found for context "{name}" in {files}', _FIX_FILE)
    try:
        KubeConfigLoader(
            config_dict=merged.config,
            active_context=name,
            config_base_path=None,
            config_persister=merged.save_changes,  # a refreshed token is written back, as kubectl does
        ).load_and_set(configuration)
    except (ConfigException, OSError, TypeError, ValueError) as exc:  # a certificate file, base64 data
        raise UsageError(f"cannot use context {name} of kubeconfig {files}: {exc}", _FIX_FILE) from exc
    return Target(files, name, str(server))


def _read(files: str) -> Any:
    """The files merged (KubeConfigMerger: kubectl's rules; the first to name an entry wins)."""
    try:
        merged = KubeConfigMerger(files)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else files
        problem = getattr(exc, "problem", None) or exc
        raise UsageError(f"kubeconfig {where}: not valid YAML: {problem}", _FIX_FILE) from exc
    except OSError as exc:
        where = exc.filename or files
        raise UsageError(f"cannot read kubeconfig {where}: {exc.strerror}", _FIX_FILE) from exc
    except (ConfigException, AttributeError, KeyError, TypeError) as exc:  # empty, or not a mapping
        raise UsageError(
            f"{files} is not a kubeconfig: a YAML mapping of clusters, contexts and users (each with a name)",
            _FIX_FILE,
        ) from exc
    if merged.config is None:
        raise UsageError(
            f"no kubeconfig at {files}",
            "pass --kubeconfig FILE or set KUBECONFIG (kubectl config view shows the one kubectl uses)",
        )
    return merged


def _named(data: dict[str, Any], kind: str) -> dict[Any, dict[str, Any]]:
    """A kubeconfig list (clusters, contexts, users) by name; the merger keeps each entry in a node."""
    entries = [getattr(entry, "value", entry) for entry in data.get(kind) or []]
    return {entry.get("name"): entry for entry in entries if isinstance(entry, dict)}


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _listed(contexts: dict[Any, dict[str, Any]]) -> str:
    return f"its contexts: {', '.join(map(str, contexts))}" if contexts else "it has no contexts"
