"""Label and field selectors, parsed, validated and matched as kube-apiserver 1.27-1.33 does it.

Transcribed from k8s.io/apimachinery: ``pkg/labels/selector.go`` (the ``?labelSelector=`` grammar and
its errors), ``pkg/util/validation`` (label key and value rules), ``pkg/apis/meta/v1/helpers.go``
(``LabelSelectorAsSelector``) and ``pkg/fields/selector.go`` (the ``?fieldSelector=`` grammar); and
from k8s.io/kubernetes: ``pkg/apis/*/v1/conversion.go`` (the field labels each kind accepts) and
``pkg/registry/*/*/strategy.go`` (the value each field label is matched against). Error messages are
the server's own, since clients show them verbatim after "Error from server (BadRequest):".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any


class SelectorError(ValueError):
    """An unparsable selector; the message is what kube-apiserver says (it becomes a 400 BadRequest)."""


Matcher = Callable[[dict[str, str]], bool]
ObjectMatcher = Callable[[dict[str, Any]], bool]

# --- Label keys and values (pkg/util/validation/validation.go) ---------------------------------------

_QNAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
_LABEL_VALUE = f"({_QNAME})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(message: str, pattern: str, *examples: str) -> str:
    # Go's RegexError; the doubled spaces in "'MyName',  or" are the server's.
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{pattern}')"


def _too_long(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _go_quote(text: str) -> str:
    # Go's %q; identical for printable text, which is all a selector that got this far contains.
    return json.dumps(text, ensure_ascii=False)


def _label_key_errors(key: str) -> list[str]:
    """validation.IsQualifiedName. Lengths are in bytes, as Go counts them."""
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QNAME_MSG, _QNAME, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errors.append("prefix part " + _too_long(253))
            if not re.fullmatch(_DNS1123_SUBDOMAIN, prefix):
                errors.append(
                    "prefix part " + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN, "example.com")
                )
    if not name:
        errors.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errors.append("name part " + _too_long(63))
    if not re.fullmatch(_QNAME, name):
        errors.append("name part " + _regex_error(_QNAME_MSG, _QNAME, "MyName", "my.name", "123-abc"))
    return errors


def _label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue."""
    errors = [_too_long(63)] if len(value.encode()) > 63 else []
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE, "MyValue", "my_value", "12345"))
    return errors


def _invalid(path: str, shown: str, details: list[str]) -> str:
    """A field.Invalid error as text; ``shown`` is the bad value already rendered."""
    return f"{path}: Invalid value: {shown}: {'; '.join(details)}"


# --- Requirements (pkg/labels/selector.go) -------------------------------------------------------------

# Operators by their selection.Operator spelling, which is what error messages print.
_IN, _NOT_IN, _EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS = "in", "notin", "=", "==", "!="
_GT, _LT, _EXISTS, _DOES_NOT_EXIST = "gt", "lt", "exists", "!"
_BINARY_OPERATORS = (_IN, _NOT_IN, _EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS, _GT, _LT)
_OPERATOR_TOKENS = {
    "in": _IN,
    "notin": _NOT_IN,
    "=": _EQUALS,
    "==": _DOUBLE_EQUALS,
    "!=": _NOT_EQUALS,
    ">": _GT,
    "<": _LT,
}

Requirement = tuple[str, str, tuple[str, ...]]  # key, operator, values

