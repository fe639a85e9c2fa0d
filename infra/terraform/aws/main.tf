# What a fame-ray cluster on AWS needs around it (cluster/aws.yaml refers to these by name):
# - an S3 bucket for datasets and runs: private, encrypted, versioned, with lifecycle rules;
# - two IAM roles with instance profiles: "fame-ray-worker" (this bucket only) and
#   "fame-ray-head" (this bucket + launching/terminating the cluster's own instances);
# - the security group "fame-ray-nodes": all traffic between cluster nodes, SSH from one CIDR.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_vpc" "cluster" {
  id      = var.vpc_id != "" ? var.vpc_id : null
  default = var.vpc_id == "" ? true : null
}

# ----------------------------------------------------------------------------------------
# bucket

resource "aws_s3_bucket" "data" {
  bucket = var.bucket_name
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
    bucket_key_enabled = true
  }
}

# Versioning: a checkpoint overwritten or deleted by mistake (keep_checkpoints pruning, a wrong
# --run-name) can be restored for noncurrent_version_days.
resource "aws_s3_bucket_versioning" "data" {
  bucket = aws_s3_bucket.data.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket     = aws_s3_bucket.data.id
  depends_on = [aws_s3_bucket_versioning.data]

  # Checkpoint uploads are multipart; a worker lost mid-upload (spot) leaves parts behind.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 2
    }
  }

  # fame-ray prunes old checkpoints itself (train.keep_checkpoints); their versions linger here.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "age-out-runs"
    status = "Enabled"
    filter {
      prefix = var.checkpoint_prefix
    }
    transition {
      days          = var.checkpoint_ia_days
      storage_class = "STANDARD_IA"
    }
    dynamic "expiration" {
      for_each = var.checkpoint_expire_days > 0 ? [var.checkpoint_expire_days] : []
      content {
        days = expiration.value
      }
    }
  }
}

# TLS only.
resource "aws_s3_bucket_policy" "data" {
  bucket     = aws_s3_bucket.data.id
  depends_on = [aws_s3_bucket_public_access_block.data]
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
}

# ----------------------------------------------------------------------------------------
# node roles

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Read datasets, read/write/delete runs: this bucket and nothing else.
data "aws_iam_policy_document" "bucket_access" {
  statement {
    sid       = "ListTheBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.data.arn]
  }
  statement {
    sid = "ObjectsInTheBucket"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.data.arn}/*"]
  }
}

resource "aws_iam_policy" "bucket_access" {
  name   = "fame-ray-bucket-access"
  policy = data.aws_iam_policy_document.bucket_access.json
}

resource "aws_iam_role" "worker" {
  name               = "fame-ray-worker"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "worker_bucket" {
  role       = aws_iam_role.worker.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

resource "aws_iam_instance_profile" "worker" {
  name = "fame-ray-worker"
  role = aws_iam_role.worker.name
}

# The head runs Ray's autoscaler: it launches workers with the worker profile and may stop or
# terminate only instances tagged with this cluster's name.
data "aws_iam_policy_document" "autoscaler" {
  statement {
    sid = "Describe"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeImages",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeAvailabilityZones",
    ]
    resources = ["*"]
  }
  statement {
    sid     = "LaunchWorkers"
    actions = ["ec2:RunInstances"]
    resources = [
      "arn:${data.aws_partition.current.partition}:ec2:${var.region}:${data.aws_caller_identity.current.account_id}:*",
      "arn:${data.aws_partition.current.partition}:ec2:${var.region}::image/*",
    ]
  }
  statement {
    sid       = "TagAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${var.region}:${data.aws_caller_identity.current.account_id}:*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
  statement {
    sid       = "ManageOwnInstances"
    actions   = ["ec2:TerminateInstances", "ec2:StopInstances", "ec2:StartInstances", "ec2:CreateTags", "ec2:DeleteTags"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${var.region}:${data.aws_caller_identity.current.account_id}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/ray-cluster-name"
      values   = [var.cluster_name]
    }
  }
  statement {
    sid       = "PassOnlyTheWorkerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.worker.arn]
  }
  # The first spot launch in an account creates EC2's spot service-linked role.
  statement {
    sid       = "SpotServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["spot.amazonaws.com"]
    }
  }
  statement {
    sid       = "ReadInstanceProfiles"
    actions   = ["iam:GetInstanceProfile"]
    resources = [aws_iam_instance_profile.worker.arn]
  }
  # cluster/aws.yaml names its AMI as resolve:ssm:/aws/service/deeplearning/...
  statement {
    sid       = "ResolvePublicAmiParameters"
    actions   = ["ssm:GetParameters", "ssm:GetParameter"]
    resources = ["arn:${data.aws_partition.current.partition}:ssm:${var.region}::parameter/aws/service/*"]
  }
}

resource "aws_iam_policy" "autoscaler" {
  name   = "fame-ray-autoscaler"
  policy = data.aws_iam_policy_document.autoscaler.json
}

resource "aws_iam_role" "head" {
  name               = "fame-ray-head"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "head_bucket" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.bucket_access.arn
}

resource "aws_iam_role_policy_attachment" "head_autoscaler" {
  role       = aws_iam_role.head.name
  policy_arn = aws_iam_policy.autoscaler.arn
}

resource "aws_iam_instance_profile" "head" {
  name = "fame-ray-head"
  role = aws_iam_role.head.name
}

# ----------------------------------------------------------------------------------------
# network: Ray finds this group by name (provider.security_group.GroupName) and, since it
# already has rules, adds none of its own (its default opens SSH to 0.0.0.0/0).

resource "aws_security_group" "nodes" {
  name        = "fame-ray-nodes"
  description = "fame-ray Ray nodes: intra-cluster traffic, SSH from one CIDR"
  vpc_id      = data.aws_vpc.cluster.id
}

resource "aws_vpc_security_group_ingress_rule" "intra_cluster" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Ray GCS, raylets, object transfer, dashboard: between cluster nodes only"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.nodes.id
  description       = "SSH for ray up / ray attach / ray dashboard tunnels"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.ssh_cidr
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.nodes.id
  description       = "pip, S3, EC2 API"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
