"""Reading a YAML file of settings into a pydantic model, with errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from nodeswap.errors import UsageError

M = TypeVar("M", bound=BaseModel)


def load_mapping(
    path: Path, *, kind: str, fields: str, option: str, example: str, error: type[UsageError]
) -> dict[str, Any]:
    """The file's top-level mapping (empty for an empty file), or ``error`` saying what is wrong."""
    try:
        data: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(
            f"cannot read {kind} file {path}: {exc.strerror}", f"check the path given to {option}"
        ) from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}", "fix the YAML syntax at the position shown") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of {fields}, got {type(data).__name__}", f"see {example}")
    return data


def validated(
    model: type[M], data: dict[str, Any], path: Path, *, label: str, example: str, error: type[UsageError]
) -> M:
    """``data`` as ``model``, or ``error`` listing each invalid ``label`` (field, key) and what it expects."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(
            f"{path}: invalid {label}s:\n{describe(exc, label)}", f"see {example} for every {label}"
        ) from exc


def describe(exc: ValidationError, label: str) -> str:
    lines = []
    for problem in exc.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        # Echo scalar inputs only: a whole mapping says nothing the key does not.
        scalar = problem["type"] != "missing" and not isinstance(problem["input"], dict | list)
        got = f" (got {problem['input']!r})" if scalar else ""
        lines.append(f"  {label} {where}: {message}{got}")
    return "\n".join(lines)
