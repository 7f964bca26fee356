# The module against a local sandbox (`nodeswap sandbox up`): Terraform creates a worker group in the
# sandbox's VPC, the sandbox's cluster turns its instances into nodes, and changing `image` rolls them
# with nodeswap in the same apply.

provider "aws" {
  region     = var.region
  access_key = var.access_key
  secret_key = var.secret_key

  # The sandbox serves every AWS service on one endpoint, with dummy credentials and no metadata API.
  endpoints {
    autoscaling = var.endpoint
    ec2         = var.endpoint
    iam         = var.endpoint
    sts         = var.endpoint
  }
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  # The account id comes from the sandbox's STS: without it the provider leaves it out of the ARNs it
  # builds itself (the launch template's), and nodeswap's policy would name no real template.
  skip_requesting_account_id = false

  # nodeswap's rollout record lives in the group's nodeswap.io/* tags; Terraform leaves them alone.
  ignore_tags {
    key_prefixes = ["nodeswap.io/"]
  }
}

# The sandbox's world, as its seeding made it: one VPC besides the default one, a subnet per zone, and
# two AMIs tagged nodeswap-sandbox:image = old / new.
data "aws_vpc" "sandbox" {
  filter {
    name   = "is-default"
    values = ["false"]
  }
}

data "aws_subnets" "sandbox" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.sandbox.id]
  }
}

data "aws_ami" "node" {
  owners = ["self"]
  filter {
    name   = "tag:nodeswap-sandbox:image"
    values = [var.image]
  }
}

module "workers" {
  source = "../.."

  name             = var.name
  image_id         = data.aws_ami.node.id
  instance_type    = "m5.large"
  subnet_ids       = data.aws_subnets.sandbox.ids
  min_size         = 3
  max_size         = 4 # a surge of 3 needs 6: nodeswap raises MaxSize for the rollout, then restores it
  desired_capacity = 3
  tags             = { team = "platform" }

  replace_on_apply = true
  nodeswap_command = var.nodeswap_command
  # nodeswap talks to the same AWS as Terraform, and to the sandbox's cluster.
  nodeswap_environment = merge(
    {
      AWS_ENDPOINT_URL      = var.endpoint
      AWS_ACCESS_KEY_ID     = var.access_key
      AWS_SECRET_ACCESS_KEY = var.secret_key
    },
    var.kubeconfig == null ? {} : { KUBECONFIG = var.kubeconfig },
  )

  create_iam_policy = true
}
