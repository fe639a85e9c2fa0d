"""cluster/, jobs/ and infra/ specs, checked the way their consumers check them.

- Cluster launcher YAMLs (aws, gcp): the steps `ray up` takes before touching a cloud
  (`ray.autoscaler._private.commands._bootstrap_config`): `prepare_config` (fill the provider's
  defaults.yaml, merge setup commands, fill per-type min/max workers) then `validate_config`
  (the JSON schema ray/autoscaler/ray-schema.json plus Ray's own cross-field checks).
- cluster/local.yaml: the fake multinode provider ships no defaults file in the wheel, and the
  autoscaler inside the head reads the YAML as it is and calls `validate_config` on it
  (`StandardAutoscaler.reset`): so the raw file is validated.
- KubeRay manifests: parsed, and the fields the KubeRay CRDs require are present.
- Job configs: built into PretrainConfig / FinetuneConfig exactly as the CLI does.
- No credential literal anywhere.
No Ray instance is started here.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import jsonschema
import pytest
import yaml

from fame_ray import config as cfg
from fame_ray.config import presets
from fame_ray.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_YAMLS = ["cluster/aws.yaml", "cluster/gcp.yaml"]
LOCAL_YAML = "cluster/local.yaml"
KUBERAY_DIR = ROOT / "cluster" / "kuberay"
JOB_YAMLS = sorted(
    p.name for p in (ROOT / "jobs").glob("*.yaml") if not p.name.startswith(("runtime-env", "reproduce"))
)
STUDY_YAMLS = sorted(p.name for p in (ROOT / "jobs").glob("reproduce-*.yaml"))
RUNTIME_ENVS = sorted(p.name for p in (ROOT / "jobs").glob("runtime-env*.yaml"))


def load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


def ray_up_checks(config: dict) -> dict:
    """What `ray up` does with a launcher YAML before any cloud call; returns the filled config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    filled = prepare_config(copy.deepcopy(config))
    validate_config(filled)
    return filled


def autoscaler_checks(config: dict) -> None:
    """What the autoscaler inside the head does with its --autoscaling-config file."""
    from ray.autoscaler._private.util import validate_config

    validate_config(copy.deepcopy(config))


# ---------------------------------------------------------------------------------------
# launcher YAMLs against Ray's own validation


@pytest.mark.parametrize("path", LAUNCHER_YAMLS)
def test_launcher_yaml_passes_ray_up_validation(path):
    filled = ray_up_checks(load(path))
    assert filled["head_node_type"] in filled["available_node_types"]


def test_local_yaml_passes_autoscaler_validation():
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_TYPE

    config = load(LOCAL_YAML)
    autoscaler_checks(config)
    assert config["provider"]["type"] == "fake_multinode"
    # The fake provider registers the head under this fixed type name.
    assert config["head_node_type"] == FAKE_HEAD_NODE_TYPE
    assert config["provider"]["use_node_id_as_ip"] is True


MUTATIONS = {
    "misspelt top-level key": lambda c: c.__setitem__("setup_comands", c.pop("setup_commands")),
    "misspelt node-type key": lambda c: c["available_node_types"][worker_type(c)].__setitem__("min_worker", 1),
    "misspelt head key": lambda c: c.__setitem__("head_node_typ", c.pop("head_node_type")),
    "fractional resource": lambda c: c["available_node_types"][worker_type(c)]["resources"].__setitem__("CPU", 0.5),
    "unknown head type": lambda c: c.__setitem__("head_node_type", "no-such-type"),
    "min above global max": lambda c: c["available_node_types"][worker_type(c)].__setitem__("min_workers", 99),
}


def worker_type(config: dict) -> str:
    return next(name for name in config["available_node_types"] if name != config["head_node_type"])


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize("path", LAUNCHER_YAMLS + [LOCAL_YAML])
def test_a_drifted_cluster_yaml_fails(path, mutation):
    config = load(path)
    MUTATIONS[mutation](config)
    check = autoscaler_checks if path == LOCAL_YAML else ray_up_checks
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        check(config)


def test_a_misspelt_aws_security_group_key_fails():
    config = load("cluster/aws.yaml")
    config["provider"]["security_group"] = {"GroupNam": config["provider"]["security_group"]["GroupName"]}
    with pytest.raises(jsonschema.ValidationError, match="GroupNam"):
        ray_up_checks(config)


