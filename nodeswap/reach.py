"""Telling an endpoint that cannot be reached at all from a passing fault.

An endpoint (AWS's, the Kubernetes API server's) that has not answered once since the command began, and
now refuses the connection, lets it time out, has a name that does not resolve or fails the TLS
handshake, is a wrong address or a network in the way: trying again does not help, and a minute of
retries is a minute of silence. So each adapter raises ``errors.Unreachable`` at once for such a first
contact, as kubectl does, naming the endpoint and the fix. Once the endpoint has
answered, a connection that fails is a passing fault, retried as ``nodeswap.retry`` says (the API
server restarting, a connection dropped mid-rollout).
"""

from __future__ import annotations

import socket
import ssl

# How long a connection may take to be accepted. An endpoint that takes longer is not there; the SDKs'
# defaults (botocore's 60 s, none for the Kubernetes client) are that long a silence before the error.
CONNECT_TIMEOUT = 5.0


def failure(error: BaseException) -> str:
    """Why a connection could not be made, in a few words, from the error the operating system gave
    under the SDKs' wrappers (urllib3 keeps it as the cause or in ``reason``, botocore in its
    ``kwargs["error"]``)."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        found = pending.pop(0)
        if id(found) in seen:
            continue
        seen.add(id(found))
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, socket.gaierror):
            return f"its host name does not resolve ({found.strerror})"
        if isinstance(found, ssl.SSLError):
            return f"the TLS handshake failed ({found.reason or found})"
        if isinstance(found, TimeoutError):
            return f"no answer within {CONNECT_TIMEOUT:.0f} s"
        inner = (found.__cause__, found.__context__, getattr(found, "reason", None))
        wrapped = getattr(found, "kwargs", {}).get("error")  # botocore's
        pending += [e for e in (*inner, wrapped) if isinstance(e, BaseException)]
    return str(error)
