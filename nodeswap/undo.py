"""Undoing a rollout from any point: what `nodeswap abort` does, and what a failed wave does by default.

IMPORTANT, the order, and why:
1. un-fence the old nodes not yet retired first, so that pods have their old places to go back to;
2. bring desired back to the recorded capacity by terminating the instances the rollout launched, each
   by id (never by lowering desired, which lets the termination policy pick a healthy old node): those
   holding no pods first; one that holds pods moved there is fenced and drained under the budgets first;
3. point the group back at the launch template version it used, if the rollout baked one, so it
   launches the image it launched before;
4. restore MaxSize and the processes nodeswap suspended, remove this rollout's marks and its record.
What cannot be undone (old instances already retired) is said, not hidden.
"""

from __future__ import annotations

from nodeswap.errors import OperationError
from nodeswap.kube import fenced
from nodeswap.run import Run
from nodeswap.steps import Drain, Hooks, StepFailed, fence, group_of, keeping, restore, unmark


def roll_back(run: Run) -> None:
    record = run.record
    run.update(phase="rollback")
    hooks = Hooks(run)
    hooks.leftovers()
    group = run.aws.with_details(group_of(run))
    nodes = {n.instance_id: n for n in run.cluster.nodes() if n.instance_id}
    unfenced = [
        n
        for i in group.instances
        if i.serving and not record.launched_by(i) and (n := nodes.get(i.id)) is not None and fenced(n)
    ]
    for node in unfenced:
        run.kube.unfence(node)
    if unfenced:
        named = [n.name for n in unfenced]
        run.say("rollback", f"un-fenced {len(named)} old nodes: {', '.join(named)}", nodes=named)

    # The instances the rollout launched, those holding no pods first.
    held = {
        i.id: len(keeping(run, run.cluster.pods_on(found.name))) if (found := nodes.get(i.id)) else 0
        for i in group.instances
        if i.serving and record.launched_by(i)
    }
    leaving = sorted(held, key=lambda i: (held[i], i))[: max(group.desired - record.capacity.desired, 0)]
    if leaving:
        names = {i: found.name for i in leaving if (found := nodes.get(i)) is not None}
        # Every one is fenced, the empty ones too: else pods landing on them meanwhile would go with them.
        moving = sorted(names.values())
        if moving:
            fence(run, moving)
        try:
            Drain(run, hooks)(leaving, names, cap=len(leaving))
        except StepFailed as failure:
            for name in moving:  # serving again until the next try, rather than fenced and half-drained
                if (again := run.cluster.node(name)) is not None:
                    run.kube.unfence(again)
            raise OperationError(
                f"the rollback could not move the pods off the new nodes back to the old ones: "
                f"{failure.message}",
                f"{failure.remedy}, then undo the rest: nodeswap abort --asg {run.name}",
            ) from failure
    _point_back(run)
    hooks.wait()
    unmark(run)
    restore(run)
    kept = [i for i in record.retired if i not in leaving]
    if kept:
        run.say(
            "rollback",
            f"{len(kept)} old instances were already replaced and cannot be brought back "
            f"({', '.join(kept)}); their replacements stay",
            retired=kept,
        )


def _point_back(run: Run) -> None:
    """Point the group back at the launch template version it launched before, if it now launches one
    the rollout baked: a version of its template, other than the one it launched, with the --ami image.
    (That version need not be recorded: a run killed right after creating it leaves a group that asks
    for $Latest launching it all the same.) $Latest would launch the baked version again, so such a
    group is pinned to the number it launched before."""
    template, ami = run.record.template, run.record.selection.ami
    if template is None or ami is None:
        return
    launch = group_of(run).launch
    if launch.template_id != template.id or launch.version == template.version:
        return  # the same as before, or another template since (by hand or by Terraform): not nodeswap's
    if run.aws.image_of(launch) != ami:
        return  # a version someone else made: not nodeswap's to undo
    version = template.version if template.asked == "$Latest" else template.asked
    run.aws.point_at(run.name, template.id, version)
    message = f"pointed the group back at launch template {template.id} version {version}"
    if template.asked == "$Latest":
        message += (
            f" (it asked for $Latest, which is now the baked version {launch.version}: pinned to the "
            "version it launched before)"
        )
    run.say("rollback", message)
