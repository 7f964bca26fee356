variable "region" {
  description = "AWS region of the cluster."
  type        = string
}

variable "cluster_name" {
  description = "The EKS cluster the nodes join."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the nodes."
  type        = list(string)
}

variable "node_security_group_id" {
  description = "The cluster's node security group."
  type        = string
}

variable "node_instance_profile_arn" {
  description = "Instance profile of the node role (mapped to system:nodes by an access entry or aws-auth)."
  type        = string
}

variable "node_role_arn" {
  description = "The node role (the role of node_instance_profile_arn)."
  type        = string
}

variable "image_id" {
  description = "The EKS-optimized AL2023 AMI the nodes run; changing it rolls the nodes in the same apply."
  type        = string
}

variable "kubeconfig" {
  description = "kubeconfig nodeswap uses to reach the cluster during the apply."
  type        = string
  default     = "~/.kube/config"
}
