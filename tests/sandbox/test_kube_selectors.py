"""Label and field selectors as kube-apiserver evaluates them: the ?labelSelector= grammar (every
operator, AND, whitespace, empty) and its exact error messages, metav1.LabelSelector objects (each
matchExpressions operator, empty versus nil), ?fieldSelector= on nested and missing fields with !=
and escaping, and the per-resource "field label not supported" errors."""

from __future__ import annotations

from typing import Any

import pytest

from nodeswap.sandbox.kube.selectors import (
    SUPPORTED_FIELDS,
    SelectorError,
    check_supported,
    field_selector_fields,
    label_selector_matcher,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "frontend", "replicas": "5", "empty": ""}

QNAME_RULE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", True),
        ("app=db", False),
        ("app==web", True),
        ("app!=web", False),
        ("app!=db", True),
        ("missing!=x", True),  # != and notin also select objects without the label
        ("app in (db,web)", True),
        ("app in (db)", False),
        ("missing in (x)", False),
        ("app notin (web)", False),
        ("app notin (db)", True),
        ("missing notin (x)", True),
        ("app", True),
        ("missing", False),
        ("!app", False),
        ("!missing", True),
        ("replicas>3", True),
        ("replicas<3", False),
        ("app>3", False),  # a non-numeric label value never compares
        ("empty=", True),  # "key=" selects the empty value
        ("empty in ()", True),  # "()" is the set holding the empty string
        ("app in (,web)", True),
        ("in in (in)", False),  # "in" is only a keyword in operator position
        ("app=web,tier=frontend", True),  # comma is AND
        ("app=web,tier=backend", False),
        ("  app = web ,\ttier in ( frontend , x )\n", True),
        ("", True),
        ("example.com/role", False),
    ],
)
def test_label_selector_matching(selector: str, expected: bool) -> None:
    assert parse_label_selector(selector)(LABELS) is expected


def test_no_label_selector_matches_everything() -> None:
    assert parse_label_selector(None)({})
    assert parse_label_selector("")({})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a,", "found '', expected: identifier after ','"),
        ("a=b=c", "found '=', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in ((b)", "unable to parse requirement: found '(', expected: ',', ')' or identifier"),
        # Through 1.33 the parser swallows the comma after ",,", so this is an error.
        ("a in (b,,)", "unable to parse requirement: found ')', expected: ',', or identifier"),
        (
            "app:web",
            f'unable to parse requirement: <nil>: Invalid value: "app:web": name part {QNAME_RULE}',
        ),
        (
            "a/=b",
            f'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; '
            f"name part {QNAME_RULE}",
        ),
        (
            "a/b/c",
            f'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name {QNAME_RULE} '
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
        (
            "Example.com/a",
            'unable to parse requirement: <nil>: Invalid value: "Example.com/a": prefix part a lowercase '
            "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation "
            r"is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        (
            "a" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": '
            "name part must be no more than 63 characters",
        ),
        ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {LABEL_VALUE_RULE}'),
        (
            "a>x",
            'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "a>-1",  # an integer, but not a valid label value
            f'unable to parse requirement: values[0][a]: Invalid value: "-1": {LABEL_VALUE_RULE}',
        ),
        (
            "a>1_0",
            'unable to parse requirement: values[0]: Invalid value: "1_0": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ],
)
def test_invalid_label_selectors_fail_with_the_servers_message(selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_label_selector(selector)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"key": "app", "operator": "In", "values": ["db", "web"]}, True),
        ({"key": "app", "operator": "In", "values": ["db"]}, False),
        ({"key": "app", "operator": "NotIn", "values": ["web"]}, False),
        ({"key": "missing", "operator": "NotIn", "values": ["web"]}, True),
        ({"key": "app", "operator": "Exists"}, True),
        ({"key": "missing", "operator": "Exists"}, False),
        ({"key": "app", "operator": "DoesNotExist"}, False),
        ({"key": "missing", "operator": "DoesNotExist"}, True),
    ],
)
def test_match_expressions(expression: dict[str, Any], expected: bool) -> None:
    assert label_selector_matcher({"matchExpressions": [expression]}, none_matches=True)(LABELS) is expected


