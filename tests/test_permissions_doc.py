"""The README's AWS permission list and terraform/nodeswap-actions.json (the source of the Terraform
module's policy and of the IAM tests' policy) name the same actions."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_lists_exactly_the_actions_of_the_policy() -> None:
    actions = json.loads((ROOT / "terraform" / "nodeswap-actions.json").read_text())
    granted = {a for key, values in actions.items() if not key.startswith("_") for a in values}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("What it needs, in AWS") : readme.index("A denied action is named")]
    listed = set(re.findall(r"`((?:autoscaling|ec2|iam):[A-Za-z]+)`", section))
    assert listed == granted
