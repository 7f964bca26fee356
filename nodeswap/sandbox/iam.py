"""IAM in the sandbox: with ``iam: {enforce: true}`` in the scenario (``nodeswap sandbox up --enforce-iam``),
a request signed with an IAM user's access key, or with an assumed role's credentials, is served only if
that principal's policies allow it, as AWS would. Any other key (the dummy keys of ``env.sh``, the
sandbox's own seeding, the tests' clients) acts as the account's root user and is not checked, so the
IAM users and policies a rehearsal needs can be made with it.

moto has this check (``moto/iam/access_control.py``), but its switch is process-wide
(``moto.settings.INITIAL_NO_AUTH_ACTION_COUNT`` against a request counter kept on a class), where tests
run one sandbox after another in one process. So moto's switch stays off and the gateway asks
``authorize`` before moto serves, per sandbox, with moto's own parts: the signature check and the policy
evaluation of ``IAMRequest``. Like moto, it judges a statement by its Action/NotAction and Effect (an
explicit Deny wins), not by what the request acts on: a statement scoped to an ARN allows nothing, so
give statements ``"Resource": "*"``, and no Condition (moto knows none of a request's condition keys:
depending on the operator it ignores the Condition or denies). Unlike moto, and as AWS does:

- a refusal takes its API's shape: Auto Scaling answers 403 ``AccessDenied`` naming the action; EC2
  answers 403 ``UnauthorizedOperation`` [EC2ERR], naming the action for a Describe call and with only an
  encoded message for any other;
- creating or updating a group with a launch template needs, besides the Auto Scaling action,
  ``ec2:RunInstances``, and ``iam:PassRole`` when the template names an instance profile, and
  ``ec2:CreateTags`` when it has tag specifications [LTPERM] [TROUBLE]; lacking one, the call is refused
  with 403 ``AccessDenied`` "You are not authorized to use launch template: lt-..." and changes nothing.

[EC2ERR]  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/query-api-troubleshooting.html#unauthorized-operation
          "If a user attempts to perform an action for which permission has not been granted, the request
          returns the following error: Client.UnauthorizedOperation"; an HTTP 403, with an encoded message
          for some actions (STS DecodeAuthorizationMessage)
[LTPERM]  https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-launch-template-permissions.html
          "ec2:RunInstances are checked when an Auto Scaling group is created or updated using a launch
          template"; "users who create or update Auto Scaling groups with a launch template that specifies
          an instance profile (a container for an IAM role) require the iam:PassRole permission"
[TROUBLE] https://docs.aws.amazon.com/autoscaling/ec2/userguide/ts-as-launch-template.html
          "You are not authorized to use launch template": "If you specified any tags in your launch
          template, you must also have permission to use the ec2:CreateTags action"
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.iam.access_control import (
    CreateAccessKeyFailure,
    IAMPolicy,
    IAMRequest,
    PermissionResult,
    create_access_key,
)
from moto.iam.models import get_account_id_from
from moto.utilities.utils import get_partition
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from nodeswap.sandbox.faults import FaultResponse, error_response
from nodeswap.sandbox.record import is_mutating

_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/")
# The operations that point a group at a launch template, and the request fields naming the template.
LAUNCHING_OPERATIONS = frozenset({"CreateAutoScalingGroup", "UpdateAutoScalingGroup"})
_TEMPLATE_FIELDS = ("LaunchTemplate.", "MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.")


def authorize(environ: dict[str, Any], body: bytes, service: str, operation: str) -> FaultResponse | None:
    """The refusal AWS would answer this request with, or None to serve it. Runs under the sandbox's
    lock: it reads moto's IAM and EC2 state."""
    request = Request(environ)
    headers = dict(request.headers)
    signed = _CREDENTIAL.search(headers.get("Authorization", ""))
    if signed is None:
        return None  # unsigned: moto serves it as it does without IAM
    key, region = signed.groups()
    account = get_account_id_from(key)
    try:
        principal = create_access_key(
            account_id=account, partition=get_partition(region), access_key_id=key, headers=headers
        )
    except CreateAccessKeyFailure as failure:
        if failure.reason == "InvalidId":
            return None  # not an IAM principal's key: the account's root user
        principal = None  # a session token that does not match: IAMRequest refuses it below
    path = request.path + (f"?{request.query_string.decode()}" if request.query_string else "")
    try:
        checked = IAMRequest(
            account_id=account,
            method=request.method,
            path=path,
            data={},
            body=body,
            headers=headers,
            action=operation,
        )
        checked.check_signature()
        checked.check_action_permitted("*")
    except HTTPException as refused:  # moto's AccessDenied, InvalidClientTokenId, SignatureDoesNotMatch ...
        return _refusal(service, operation, refused)
    if principal is not None and operation in LAUNCHING_OPERATIONS:
        return _launch_refusal(principal.collect_policies(), body, account, region)
    return None


def _refusal(service: str, operation: str, refused: HTTPException) -> FaultResponse:
    """moto's refusal ("User: arn:... is not authorized to perform: ec2:DescribeInstances") as the
    service answers it."""
    code, message = getattr(refused, "error_type", "AccessDenied"), getattr(refused, "message", "")
    if service == "ec2" and code == "AccessDenied":
        detail = (
            f"Encoded authorization failure message: {uuid.uuid4().hex}"
            if is_mutating(operation)
            else message
        )
        code, message = "UnauthorizedOperation", f"You are not authorized to perform this operation. {detail}"
    return error_response(service, refused.code or 403, code, message)


def _launch_refusal(policies: list[Any], body: bytes, account: str, region: str) -> FaultResponse | None:
    """Auto Scaling's refusal of a group pointed at a launch template the caller may not launch."""
    form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    template = _template(form, account, region)
    if template is None:
        return None  # no launch template in the request, or none by that name: moto answers
    template_id, data = template
    needed = ["ec2:RunInstances"]
    if data.get("IamInstanceProfile"):
        needed.append("iam:PassRole")
    if data.get("TagSpecifications"):
        needed.append("ec2:CreateTags")
    if all(_allowed(policies, action) for action in needed):
        return None
    message = f"You are not authorized to use launch template: {template_id}"
    return error_response("autoscaling", 403, "AccessDenied", message)


def _template(form: dict[str, str], account: str, region: str) -> tuple[str, dict[str, Any]] | None:
    """The launch template a create or update names, and the data of the version it names."""
    for prefix in _TEMPLATE_FIELDS:
        template_id, name = form.get(f"{prefix}LaunchTemplateId"), form.get(f"{prefix}LaunchTemplateName")
        if template_id is None and name is None:
            continue
        backend = ec2_backends[account][region]
        try:
            template = (
                backend.get_launch_template(template_id)
                if template_id is not None
                else backend.get_launch_template_by_name(name or "")
            )
            version = template.get_version(form.get(f"{prefix}Version") or "$Default")
        except EC2ClientError:  # not found: moto answers the request with its own error
            return None
        data: dict[str, Any] = version.data
        return str(template.id), data
    return None


def _allowed(policies: list[Any], action: str) -> bool:
    """As IAM decides: allowed by some policy and denied by none."""
    results = [IAMPolicy(policy).is_action_permitted(action) for policy in policies]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results
