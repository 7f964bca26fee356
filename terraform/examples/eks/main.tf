# A self-managed node group of an existing EKS cluster, rolled by nodeswap when its AMI changes, plus
# an IAM role for running nodeswap inside the cluster (a CronJob replacing nodes older than 7 days).

provider "aws" {
  region = var.region

  # nodeswap's rollout record lives in the group's nodeswap.io/* tags; Terraform leaves them alone.
  ignore_tags {
    key_prefixes = ["nodeswap.io/"]
  }
}

data "aws_eks_cluster" "this" {
  name = var.cluster_name
}

data "aws_iam_openid_connect_provider" "this" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

module "workers" {
  source = "../.."

  name                     = "${var.cluster_name}-workers"
  image_id                 = var.image_id # pinned: a new AMI is a reviewed change, not a moving SSM parameter
  instance_type            = "m5.xlarge"
  subnet_ids               = var.subnet_ids
  security_group_ids       = [var.node_security_group_id]
  iam_instance_profile_arn = var.node_instance_profile_arn
  node_role_arn            = var.node_role_arn
  min_size                 = 3
  max_size                 = 10
  desired_capacity         = 3

  # AL2023 nodes join with nodeadm's NodeConfig.
  user_data = <<-EOT
    MIME-Version: 1.0
    Content-Type: multipart/mixed; boundary="BOUNDARY"

    --BOUNDARY
    Content-Type: application/node.eks.aws

    apiVersion: node.eks.aws/v1alpha1
    kind: NodeConfig
    spec:
      cluster:
        name: ${data.aws_eks_cluster.this.name}
        apiServerEndpoint: ${data.aws_eks_cluster.this.endpoint}
        certificateAuthority: ${data.aws_eks_cluster.this.certificate_authority[0].data}
        cidr: ${data.aws_eks_cluster.this.kubernetes_network_config[0].service_ipv4_cidr}

    --BOUNDARY--
  EOT

  tags = {
    "kubernetes.io/cluster/${var.cluster_name}" = "owned"
  }

  # Roll the nodes in the apply that changes the AMI, one new node at a time.
  replace_on_apply       = true
  nodeswap_surge         = "1"
  nodeswap_drain_timeout = "20m"
  nodeswap_environment   = { KUBECONFIG = pathexpand(var.kubeconfig) }

  irsa = {
    oidc_provider_arn = data.aws_iam_openid_connect_provider.this.arn
  }
}

output "nodeswap_role_arn" {
  description = "Annotate nodeswap's service account (kube-system/nodeswap) with eks.amazonaws.com/role-arn."
  value       = module.workers.nodeswap_role_arn
}

output "nodeswap_policy_json" {
  description = "Attach to whatever runs `terraform apply` too: the trigger runs nodeswap with its credentials."
  value       = module.workers.nodeswap_policy_json
}