# ---------------------------------------------------------------------------------------
# the shape and the security properties the README promises


@pytest.mark.parametrize("path", LAUNCHER_YAMLS + [LOCAL_YAML])
def test_cluster_has_a_cpu_data_and_a_gpu_train_worker_type(path):
    types = load(path)["available_node_types"]
    assert types["cpu_data"]["resources"]["CPU"] >= 1 and "GPU" not in types["cpu_data"]["resources"]
    assert types["gpu_train"]["resources"]["GPU"] >= 1
    for name in ("cpu_data", "gpu_train"):
        assert 0 <= types[name]["min_workers"] < types[name]["max_workers"], name


@pytest.mark.parametrize("path", LAUNCHER_YAMLS)
def test_token_auth_dashboard_and_install_on_every_node(path):
    config = load(path)
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "RAY_AUTH_MODE=token" in command, command
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start
    # The token file is copied from the user's machine: never inlined.
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # One install recipe for every node: the global setup commands, no per-type overrides.
    assert not config["worker_setup_commands"]
    assert all("worker_setup_commands" not in t for t in config["available_node_types"].values())
    setup = " ".join(config["setup_commands"])
    assert '"torch==2.13.0"' in setup and "pip install --quiet -e ~/fame-ray" in setup


def test_aws_nodes_use_instance_profiles_spot_workers_and_the_terraform_group():
    config = load("cluster/aws.yaml")
    types = config["available_node_types"]
    for name, node_type in types.items():
        assert "Name" in node_type["node_config"]["IamInstanceProfile"], name
        assert node_type["node_config"]["MetadataOptions"]["HttpTokens"] == "required", name
    assert types["head"]["node_config"]["IamInstanceProfile"]["Name"] == "fame-ray-head"
    for name in ("cpu_data", "gpu_train"):
        assert types[name]["node_config"]["IamInstanceProfile"]["Name"] == "fame-ray-worker"
        assert types[name]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert "InstanceMarketOptions" not in types["head"]["node_config"]
    # The group Terraform creates (SSH from one CIDR), so Ray does not open SSH to the world.
    terraform = "".join(p.read_text() for p in (ROOT / "infra/terraform/aws").glob("*.tf"))
    assert f'"{config["provider"]["security_group"]["GroupName"]}"' in terraform
    for profile in ("fame-ray-head", "fame-ray-worker"):
        assert f'"{profile}"' in terraform


def test_gcp_workers_use_a_service_account_and_are_preemptible():
    types = load("cluster/gcp.yaml")["available_node_types"]
    for name in ("cpu_data", "gpu_train"):
        node_config = types[name]["node_config"]
        assert node_config["serviceAccounts"][0]["email"].startswith("fame-ray-node@")
        assert node_config["scheduling"]["preemptible"] is True
        # Workers have no external address (no accessConfigs): reachable in the VPC only.
        assert all("accessConfigs" not in nic for nic in node_config["networkInterfaces"])


# ---------------------------------------------------------------------------------------
# KubeRay


