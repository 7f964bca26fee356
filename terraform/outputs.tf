output "autoscaling_group_name" {
  description = "Name of the Auto Scaling group (nodeswap's --asg)."
  value       = aws_autoscaling_group.this.name
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling group."
  value       = aws_autoscaling_group.this.arn
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "The launch template version the group launches."
  value       = aws_launch_template.this.latest_version
}

output "termination_hook_name" {
  description = "Name of nodeswap's termination lifecycle hook."
  value       = aws_autoscaling_lifecycle_hook.termination.name
}

output "nodeswap_replace_command" {
  description = "The exact command the trigger runs: run it by hand to roll (or resume a rollout) with the module's options."
  value       = local.nodeswap_replace_command
}

output "nodeswap_policy_json" {
  description = "nodeswap's least-privilege IAM policy for this group, as JSON."
  value       = local.nodeswap_policy
}

output "nodeswap_policy_arn" {
  description = "ARN of the IAM policy (create_iam_policy or irsa), else null."
  value       = one(aws_iam_policy.nodeswap[*].arn)
}

output "nodeswap_role_arn" {
  description = "ARN of the IAM role for nodeswap's service account (irsa), else null: annotate the service account with eks.amazonaws.com/role-arn."
  value       = one(aws_iam_role.nodeswap[*].arn)
}