def test_match_labels_and_expressions_are_anded() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
    }
    assert label_selector_matcher(selector, none_matches=True)(LABELS)
    assert not label_selector_matcher(selector, none_matches=True)({"app": "web"})
    assert not label_selector_matcher({"matchLabels": {"app": "db"}}, none_matches=True)(LABELS)


@pytest.mark.parametrize("selector", [{}, {"matchLabels": {}}, {"matchLabels": None, "matchExpressions": []}])
def test_an_empty_label_selector_matches_everything(selector: dict[str, Any]) -> None:
    assert label_selector_matcher(selector, none_matches=True)({})
    assert label_selector_matcher(selector, none_matches=True)(LABELS)


def test_a_nil_label_selector_matches_nothing_unless_told_otherwise() -> None:
    assert not label_selector_matcher(None, none_matches=True)(LABELS)
    assert not label_selector_matcher(None, none_matches=True)({})
    assert label_selector_matcher(None, none_matches=False)(LABELS)


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]},
            '"Equals" is not a valid pod selector operator',
        ),
        ({"matchExpressions": [{"key": "app"}]}, '"" is not a valid pod selector operator'),
        (
            # Go passes the empty list on as a nil slice, which it prints as null.
            {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]},
            'values: Invalid value: ["web"]: values set must be empty for exists and does not exist',
        ),
        ({"matchLabels": {"a b": "c"}}, f'key: Invalid value: "a b": name part {QNAME_RULE}'),
        (
            {"matchExpressions": [{"key": "-a", "operator": "NotIn", "values": ["-b"]}]},
            f'[key: Invalid value: "-a": name part {QNAME_RULE}, '
            f'values[0][-a]: Invalid value: "-b": {LABEL_VALUE_RULE}]',
        ),
    ],
)
def test_invalid_label_selector_objects(selector: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        label_selector_matcher(selector, none_matches=True)
    assert str(caught.value) == message


POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
    "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
    "status": {"phase": "Running", "podIP": "10.0.0.7"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("spec.nodeName=node-1", True),
        ("spec.nodeName==node-1", True),
        ("spec.nodeName=node-2", False),
        ("spec.nodeName!=node-2", True),
        ("status.phase!=Running", False),
        ("metadata.name=web-1,metadata.namespace=default", True),
        ("metadata.name=web-1,metadata.namespace=kube-system", False),
        ("metadata.labels.app=web", True),  # any dotted path
        ("spec.schedulerName=", True),  # a missing field compares as ""
        ("spec.schedulerName!=", False),
        ("spec.schedulerName=default-scheduler", False),
        ("no.such.path=", True),
        ("spec.nodeName =node-1", False),  # nothing is trimmed: that is the field "spec.nodeName "
        ("spec.hostNetwork=false", True),  # an unset bool reads "false", as the server renders it
        ("spec.host=node-1", True),  # the legacy alias of spec.nodeName
        ("status.podIPs=10.0.0.7", False),  # accepted, but never in the server's field set
        ("status.podIPs=", True),
        ("", True),
        (",,spec.nodeName=node-1,", True),  # empty terms are skipped
    ],
)
def test_field_selector_matching(selector: str, expected: bool) -> None:
    assert parse_field_selector(selector)(POD) is expected


def test_no_field_selector_matches_everything() -> None:
    assert parse_field_selector(None)({})


@pytest.mark.parametrize(
    ("obj", "selector", "expected"),
    [
        ({"spec": {}}, "spec.unschedulable=false", True),
        ({"spec": {"unschedulable": True}}, "spec.unschedulable=true", True),
        ({"spec": {"hostNetwork": True}}, "spec.hostNetwork=true", True),
        ({"status": {}}, "status.successful=0", True),  # jobs: read from status.succeeded
        ({"status": {"succeeded": 2}}, "status.successful=2", True),
        ({"status": {"replicas": 3}}, "status.replicas=3", True),
        ({"source": {"component": "kubelet"}}, "source=kubelet", True),
        ({"reportingComponent": "kubelet"}, "source=kubelet", True),  # events: falls back
        ({"involvedObject": {"kind": "Pod", "name": "web-1"}}, "involvedObject.name=web-1", True),
    ],
)
def test_field_values_render_as_the_server_renders_them(
    obj: dict[str, Any], selector: str, expected: bool
) -> None:
    assert parse_field_selector(selector)(obj) is expected