def kuberay_documents() -> list[tuple[str, dict]]:
    documents = []
    for path in sorted(KUBERAY_DIR.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append((str(path.relative_to(ROOT)), document))
    return documents


def check_pod_template(template: dict, where: str) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers, where
    for container in containers:
        assert container["image"], where
        check_token_env(container.get("env", []), f"{where}/{container['name']}")
    return containers


def check_token_env(env: list[dict], where: str) -> None:
    values = {e["name"]: e for e in env}
    assert values["RAY_AUTH_MODE"]["value"] == "token", where
    token = values["RAY_AUTH_TOKEN"]
    assert "value" not in token, f"{where}: token literal"
    assert token["valueFrom"]["secretKeyRef"]["key"] == "auth_token", where


def check_ray_cluster_spec(spec: dict, where: str) -> None:
    assert spec["enableInTreeAutoscaling"] is True, where
    check_token_env(spec["autoscalerOptions"]["env"], f"{where}/autoscaler")
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), where
    assert head.get("serviceType", "ClusterIP") == "ClusterIP", where
    check_pod_template(head["template"], f"{where}/head")
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-data", "gpu-train"}, where
    for name, group in groups.items():
        assert isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], name
        assert group["maxReplicas"] > group["minReplicas"], f"{name}: no room to autoscale"
        check_pod_template(group["template"], f"{where}/{name}")
    gpu_limits = groups["gpu-train"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1


def test_kuberay_manifests_name_what_kuberay_requires():
    kinds = {}
    for where, document in kuberay_documents():
        assert document["apiVersion"] and document["kind"] and document["metadata"]["name"], where
        kinds.setdefault(document["kind"], []).append((where, document))
        if document["kind"] == "RayCluster":
            assert document["apiVersion"] == "ray.io/v1"
            check_ray_cluster_spec(document["spec"], where)
        elif document["kind"] == "RayJob":
            assert document["apiVersion"] == "ray.io/v1"
            check_ray_cluster_spec(document["spec"]["rayClusterSpec"], where)
            check_pod_template(document["spec"]["submitterPodTemplate"], f"{where}/submitter")
    assert set(kinds) >= {"RayCluster", "RayJob", "ServiceAccount"}


def test_rayjob_runs_a_job_config_that_exists_and_builds():
    [(where, job)] = [(w, d) for w, d in kuberay_documents() if d["kind"] == "RayJob"]
    entrypoint = job["spec"]["entrypoint"].split()
    assert entrypoint[:2] == ["fame-ray", "pretrain"], where
    config_file = entrypoint[entrypoint.index("--config") + 1]
    build_job(ROOT / config_file)


# ---------------------------------------------------------------------------------------
# job configs


def build_job(path: Path):
    """Build a job YAML the way `fame-ray pretrain/finetune --config FILE` does."""
    values = cfg.load_yaml(path)
    if path.name.startswith("pretrain"):
        return cfg.build(cfg.PretrainConfig, presets.get(presets.PRETRAIN, "recipe"), values)
    return cfg.build(cfg.FinetuneConfig, presets.get(presets.FINETUNE, "recipe"), values)


def test_the_expected_jobs_exist():
    assert set(JOB_YAMLS) >= {
        "pretrain-k400-i3d.yaml",
        "pretrain-ucf101-r21d.yaml",
        "finetune-ucf101.yaml",
        "finetune-hmdb51.yaml",
        "pretrain-demo.yaml",
    }


@pytest.mark.parametrize("name", JOB_YAMLS)
def test_job_config_builds(name):
    config = build_job(ROOT / "jobs" / name)
    assert config.preset == cfg.load_yaml(ROOT / "jobs" / name)["preset"]


@pytest.mark.parametrize("name", JOB_YAMLS)
def test_job_config_is_complete_whatever_the_base_preset(name):
    """A job file is the whole recipe: built over the demo preset it gives the same config."""
    path = ROOT / "jobs" / name
    values = cfg.load_yaml(path)
    cls, table = (
        (cfg.PretrainConfig, presets.PRETRAIN)
        if name.startswith("pretrain")
        else (cfg.FinetuneConfig, presets.FINETUNE)
    )
    over_recipe = cfg.to_dict(cfg.build(cls, presets.get(table, "recipe"), values))
    over_demo = cfg.to_dict(cfg.build(cls, presets.get(table, "demo"), values))
    assert over_recipe == over_demo


@pytest.mark.parametrize("name", JOB_YAMLS)
def test_a_misspelt_job_key_fails(name):
    values = cfg.load_yaml(ROOT / "jobs" / name)
    values["train"]["num_worker"] = values["train"].pop("num_workers")
    cls = cfg.PretrainConfig if name.startswith("pretrain") else cfg.FinetuneConfig
    with pytest.raises(ConfigError, match="num_worker"):
        cfg.build(cls, {}, values)


@pytest.mark.parametrize("name", STUDY_YAMLS)
def test_study_job_builds_every_stage_and_refuses_a_misspelt_key(name):
    """A study job (`fame-ray reproduce --config FILE`) builds, and so does every stage it plans
    (its pretraining and downstream job files, relative to it); a misspelt key is refused."""
    from fame_ray.study.plan import plan_stages

    values = cfg.load_yaml(ROOT / "jobs" / name)
    study = cfg.build(cfg.StudyConfig, cfg.StudyConfig(), values)
    stages = plan_stages(study, str(ROOT / "jobs"))
    assert stages and {"pretrain", "finetune"} <= {stage.kind for stage in stages}, stages
    values["methodz"] = values.pop("methods")
    with pytest.raises(ConfigError, match="methodz"):
        cfg.build(cfg.StudyConfig, cfg.StudyConfig(), values)


def test_paper_recipes_are_what_fame_md_says():
    k400 = build_job(ROOT / "jobs/pretrain-k400-i3d.yaml")
    assert (k400.model.arch, k400.data.crop_size, k400.moco.queue_size, k400.train.global_batch) == (
        "i3d",
        224,
        65536,
        64,
    )
    assert k400.model.use_mlp_head is True and k400.train.use_gpu
    ucf = build_job(ROOT / "jobs/pretrain-ucf101-r21d.yaml")
    assert (ucf.model.arch, ucf.moco.queue_size, ucf.model.use_mlp_head) == ("r2plus1d_18", 2048, True)
    for name in ("finetune-ucf101.yaml", "finetune-hmdb51.yaml"):
        finetune = build_job(ROOT / "jobs" / name)
        assert (finetune.optim.lr, finetune.dropout, finetune.optim.milestones, finetune.train.epochs) == (
            0.025,
            0.7,
            (60, 120),
            150,
        )


@pytest.mark.parametrize("name", RUNTIME_ENVS)
def test_runtime_env_is_a_valid_ray_runtime_env(name):
    from ray.runtime_env import RuntimeEnv

    values = yaml.safe_load((ROOT / "jobs" / name).read_text())
    assert set(values) <= RuntimeEnv.known_fields, set(values) - RuntimeEnv.known_fields
    RuntimeEnv(**values)  # type checks (env_vars must be str -> str, ...)
    assert ".venv" in values["excludes"] and ".git" in values["excludes"]
    assert not any(re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", key) for key in values["env_vars"])


# Files that hold secrets in a working directory: never uploaded with a job, never committed.
SECRET_PATTERNS = (".env", "*.tfstate*", "terraform.tfvars", ".terraform/")
SECRET_FILES = (
    ".env",
    "infra/terraform/aws/terraform.tfstate",
    "infra/terraform/aws/terraform.tfstate.backup",
    "infra/terraform/gcp/.terraform.tfstate.lock.info",
    "infra/terraform/aws/terraform.tfvars",
    "infra/terraform/aws/.terraform/providers/registry/aws/credentials",
)
KEPT_FILES = (
    "fame_ray/cli.py",
    "infra/terraform/aws/terraform.tfvars.example",
    "infra/terraform/aws/main.tf",
    "docs/env.md",
)


def packaged_names(workdir: Path, excludes: list[str], include_gitignore: bool) -> set[str]:
    """What `ray job submit --working-dir` would upload: Ray's own packing of the folder."""
    from zipfile import ZipFile

    from ray._private.runtime_env.packaging import _zip_files

    package = workdir.parent / f"{workdir.name}.zip"
    _zip_files(str(workdir), excludes, str(package), include_gitignore=include_gitignore)
    with ZipFile(package) as archive:
        return {name.rstrip("/") for name in archive.namelist()}


def fake_workdir(tmp_path: Path) -> Path:
    workdir = tmp_path / "repo"
    for name in SECRET_FILES + KEPT_FILES:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text("x")
    return workdir


@pytest.mark.parametrize("name", RUNTIME_ENVS)
def test_runtime_env_never_uploads_secret_files(name, tmp_path):
    excludes = yaml.safe_load((ROOT / "jobs" / name).read_text())["excludes"]
    assert set(SECRET_PATTERNS) <= set(excludes), set(SECRET_PATTERNS) - set(excludes)
    uploaded = packaged_names(fake_workdir(tmp_path), excludes, include_gitignore=False)
    assert set(KEPT_FILES) <= uploaded
    assert not uploaded & set(SECRET_FILES), uploaded & set(SECRET_FILES)


def test_gitignore_keeps_secret_files_out_of_git_and_of_uploads(tmp_path):
    lines = (ROOT / ".gitignore").read_text().splitlines()
    assert set(SECRET_PATTERNS) <= set(lines), set(SECRET_PATTERNS) - set(lines)
    # Ray also reads .gitignore when packing a working dir (unless told not to).
    workdir = fake_workdir(tmp_path)
    (workdir / ".gitignore").write_text("\n".join(lines) + "\n")
    uploaded = packaged_names(workdir, [], include_gitignore=True)
    assert set(KEPT_FILES) <= uploaded and not uploaded & set(SECRET_FILES)


# ---------------------------------------------------------------------------------------
# no credential literal in any spec

SECRET_KEY = re.compile(r"(?i)(secret|password|passwd|access_key|auth_token|session_token|api_key|private_key)")
SECRET_TEXT = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}"),
    re.compile(r"(?i)RAY_AUTH_TOKEN=[A-Za-z0-9]{16,}"),
]
SPEC_FILES = sorted(
    p
    for folder in ("cluster", "jobs", "infra")
    for p in (ROOT / folder).rglob("*")
    if p.is_file() and p.suffix in {".yaml", ".yml", ".tf", ".sh", ".json", ".md", ".env", ".hcl"}
)


