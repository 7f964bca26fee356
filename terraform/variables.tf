# ----- the worker group ----------------------------------------------------------------------------

variable "name" {
  description = "Name of the Auto Scaling group and of its launch template."
  type        = string
}

variable "image_id" {
  description = "AMI the nodes run. Changing it makes a new launch template version; with replace_on_apply, the same apply rolls the nodes onto it."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type of the nodes."
  type        = string
  default     = "m5.large"
}

variable "user_data" {
  description = "Node bootstrap user data, as plain text (the module base64-encodes it); null for none."
  type        = string
  default     = null
}

variable "security_group_ids" {
  description = "Security groups of the nodes (the cluster's node security group)."
  type        = list(string)
  default     = []
}

variable "iam_instance_profile_arn" {
  description = "Instance profile of the nodes (the node role EKS maps to system:nodes); null for none."
  type        = string
  default     = null
}

variable "node_role_arn" {
  description = "The role of iam_instance_profile_arn: nodeswap's policy may pass it (iam:PassRole), as AWS requires of whoever points the group at a template version."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets the group launches into, one or more per availability zone."
  type        = list(string)
}

variable "min_size" {
  description = "Minimum number of instances."
  type        = number
}

variable "max_size" {
  description = "Maximum number of instances. Applied when the group is created; later changes are ignored (see README: nodeswap raises MaxSize during a rollout)."
  type        = number
}

variable "desired_capacity" {
  description = "Instances at creation; afterwards the group's (cluster-autoscaler's, nodeswap's) to change."
  type        = number
}

variable "tags" {
  description = "Tags of the group, propagated to its instances. Keys under nodeswap.io/ are nodeswap's."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.tags) : !startswith(key, "nodeswap.io/")])
    error_message = "Tags under nodeswap.io/ hold nodeswap's rollout record; use another prefix."
  }
}

# ----- lifecycle hooks -----------------------------------------------------------------------------

variable "termination_hook_name" {
  description = "Name of the termination lifecycle hook nodeswap completes once a node is empty."
  type        = string
  default     = "nodeswap-drain"

  validation {
    # nodeswap completes any termination hook whose name starts with "nodeswap" (its convention), so a
    # manual `nodeswap replace` or `abort` finds this hook without --lifecycle-hook.
    condition     = startswith(var.termination_hook_name, "nodeswap")
    error_message = "The termination hook's name must start with \"nodeswap\" (nodeswap's convention for the hook it owns)."
  }
}

variable "termination_hook_heartbeat_timeout" {
  description = "Seconds an instance waits in Terminating:Wait when nobody completes the hook (a terminated nodeswap run, or a scale-in by another actor)."
  type        = number
  default     = 300

  validation {
    condition     = var.termination_hook_heartbeat_timeout >= 30 && var.termination_hook_heartbeat_timeout <= 7200
    error_message = "AWS accepts a heartbeat timeout of 30 to 7200 seconds."
  }
}

variable "termination_hook_default_result" {
  description = "What happens when the termination hook times out: CONTINUE or ABANDON (both terminate; ABANDON skips the other termination hooks)."
  type        = string
  default     = "CONTINUE"

  validation {
    condition     = contains(["CONTINUE", "ABANDON"], var.termination_hook_default_result)
    error_message = "default_result is CONTINUE or ABANDON."
  }
}

variable "launch_hook" {
  description = "An optional launch lifecycle hook holding new instances in Pending:Wait. During a rollout nodeswap completes it once the node is Ready (--launch-hook); outside rollouts (scale-outs) something else must complete it, or each new instance waits heartbeat_timeout."
  type = object({
    name              = string
    heartbeat_timeout = optional(number, 300)
    default_result    = optional(string, "CONTINUE")
  })
  default = null
}

# ----- the rollout trigger -------------------------------------------------------------------------

variable "replace_on_apply" {
  description = "Run `nodeswap replace` in the apply that changes the launch template, and fail the apply if it fails."
  type        = bool
  default     = false
}

variable "nodeswap_command" {
  description = "How to run nodeswap, as a list of words (e.g. [\"python3\", \"-m\", \"nodeswap\"])."
  type        = list(string)
  default     = ["nodeswap"]
}

variable "nodeswap_surge" {
  description = "--surge: replace in waves of N instances or P% of desired; null replaces all at once."
  type        = string
  default     = null
}

variable "nodeswap_drain_timeout" {
  description = "--drain-timeout (e.g. \"15m\"); null for nodeswap's default."
  type        = string
  default     = null
}

variable "nodeswap_config_file" {
  description = "--config: a YAML file of nodeswap's options; null for none."
  type        = string
  default     = null
}

variable "nodeswap_extra_args" {
  description = "More nodeswap replace arguments (e.g. [\"--canary\", \"1\"]). Not --ami: the module changes the image."
  type        = list(string)
  default     = []

  validation {
    condition     = !anytrue([for arg in var.nodeswap_extra_args : arg == "--ami" || startswith(arg, "--ami=")])
    error_message = "Set image_id instead of --ami: the module makes the launch template version and the trigger rolls onto it."
  }
}

variable "nodeswap_environment" {
  description = "Environment of the nodeswap run, on top of Terraform's own (e.g. KUBECONFIG, AWS_PROFILE)."
  type        = map(string)
  default     = {}
}

# ----- nodeswap's permissions ----------------------------------------------------------------------

variable "create_iam_policy" {
  description = "Create an IAM policy with nodeswap's least privileges on this group (also created for irsa)."
  type        = bool
  default     = false
}

variable "irsa" {
  description = "Create an IAM role for nodeswap running in the cluster (IAM roles for service accounts): the cluster's OIDC provider and nodeswap's service account. oidc_provider_url defaults to the issuer named in the ARN."
  type = object({
    oidc_provider_arn = string
    oidc_provider_url = optional(string)
    namespace         = optional(string, "kube-system")
    service_account   = optional(string, "nodeswap")
  })
  default = null
}