_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), which (unlike int()) takes no spaces or underscores."""
    if not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


def _new_requirement(key: str, operator: str, values: Sequence[str]) -> Requirement:
    """labels.NewRequirement: every violation is collected, then reported as one aggregate error."""
    errors = []
    if key_errors := _label_key_errors(key):
        errors.append(_invalid("key", _go_quote(key), key_errors))
    # The values list is JSON-encoded; Go encodes the nil slice that an empty list becomes as null.
    shown = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False) if values else "null"
    if operator in (_IN, _NOT_IN) and not values:
        errors.append(_invalid("values", shown, ["for 'in', 'notin' operators, values set can't be empty"]))
    elif operator in (_EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS) and len(values) != 1:
        errors.append(_invalid("values", shown, ["exact-match compatibility requires one single value"]))
    elif operator in (_EXISTS, _DOES_NOT_EXIST) and values:
        errors.append(_invalid("values", shown, ["values set must be empty for exists and does not exist"]))
    elif operator in (_GT, _LT):
        if len(values) != 1:
            errors.append(
                _invalid("values", shown, ["for 'Gt', 'Lt' operators, exactly one value is required"])
            )
        errors += [
            _invalid(f"values[{i}]", _go_quote(v), ["for 'Gt', 'Lt' operators, the value must be an integer"])
            for i, v in enumerate(values)
            if _parse_int64(v) is None
        ]
    for i, value in enumerate(values):
        if value_errors := _label_value_errors(value):
            errors.append(_invalid(f"values[{i}][{key}]", _go_quote(value), value_errors))
    if errors:
        # utilerrors.NewAggregate: duplicates dropped, brackets only around more than one error.
        unique = list(dict.fromkeys(errors))
        raise SelectorError(unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]")
    return key, operator, tuple(values)


def _requirement_matches(requirement: Requirement, labels: dict[str, str]) -> bool:
    key, operator, values = requirement
    if operator in (_IN, _EQUALS, _DOUBLE_EQUALS):
        return key in labels and labels[key] in values
    if operator in (_NOT_IN, _NOT_EQUALS):
        return key not in labels or labels[key] not in values
    if operator == _EXISTS:
        return key in labels
    if operator == _DOES_NOT_EXIST:
        return key not in labels
    have = _parse_int64(labels[key]) if key in labels else None
    if have is None:
        return False
    want = int(values[0])
    return have > want if operator == _GT else have < want


def _all_of(requirements: list[Requirement]) -> Matcher:
    def matches(labels: dict[str, str]) -> bool:
        for requirement in requirements:  # noqa: SIM110 - all() over a generator costs twice as much
            if not _requirement_matches(requirement, labels):
                return False
        return True

    return matches


# --- The ?labelSelector= string -----------------------------------------------------------------------

_SPACE = " \t\r\n"
_SYMBOLS = "=!(),><"
# Token kinds are their literal, except identifiers ("id") and the end of the string ("end").
_LITERAL_KINDS = frozenset(["(", ")", ",", "!", "=", "==", "!=", ">", "<", "in", "notin"])
_TOKEN = re.compile(rf"[{_SPACE}]*(?:(!=|==|[{re.escape(_SYMBOLS)}])|([^{_SPACE}{re.escape(_SYMBOLS)}]+))")


def _lex(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while match := _TOKEN.match(text, position):
        literal = match.group(1) or match.group(2)
        tokens.append((literal if literal in _LITERAL_KINDS else "id", literal))
        position = match.end()
    tokens.append(("end", ""))
    return tokens


class _LabelParser:
    """A port of the Go parser, kept close to it so that every error surfaces at the same token."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._position = 0

    def _peek(self) -> tuple[str, str]:
        # Outside operator position "in" and "notin" are plain identifiers: "in in (in)" is valid.
        kind, literal = self._tokens[self._position]
        return ("id" if kind in ("in", "notin") else kind), literal

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        self._position += 1
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._peek()
            if kind == "end":
                return requirements
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as error:
                raise SelectorError(f"unable to parse requirement: {error}") from None
            kind, literal = self._take()
            if kind == "end":
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._peek()
            if kind not in ("id", "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        kind, key = self._take()
        negated = kind == "!"
        if negated:
            kind, key = self._take()
        if kind != "id":
            raise SelectorError(f"found '{key}', expected: identifier")
        if key_errors := _label_key_errors(key):
            # The parser has no field path, and a nil *field.Path prints as <nil>.
            raise SelectorError(_invalid("<nil>", _go_quote(key), key_errors))
        # "!key" ends the requirement whatever follows, which then fails as a stray token.
        if negated:
            return _new_requirement(key, _DOES_NOT_EXIST, [])
        if self._peek()[0] in ("end", ","):
            return _new_requirement(key, _EXISTS, [])
        kind, literal = self._tokens[self._position]  # operator position: "in" is the keyword here
        self._position += 1
        operator = _OPERATOR_TOKENS.get(kind)
        if operator is None:
            raise SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self._value_set() if operator in (_IN, _NOT_IN) else self._exact_value()
        return _new_requirement(key, operator, sorted(values))  # Go collects values in a sorted set

    def _value_set(self) -> set[str]:
        kind, literal = self._take()
        if kind != "(":
            raise SelectorError(f"found '{literal}' expected: '('")
        kind, literal = self._peek()
        if kind == ")":  # "()" is the set holding just the empty string
            self._take()
            return {""}
        if kind not in ("id", ","):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values: set[str] = set()
        while True:
            kind, literal = self._take()
            if kind == "id":
                values.add(literal)
                after, after_literal = self._peek()
                if after == ")":
                    self._take()
                    return values
                if after != ",":
                    raise SelectorError(f"found '{after_literal}', expected: ',' or ')'")
            elif kind == ",":
                # Empty entries are empty-string values. A ",," also swallows the comma after it,
                # so "(a,,)" is an error through 1.33 (kubernetes#133419 changes that later).
                if not values:
                    values.add("")
                after = self._peek()[0]
                if after == ")":
                    self._take()
                    values.add("")
                    return values
                if after == ",":
                    self._take()
                    values.add("")
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> list[str]:
        if self._peek()[0] in ("end", ","):  # "a=" selects the empty value
            return [""]
        kind, literal = self._take()
        if kind != "id":
            raise SelectorError(f"found '{literal}', expected: identifier")
        return [literal]


def parse_label_selector(text: str | None) -> Matcher:
    """A ``?labelSelector=`` string (``a=b``, ``a!=b``, ``a in (x,y)``, ``!a``, ``a>3``, ...), as a
    matcher over an object's labels; empty or None matches everything."""
    return _all_of(_LabelParser(text or "").parse())


# --- metav1.LabelSelector objects ---------------------------------------------------------------------

_EXPRESSION_OPERATORS = {"In": _IN, "NotIn": _NOT_IN, "Exists": _EXISTS, "DoesNotExist": _DOES_NOT_EXIST}


def label_selector_matcher(selector: dict[str, Any] | None, *, none_matches: bool) -> Matcher:
    """A metav1.LabelSelector object as a matcher, per LabelSelectorAsSelector.

    An empty selector ``{}`` matches everything. LabelSelectorAsSelector turns a nil selector into
    labels.Nothing(), and policy/v1 relies on it: "A null selector will match no pods, while an empty
    ({}) selector will select all pods within the namespace" (PodDisruptionBudgetSpec.selector).
    Callers whose API gives a missing selector another meaning pass ``none_matches=False`` to have
    it match everything instead.
    """
    if selector is None:
        return lambda _labels: not none_matches
    requirements = [
        _new_requirement(key, _EQUALS, [value]) for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        operator = str(expression.get("operator", ""))
        if operator not in _EXPRESSION_OPERATORS:
            # Says "pod selector" whatever the object is: that is the server's text.
            raise SelectorError(f"{_go_quote(operator)} is not a valid pod selector operator")
        values = expression.get("values") or []
        requirements.append(
            _new_requirement(str(expression.get("key", "")), _EXPRESSION_OPERATORS[operator], values)
        )
    return _all_of(requirements)


_NODE_OPERATORS = {**_EXPRESSION_OPERATORS, "Gt": _GT, "Lt": _LT}


def node_requirements_matcher(expressions: list[dict[str, Any]]) -> Matcher:
    """NodeSelectorRequirements (a node selector term's matchExpressions or matchFields) as a matcher
    of labels or fields, per NodeSelectorRequirementsAsSelector: the requirements ANDed; an invalid
    one makes the term match nothing (nodeaffinity's lazy errors)."""
    try:
        requirements = [
            _new_requirement(
                str(e.get("key", "")), _NODE_OPERATORS[str(e.get("operator"))], e.get("values") or []
            )
            for e in expressions
        ]
    except (KeyError, SelectorError):
        return lambda _labels: False
    return _all_of(requirements)


# --- The ?fieldSelector= string (pkg/fields/selector.go) ------------------------------------------------

FieldTerm = tuple[str, bool, str]  # field, equal (False for !=), value


def _split_terms(text: str) -> list[str]:
    """Split on the commas that are not backslash-escaped; escapes stay for _unescape."""
    terms = []
    start, escaped = 0, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    unescaped = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            unescaped.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            # Go formats the rune with %v, so the message carries its code point: "=" reads 61.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            unescaped.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(unescaped)


def _field_terms(text: str | None) -> list[FieldTerm]:
    """The terms in the order the server checks them: sorted, so the first error reported is the
    first term in sort order. Nothing is trimmed: "a = b" selects on the field "a "."""
    terms = []
    for part in sorted(_split_terms(text or "")):
        if not part:
            continue
        # The first operator wins and the field name has no escaping: "a==b" is field "a", value "b".
        split = next(
            ((i, op) for i in range(len(part)) for op in ("!=", "==", "=") if part.startswith(op, i)), None
        )
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        i, op = split
        terms.append((part[:i], op != "!=", _unescape(part[i + len(op) :])))
    return terms


def _lookup(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _as_text(value: Any, default: str = "") -> str:
    """A JSON value as the server renders it into a fields.Set; a missing field reads as ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) else default


# Field labels whose server-side value is not simply the JSON value at that path (each strategy's
# ToSelectableFields sets them from typed fields, so an unset bool reads "false", not ""). The labels
# are unique across kinds, and check_supported keeps each to the kinds that accept it.
_DERIVED_FIELDS: dict[str, Callable[[dict[str, Any]], str]] = {
    # Pods: a legacy alias, rewritten to spec.nodeName before matching.
    "spec.host": lambda obj: _as_text(_lookup(obj, "spec.nodeName")),
    "spec.hostNetwork": lambda obj: _as_text(_lookup(obj, "spec.hostNetwork"), "false"),
    # Pods: accepted, but never put in the field set, so it only ever equals "".
    "status.podIPs": lambda obj: "",
    "spec.unschedulable": lambda obj: _as_text(_lookup(obj, "spec.unschedulable"), "false"),
    "status.replicas": lambda obj: _as_text(_lookup(obj, "status.replicas"), "0"),
    # Jobs: the label and the field it reads are spelled differently.
    "status.successful": lambda obj: _as_text(_lookup(obj, "status.succeeded"), "0"),
    # Events: the source component, falling back to the events.k8s.io reporting controller.
    "source": lambda obj: (
        _as_text(_lookup(obj, "source.component")) or _as_text(_lookup(obj, "reportingComponent"))
    ),
}


def _field_value(obj: dict[str, Any], field: str) -> str:
    derive = _DERIVED_FIELDS.get(field)
    return derive(obj) if derive else _as_text(_lookup(obj, field))


def parse_field_selector(text: str | None) -> ObjectMatcher:
    """A ``?fieldSelector=`` string (``spec.nodeName=node-1``, ``status.phase!=Running``, comma = AND)
    as a matcher over whole objects; a field the object lacks compares as ""."""
    terms = _field_terms(text)
    return lambda obj: all((_field_value(obj, field) == value) == equal for field, equal, value in terms)


def field_selector_value(text: str | None, field: str) -> str | None:
    """The value a ``?fieldSelector=`` string requires ``field`` to equal, if it does."""
    return next((value for name, equal, value in _field_terms(text) if name == field and equal), None)


def field_selector_fields(text: str | None) -> set[str]:
    """The field labels a ``?fieldSelector=`` string uses."""
    return {field for field, _, _ in _field_terms(text)}


# --- Which field labels each resource accepts -----------------------------------------------------------

# The kinds that register a field label conversion func (pkg/apis/*/v1/conversion.go), as of 1.33.
# Contrary to the "Field Selectors" docs page, not every resource accepts metadata.namespace (the
# cluster-scoped nodes, namespaces and CSRs do not), and replicasets accept no status.replicas.
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",  # since 1.28
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
            "spec.host",
        }
    ),
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
    "namespaces": frozenset({"metadata.name", "status.phase"}),
    "events": frozenset(
        {
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "secrets": frozenset({"metadata.name", "metadata.namespace", "type"}),
    # spec.clusterIP and spec.type arrived in 1.30-1.31 (kubernetes#122541, #123905).
    "services": frozenset({"metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"}),
    "replicationcontrollers": frozenset({"metadata.name", "metadata.namespace", "status.replicas"}),
    "jobs": frozenset({"metadata.name", "metadata.namespace", "status.successful"}),
    "certificatesigningrequests": frozenset({"metadata.name", "spec.signerName"}),
}
# Every other kind falls back to runtime.DefaultMetaV1FieldSelectorConversion.
DEFAULT_SUPPORTED_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def _unsupported(resource: str, field: str) -> str:
    if resource == "jobs":
        return f"field label {_go_quote(field)} not supported for Job"
    if resource in SUPPORTED_FIELDS:
        return f"field label not supported: {field}"
    return f'{_go_quote(field)} is not a known field selector: only "metadata.name", "metadata.namespace"'


def check_supported(resource: str, text: str | None) -> None:
    """Reject a ``?fieldSelector=`` naming a field the resource (by plural) does not support, with
    the server's message for that kind; a malformed selector is rejected as parse_field_selector does."""
    supported = SUPPORTED_FIELDS.get(resource, DEFAULT_SUPPORTED_FIELDS)
    for field, _, _ in _field_terms(text):
        if field not in supported:
            raise SelectorError(_unsupported(resource, field))
