output "autoscaling_group_name" {
  description = "The group Terraform created."
  value       = module.workers.autoscaling_group_name
}

output "image_id" {
  description = "The AMI the group launches."
  value       = data.aws_ami.node.id
}

output "launch_template_version" {
  description = "The launch template version the group launches."
  value       = module.workers.launch_template_version
}

output "nodeswap_policy_json" {
  description = "nodeswap's least-privilege policy for the group."
  value       = module.workers.nodeswap_policy_json
}

output "nodeswap_replace_command" {
  description = "The command the trigger runs."
  value       = module.workers.nodeswap_replace_command
}
