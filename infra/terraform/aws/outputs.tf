output "bucket" {
  description = "Use as --storage s3://<bucket>/runs and data roots s3://<bucket>/datasets/..."
  value       = aws_s3_bucket.data.bucket
}

output "head_instance_profile" {
  description = "cluster/aws.yaml: available_node_types.head.node_config.IamInstanceProfile.Name"
  value       = aws_iam_instance_profile.head.name
}

output "worker_instance_profile" {
  description = "cluster/aws.yaml: IamInstanceProfile.Name of cpu_data and gpu_train"
  value       = aws_iam_instance_profile.worker.name
}

output "worker_role_arn" {
  description = "For KubeRay on EKS: the role of cluster/kuberay/serviceaccount.yaml (add an IRSA trust first)"
  value       = aws_iam_role.worker.arn
}

output "security_group" {
  description = "cluster/aws.yaml: provider.security_group.GroupName"
  value       = aws_security_group.nodes.name
}

output "vpc_id" {
  value = data.aws_vpc.cluster.id
}
