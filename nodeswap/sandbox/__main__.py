"""Entry point of a detached sandbox process (started by `nodeswap sandbox up --detach`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from nodeswap.sandbox.process import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m nodeswap.sandbox")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--scenario", type=Path)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--enforce-iam", action="store_true")
    args = parser.parse_args()

    def ready(state: dict[str, Any]) -> None:
        with os.fdopen(args.ready_fd, "wb") as pipe:
            pipe.write(json.dumps(state).encode())

    serve(args.scenario, args.dir, ready, enforce_iam=args.enforce_iam)


if __name__ == "__main__":
    main()