def literal_secrets(node, where="") -> list[str]:
    """Keys that look like credentials and hold a literal (not ${VAR}, a path or a secret reference)."""
    found = []
    if isinstance(node, dict):
        name = node.get("name")
        if isinstance(name, str) and SECRET_KEY.search(name) and isinstance(node.get("value"), str):
            found.append(f"{where}/{name}")
        for key, value in node.items():
            # A ${VAR} reference or a file path (the token file mount) is not a literal.
            if (
                isinstance(value, str)
                and SECRET_KEY.search(str(key))
                and value
                and not value.startswith(("${", "~/", "/"))
            ):
                found.append(f"{where}/{key}")
            found += literal_secrets(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += literal_secrets(value, f"{where}[{index}]")
    return found


def test_spec_files_exist():
    assert len(SPEC_FILES) >= 15


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credential_literal(path):
    text = path.read_text()
    for pattern in SECRET_TEXT:
        assert not pattern.search(text), f"{path}: {pattern.pattern}"
    if path.suffix in {".yaml", ".yml"}:
        for document in yaml.safe_load_all(text):
            assert not literal_secrets(document), f"{path}: {literal_secrets(document)}"


def test_the_credential_scan_catches_literals():
    assert literal_secrets({"env": [{"name": "RAY_AUTH_TOKEN", "value": "abc"}]})
    assert literal_secrets({"environment": {"MINIO_ROOT_PASSWORD": "hunter22"}})
    assert not literal_secrets({"environment": {"MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:?set it}"}})
    assert not literal_secrets(
        {"env": [{"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "auth_token"}}}]}
    )
    assert SECRET_TEXT[0].search("key AKIAABCDEFGHIJKLMNOP")


# ---------------------------------------------------------------------------------------
# infra


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary")
@pytest.mark.parametrize("folder", ["aws", "gcp"])
def test_terraform_parses_and_is_formatted(folder, tmp_path):
    """`terraform fmt -check` parses every .tf file offline (exit 2 on a syntax error, 3 on drift).

    `terraform validate` would need `terraform init`, which downloads providers from
    registry.terraform.io: not reachable here (infra/terraform/README.md says how to run it).
    """
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1"}
    checked = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", str(ROOT / "infra/terraform" / folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "broken.tf"
    broken.write_text('resource "aws_s3_bucket" "x" {\n  bucket = \n}\n')
    assert (
        subprocess.run(["terraform", "fmt", "-check", str(broken)], env=env, capture_output=True, timeout=60).returncode
        != 0
    )


def test_minio_compose_binds_loopback_and_takes_credentials_from_the_environment():
    compose = load("infra/minio/docker-compose.yml")
    minio = compose["services"]["minio"]
    assert all(str(port).startswith("127.0.0.1:") for port in minio["ports"])
    for service in compose["services"].values():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or "USER" in key:
                assert value.startswith("${") and ":?" in value, key
    assert compose["services"]["create-bucket"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_minio_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "infra/minio/run-minio.sh")], capture_output=True).returncode == 0


SSH_CIDR_FILES = ["infra/terraform/aws/variables.tf", "infra/terraform/gcp/main.tf"]
# Wider than /8 (IPv4) or /32 (IPv6), or not one CIDR: SSH must never face that much of the Internet.
WIDE_OR_BAD_CIDRS = [
    "0.0.0.0/0",
    "::/0",
    "0.0.0.0/1",
    "10.0.0.0/7",
    "2000::/3",
    "2001:db8::/31",
    "not-a-cidr",
    "10.0.0.1",
]
NARROW_CIDRS = ["203.0.113.7/32", "10.0.0.0/8", "2001:db8::/32", "2001:db8::1/128"]


def ssh_cidr_block(relative: str) -> str:
    """The `variable "ssh_cidr" { ... }` block of a .tf file (it ends at the first closing brace
    in column 0)."""
    text = (ROOT / relative).read_text()
    start = text.index('variable "ssh_cidr"')
    return text[start : text.index("\n}\n", start) + 3]


@pytest.mark.parametrize("path", SSH_CIDR_FILES)
def test_ssh_cidr_check_reads_the_prefix_length(path):
    block = ssh_cidr_block(path)
    assert '!= "0.0.0.0/0"' not in block  # a literal lets ::/0 and 0.0.0.0/1 through
    assert 'split("/", var.ssh_cidr)' in block and "32" in block and "8" in block


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary")
@pytest.mark.parametrize("path", SSH_CIDR_FILES)
def test_ssh_cidr_validation_refuses_wide_ranges(path, tmp_path):
    """Terraform itself runs the validation: a module holding only the variable needs no
    provider, so `init` and `plan` work offline."""
    (tmp_path / "ssh.tf").write_text(ssh_cidr_block(path))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
    terraform = functools.partial(subprocess.run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert terraform(["terraform", "init", "-backend=false", "-no-color"]).returncode == 0
    accepted = set()
    for cidr in WIDE_OR_BAD_CIDRS + NARROW_CIDRS:
        planned = terraform(
            ["terraform", "plan", "-no-color", "-lock=false", "-refresh=false", "-var", f"ssh_cidr={cidr}"]
        )
        assert planned.returncode == 0 or "Invalid value for variable" in planned.stderr, planned.stderr
        if planned.returncode == 0:
            accepted.add(cidr)
    assert accepted == set(NARROW_CIDRS)


def test_minio_script_keeps_the_password_off_every_command_line(tmp_path):
    """run-minio.sh with stand-ins for minio, mc and curl that log their arguments: the password
    must reach mc through its environment (MC_HOST_<alias>), never as an argument `ps` shows."""
    password = "pw-With/special@chars+42:%"
    fake_bin, calls = tmp_path / "bin", tmp_path / "calls.log"
    fake_bin.mkdir()
    for name in ("minio", "mc", "curl"):
        record_env = f'env | grep "^MC_HOST_" >> "{calls}.env"\n' if name == "mc" else ""
        (fake_bin / name).write_text(f'#!/bin/sh\nprintf "%s\\n" "{name} $*" >> "{calls}"\n{record_env}exit 0\n')
        (fake_bin / name).chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MINIO_ROOT_USER": "fame-ray-admin",
        "MINIO_ROOT_PASSWORD": password,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "infra/minio/run-minio.sh"), str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The stand-in server exits at once, so the script's exit trap finds nothing to stop; what
    # counts is that it got through bucket creation to its closing message.
    assert "MinIO at" in done.stdout, done.stderr
    arguments = calls.read_text()
    assert "mc mb --ignore-existing" in arguments and "minio server" in arguments
    assert password not in arguments and urllib.parse.quote(password, safe="") not in arguments
    assert urllib.parse.quote(password, safe="") in (tmp_path / "calls.log.env").read_text()
    assert password not in done.stdout + done.stderr


def test_minio_compose_bucket_job_keeps_the_password_off_every_command_line(tmp_path):
    """The create-bucket job's shell command, run with a stand-in mc that logs its arguments and
    its stdin: the keys must reach `mc alias set` on stdin, never as arguments."""
    password = "pw-With/special@chars+42:%"
    job = load("infra/minio/docker-compose.yml")["services"]["create-bucket"]
    script = job["command"][0].replace("$$", "$")  # compose's escape for a literal $
    fake_bin, calls = tmp_path / "bin", tmp_path / "calls.log"
    fake_bin.mkdir()
    (fake_bin / "mc").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "mc $*" >> "{calls}"\n'
        f'if [ "$1 $2" = "alias set" ]; then cat >> "{calls}.stdin"; fi\nexit 0\n'
    )
    (fake_bin / "mc").chmod(0o755)
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "MINIO_ROOT_USER": "fame-ray-admin",
        "MINIO_ROOT_PASSWORD": password,
        "BUCKET": "fame-ray",
    }
    subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    arguments = calls.read_text()
    assert "mc mb --ignore-existing local/fame-ray" in arguments and password not in arguments
    assert (tmp_path / "calls.log.stdin").read_text().splitlines() == ["fame-ray-admin", password]
