# A self-managed EKS worker group that nodeswap can replace without downtime: a launch template, a group
# pinned to the template's latest version number, nodeswap's termination hook, and (opt-in) a trigger
# that runs `nodeswap replace` in the apply that changes the template.

data "aws_region" "current" {}

resource "aws_launch_template" "this" {
  name          = var.name
  image_id      = var.image_id
  instance_type = var.instance_type
  user_data     = var.user_data == null ? null : base64encode(var.user_data)

  vpc_security_group_ids = var.security_group_ids

  dynamic "iam_instance_profile" {
    for_each = var.iam_instance_profile_arn == null ? [] : [var.iam_instance_profile_arn]
    content {
      arn = iam_instance_profile.value
    }
  }

  # Every change is a new version, made the default so that anything launching "$Default" agrees with
  # the group; the group itself asks for the number (below).
  update_default_version = true

  lifecycle {
    precondition {
      # nodeswap's policy must let it pass the profile's role (iam:PassRole), and only that one.
      condition     = (var.iam_instance_profile_arn == null) == (var.node_role_arn == null)
      error_message = "Set node_role_arn (the role of iam_instance_profile_arn) with iam_instance_profile_arn, or neither."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = var.name
  vpc_zone_identifier = var.subnet_ids
  min_size            = var.min_size
  max_size            = var.max_size
  desired_capacity    = var.desired_capacity

  launch_template {
    id = aws_launch_template.this.id
    # An explicit number, not "$Latest": a new template version is then a change of the group that
    # Terraform plans and shows, and the instances launched from the old number are what nodeswap
    # finds outdated.
    version = aws_launch_template.this.latest_version
  }

  dynamic "tag" {
    for_each = var.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }

  lifecycle {
    # What a rollout changes and puts back. Were Terraform to put them back mid-rollout (an apply after
    # an interrupted one), it would fight the rollout:
    # - desired_capacity: nodeswap surges it (and cluster-autoscaler owns it anyway);
    # - max_size: nodeswap raises it when the surge needs room; lowering MaxSize below the group's size
    #   makes AWS lower desired too, and the termination policy then picks old nodes nobody drains;
    # - suspended_processes: nodeswap suspends AZRebalance (and others) for the rollout.
    # The nodeswap.io/* tags (the rollout record) cannot be singled out here: see README, "Tags".
    ignore_changes = [desired_capacity, max_size, suspended_processes]
  }
}

# Separate resources rather than initial_lifecycle_hook: the provider applies those only when the group
# is created. As a side effect the first instances launch before the hooks exist, so a launch hook does
# not hold them in Pending:Wait during the first apply (nothing would complete it).
resource "aws_autoscaling_lifecycle_hook" "termination" {
  name                   = var.termination_hook_name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.termination_hook_heartbeat_timeout
  default_result         = var.termination_hook_default_result
}

resource "aws_autoscaling_lifecycle_hook" "launch" {
  count = var.launch_hook == null ? 0 : 1

  name                   = var.launch_hook.name
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
  heartbeat_timeout      = var.launch_hook.heartbeat_timeout
  default_result         = var.launch_hook.default_result
}

locals {
  nodeswap_args = concat(
    [
      "replace",
      "--asg", aws_autoscaling_group.this.name,
      "--region", data.aws_region.current.name,
      "--lifecycle-hook", aws_autoscaling_lifecycle_hook.termination.name,
    ],
    var.launch_hook == null ? [] : ["--launch-hook", var.launch_hook.name],
    var.nodeswap_surge == null ? [] : ["--surge", var.nodeswap_surge],
    var.nodeswap_drain_timeout == null ? [] : ["--drain-timeout", var.nodeswap_drain_timeout],
    var.nodeswap_config_file == null ? [] : ["--config", var.nodeswap_config_file],
    var.nodeswap_extra_args,
    ["--yes", "--output", "json"],
  )
  # Each word single-quoted for /bin/sh, so paths and arguments with spaces or quotes pass unchanged.
  nodeswap_replace_command = join(" ", [
    for word in concat(var.nodeswap_command, local.nodeswap_args) : "'${replace(word, "'", "'\\''")}'"
  ])
}

# The trigger: replaced, so its provisioner runs, whenever the group is to launch another template
# version. It runs after the group points at that version (it references the group), and a non-zero
# exit fails the apply. On the first apply nothing is outdated: nodeswap says "nothing to replace" and
# exits 0 at once (it still needs to reach the cluster, as every later run does).
resource "terraform_data" "replace" {
  count = var.replace_on_apply ? 1 : 0

  # The template's id too: a replaced template starts again at version 1.
  triggers_replace = [aws_launch_template.this.id, aws_launch_template.this.latest_version]

  provisioner "local-exec" {
    # exec: nodeswap is the process Terraform stops when the apply is interrupted, not a shell that
    # would leave it running on its own.
    command     = "exec ${local.nodeswap_replace_command}"
    environment = var.nodeswap_environment
  }

  depends_on = [aws_autoscaling_lifecycle_hook.launch]
}

# ----- nodeswap's least privileges -----------------------------------------------------------------

locals {
  # One list of the actions nodeswap calls, shared with nodeswap's README and its permission tests.
  nodeswap_actions = jsondecode(file("${path.module}/nodeswap-actions.json"))

  nodeswap_policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "Describe"
          Effect   = "Allow"
          Action   = local.nodeswap_actions.read
          Resource = "*" # these Describe calls support no resource-level permissions
        },
        {
          Sid      = "ThisGroup"
          Effect   = "Allow"
          Action   = local.nodeswap_actions.groups
          Resource = aws_autoscaling_group.this.arn
        },
        {
          Sid      = "ThisLaunchTemplate"
          Effect   = "Allow"
          Action   = local.nodeswap_actions.templates
          Resource = aws_launch_template.this.arn
        },
        # The "launch" actions: not nodeswap's calls, but what AWS checks when nodeswap points the group
        # at a template version (--ami, or abort undoing one). ec2:CreateTags is needed only for a
        # template with tag specifications, which this module's has not (the group tags the instances).
        {
          Sid      = "LaunchFromThisTemplate"
          Effect   = "Allow"
          Action   = "ec2:RunInstances"
          Resource = "*"
          Condition = {
            ArnLike = { "ec2:LaunchTemplate" = aws_launch_template.this.arn }
          }
        },
      ],
      # AWS also checks that whoever points the group at a template version may pass the role of the
      # template's instance profile.
      var.node_role_arn == null ? [] : [{
        Sid      = "PassTheNodeRole"
        Effect   = "Allow"
        Action   = "iam:PassRole"
        Resource = var.node_role_arn
        Condition = {
          StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" }
        }
      }],
    )
  })

  create_policy = var.create_iam_policy || var.irsa != null
}

resource "aws_iam_policy" "nodeswap" {
  count = local.create_policy ? 1 : 0

  name        = "nodeswap-${var.name}"
  description = "nodeswap: replace the nodes of Auto Scaling group ${var.name}"
  policy      = local.nodeswap_policy
}

locals {
  # The issuer host, as the trust policy's condition keys spell it: the ARN ends in "oidc-provider/<host>".
  oidc_issuer = var.irsa == null ? null : trimprefix(
    coalesce(var.irsa.oidc_provider_url, element(split("oidc-provider/", var.irsa.oidc_provider_arn), 1)),
    "https://",
  )
}

resource "aws_iam_role" "nodeswap" {
  count = var.irsa == null ? 0 : 1

  name        = "nodeswap-${var.name}"
  description = "nodeswap in the cluster (service account ${var.irsa.namespace}/${var.irsa.service_account})"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = var.irsa.oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${local.oidc_issuer}:sub" = "system:serviceaccount:${var.irsa.namespace}:${var.irsa.service_account}"
          "${local.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "nodeswap" {
  count = var.irsa == null ? 0 : 1

  role       = aws_iam_role.nodeswap[0].name
  policy_arn = aws_iam_policy.nodeswap[0].arn
}
