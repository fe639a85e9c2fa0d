variable "region" {
  description = "AWS region of the bucket and the cluster (cluster/aws.yaml provider.region)."
  type        = string
  default     = "us-west-2"
}

variable "bucket_name" {
  description = "Name of the S3 bucket for datasets, runs and checkpoints (globally unique)."
  type        = string
}

variable "cluster_name" {
  description = "cluster_name in cluster/aws.yaml: the head may only terminate instances tagged with it."
  type        = string
  default     = "fame-ray"
}

variable "ssh_cidr" {
  description = "The only CIDR allowed to SSH to the nodes (your office / VPN egress, e.g. 203.0.113.7/32). Its prefix must be at least /8 (IPv4) or /32 (IPv6): neither the whole Internet (0.0.0.0/0, ::/0) nor a large share of it (0.0.0.0/1, 2000::/3)."
  type        = string

  validation {
    # A valid CIDR whose prefix length (after "/") is >= 8, or >= 32 for IPv6 (it has ":").
    # Comparing with the text "0.0.0.0/0" alone would let ::/0 and 0.0.0.0/1 through. try()
    # makes a malformed value false instead of an evaluation error.
    condition     = can(cidrhost(var.ssh_cidr, 0)) && try(tonumber(split("/", var.ssh_cidr)[1]) >= (strcontains(var.ssh_cidr, ":") ? 32 : 8), false)
    error_message = "ssh_cidr must be one CIDR with a prefix of at least /8 (IPv4) or /32 (IPv6), e.g. 203.0.113.7/32: a wider range opens SSH to much of the Internet."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster; empty = the region's default VPC (where `ray up` puts nodes without SubnetIds)."
  type        = string
  default     = ""
}

variable "checkpoint_prefix" {
  description = "Prefix of the runs in the bucket (fame-ray --storage s3://BUCKET/<prefix>)."
  type        = string
  default     = "runs/"
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it is expired."
  type        = number
  default     = 30
}

variable "checkpoint_ia_days" {
  description = "Days after which run objects move to STANDARD_IA (old checkpoints are rarely read)."
  type        = number
  default     = 30
}

variable "checkpoint_expire_days" {
  description = "Days after which run objects (checkpoints, metrics) are deleted; 0 = never."
  type        = number
  default     = 0
}