@pytest.mark.parametrize(
    ("value", "selector"),
    [
        ("a,b", r"metadata.name=a\,b"),
        ("a=b", r"metadata.name=a\=b"),
        ("a\\b", r"metadata.name=a\\b"),
        ("=", r"metadata.name==\="),  # "==" is the operator, the rest the value
    ],
)
def test_field_selector_values_unescape(value: str, selector: str) -> None:
    assert parse_field_selector(selector)({"metadata": {"name": value}})
    assert field_selector_fields(selector) == {"metadata.name"}


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("spec.nodeName", "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
        # The terms are sorted before parsing, so the first error is the first term in sort order.
        ("z=1,y,b", "invalid selector: 'z=1,y,b'; can't understand 'b'"),
        # The rune is printed with %v, that is as its code point.
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_invalid_field_selectors_fail_with_the_servers_message(selector: str, message: str) -> None:
    for parse in (parse_field_selector, field_selector_fields):
        with pytest.raises(SelectorError) as caught:
            parse(selector)
        assert str(caught.value) == message


def test_field_selector_fields() -> None:
    assert field_selector_fields("spec.nodeName=a,status.phase!=b,spec.nodeName!=c") == {
        "spec.nodeName",
        "status.phase",
    }
    assert field_selector_fields(None) == set()


@pytest.mark.parametrize(
    ("resource", "selector"),
    [
        ("pods", "spec.nodeName=node-1,status.phase!=Succeeded,metadata.namespace=default"),
        ("pods", "spec.hostNetwork=false,spec.restartPolicy=Always,status.podIP=10.0.0.7"),
        ("nodes", "spec.unschedulable=false,metadata.name=node-1"),
        ("events", "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u"),
        ("events", "reason=Evicted,type=Warning,source=kubelet"),
        ("namespaces", "status.phase=Active"),
        ("deployments", "metadata.name=web,metadata.namespace=default"),
        ("poddisruptionbudgets", "metadata.name=web"),
        ("pods", None),
        ("pods", ""),
    ],
)
def test_supported_fields_pass(resource: str, selector: str | None) -> None:
    check_supported(resource, selector)


@pytest.mark.parametrize(
    ("resource", "selector", "message"),
    [
        ("pods", "spec.priority=0", "field label not supported: spec.priority"),
        ("pods", "spec.nodeName=a,b=c,a=d", "field label not supported: a"),  # first in sort order
        # Cluster-scoped kinds take no metadata.namespace, whatever the docs say.
        ("nodes", "metadata.namespace=", "field label not supported: metadata.namespace"),
        ("namespaces", "metadata.namespace=", "field label not supported: metadata.namespace"),
        ("events", "message=x", "field label not supported: message"),
        ("jobs", "status.succeeded=1", 'field label "status.succeeded" not supported for Job'),
        (
            "replicasets",  # documented as supported, but apps/v1 registers no conversion for it
            "status.replicas=0",
            '"status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        (
            "deployments",
            "spec.paused=true",
            '"spec.paused" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        ("pods", "spec.nodeName", "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"),
    ],
)
def test_unsupported_fields_fail_with_the_servers_message(resource: str, selector: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        check_supported(resource, selector)
    assert str(caught.value) == message


def test_the_supported_field_table() -> None:
    assert {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
        "metadata.name",
        "metadata.namespace",
    } <= SUPPORTED_FIELDS["pods"]
    assert SUPPORTED_FIELDS["nodes"] == {"metadata.name", "spec.unschedulable"}
    assert all("metadata.name" in fields for fields in SUPPORTED_FIELDS.values())
