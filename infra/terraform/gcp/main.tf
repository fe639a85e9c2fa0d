# What cluster/gcp.yaml needs around it: a bucket with lifecycle rules, the least-privilege
# service account of the workers ("fame-ray-node": this bucket only), and a network whose
# firewall allows traffic between cluster nodes and SSH from one CIDR (GCP's "default" network
# allows SSH from anywhere). Workers have no external IP: Cloud NAT gives them egress for pip.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

variable "project_id" {
  description = "GCP project (cluster/gcp.yaml provider.project_id)."
  type        = string
}

variable "region" {
  description = "Region of the subnet and bucket (cluster/gcp.yaml provider.region)."
  type        = string
  default     = "us-central1"
}

variable "bucket_name" {
  description = "Bucket for datasets and runs (globally unique)."
  type        = string
}

variable "ssh_cidr" {
  description = "The only CIDR allowed to SSH to the nodes (e.g. 203.0.113.7/32). Its prefix must be at least /8 (IPv4) or /32 (IPv6): neither the whole Internet (0.0.0.0/0, ::/0) nor a large share of it (0.0.0.0/1, 2000::/3)."
  type        = string
  validation {
    # A valid CIDR whose prefix length (after "/") is >= 8, or >= 32 for IPv6 (it has ":").
    # Comparing with the text "0.0.0.0/0" alone would let ::/0 and 0.0.0.0/1 through. try()
    # makes a malformed value false instead of an evaluation error.
    condition     = can(cidrhost(var.ssh_cidr, 0)) && try(tonumber(split("/", var.ssh_cidr)[1]) >= (strcontains(var.ssh_cidr, ":") ? 32 : 8), false)
    error_message = "ssh_cidr must be one CIDR with a prefix of at least /8 (IPv4) or /32 (IPv6), e.g. 203.0.113.7/32: a wider range opens SSH to much of the Internet."
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

resource "google_storage_bucket" "data" {
  name                        = var.bucket_name
  location                    = upper(var.region)
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      age            = 30
      matches_prefix = ["runs/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age = 2
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }
}

resource "google_service_account" "node" {
  account_id   = "fame-ray-node"
  display_name = "fame-ray Ray worker nodes"
}

resource "google_storage_bucket_iam_member" "node_objects" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.node.email}"
}

resource "google_compute_network" "cluster" {
  name                    = "fame-ray"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "cluster" {
  name                     = "fame-ray"
  network                  = google_compute_network.cluster.id
  region                   = var.region
  ip_cidr_range            = "10.42.0.0/20"
  private_ip_google_access = true
}

resource "google_compute_firewall" "intra_cluster" {
  name          = "fame-ray-intra-cluster"
  network       = google_compute_network.cluster.name
  description   = "Ray GCS, raylets, object transfer, dashboard: between cluster nodes only"
  source_ranges = [google_compute_subnetwork.cluster.ip_cidr_range]
  allow {
    protocol = "all"
  }
}

resource "google_compute_firewall" "ssh" {
  name          = "fame-ray-ssh"
  network       = google_compute_network.cluster.name
  description   = "SSH for ray up / ray attach / ray dashboard tunnels"
  source_ranges = [var.ssh_cidr]
  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_router" "cluster" {
  name    = "fame-ray"
  network = google_compute_network.cluster.id
  region  = var.region
}

resource "google_compute_router_nat" "cluster" {
  name                               = "fame-ray"
  router                             = google_compute_router.cluster.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"
}

output "bucket" {
  value = google_storage_bucket.data.name
}

output "worker_service_account" {
  description = "cluster/gcp.yaml: serviceAccounts[0].email of cpu_data and gpu_train"
  value       = google_service_account.node.email
}

output "subnetwork" {
  description = "cluster/gcp.yaml: networkInterfaces[0].subnetwork"
  value       = "regions/${var.region}/subnetworks/${google_compute_subnetwork.cluster.name}"
}
