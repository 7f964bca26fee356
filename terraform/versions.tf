terraform {
  # terraform_data needs 1.4.
  required_version = ">= 1.4"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested with 5.100.0; 6.x is untested.
      version = ">= 5.0, < 6.0"
    }
  }
}
