variable "endpoint" {
  description = "The sandbox's AWS endpoint (AWS_ENDPOINT_URL in its env.sh)."
  type        = string
}

variable "region" {
  description = "The sandbox's region."
  type        = string
  default     = "us-east-1"
}

variable "access_key" {
  description = "Access key Terraform and nodeswap sign with (the sandbox accepts any)."
  type        = string
  default     = "sandbox"
}

variable "secret_key" {
  description = "Secret key Terraform and nodeswap sign with (the sandbox accepts any)."
  type        = string
  # Not sensitive: it is a dummy, and a sensitive value in the trigger's environment would hide
  # nodeswap's output from the apply's log.
  default = "sandbox"
}

variable "image" {
  description = "The AMI to run, by the sandbox's nodeswap-sandbox:image tag: old or new."
  type        = string
  default     = "old"

  validation {
    condition     = contains(["old", "new"], var.image)
    error_message = "The sandbox registers two AMIs, tagged old and new."
  }
}

variable "name" {
  description = "Name of the group Terraform creates (not one of the scenario's groups)."
  type        = string
  default     = "tf-workers"
}

variable "kubeconfig" {
  description = "kubeconfig of the sandbox's cluster for nodeswap; null to use KUBECONFIG from the environment."
  type        = string
  default     = null
}

variable "nodeswap_command" {
  description = "How to run nodeswap."
  type        = list(string)
  default     = ["nodeswap"]
}
