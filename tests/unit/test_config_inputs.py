"""Bad values are refused when the config is built (before Ray, before any write), each with one
ConfigError that names the flag: run names that would leave the storage root, locations in
schemes fame-ray does not speak, S3 endpoints that are not URLs or carry credentials, malformed
values, and config files that are not YAML mappings."""

from __future__ import annotations

import pytest

from fame_ray.config import FinetuneConfig, PretrainConfig, build, load_yaml, presets
from fame_ray.errors import ConfigError


def pretrain(values: dict, overrides: list[str] | None = None) -> PretrainConfig:
    return build(PretrainConfig, presets.demo_pretrain(), values, None, overrides)


def finetune(values: dict) -> FinetuneConfig:
    return build(FinetuneConfig, presets.demo_finetune(), values)


def refused(make, *args) -> str:
    """The one-line message of the ConfigError that `make(*args)` raises."""
    with pytest.raises(ConfigError) as error:
        make(*args)
    line = error.value.one_line()
    assert "\n" not in line
    return line


# ---------------------------------------------------------------------------------------
# run names

BAD_RUN_NAMES = [
    "../../X",
    "..",
    ".",
    ".hidden",
    "/tmp/elsewhere",
    "a/b",
    "a\\b",
    "with space",
    "tab\there",
    "x" * 300,
    "naïve",
]
GOOD_RUN_NAMES = ["pretrain-synthetic-tiny", "my_run.2", "A-1", "0"]


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_run_names_that_are_not_plain_names_are_refused(name):
    assert "--run-name" in refused(pretrain, {"storage": {"run_name": name}})
    assert "--resume" in refused(pretrain, {"storage": {"resume": name}})
    assert "--run-name" in refused(finetune, {"storage": {"run_name": name}})


@pytest.mark.parametrize("name", GOOD_RUN_NAMES)
def test_plain_run_names_are_accepted(name):
    assert pretrain({"storage": {"run_name": name}}).run_name() == name
    assert pretrain({"storage": {"resume": name}}).run_name() == name


# ---------------------------------------------------------------------------------------
# locations and endpoints

BAD_URIS = [
    "ftp://host/x",
    "gs://bucket/x",
    "S3://bucket/x",
    "file:///tmp/x",
    "s3://",
    "s3://user:secret-word@bucket/x",
]
LOCATION_KEYS = [
    (pretrain, {"storage": {"path": "URI"}}, "--storage"),
    (pretrain, {"data": {"data_root": "URI"}}, "--data-root"),
    (pretrain, {"data": {"dataset": "csv", "csv_path": "URI"}}, "--csv"),
    (pretrain, {"data": {"manifest_dir": "URI"}}, "--out"),
    (finetune, {"pretrained": "URI"}, "--pretrained"),
]


def _with(values, uri):
    return {k: (_with(v, uri) if isinstance(v, dict) else uri if v == "URI" else v) for k, v in values.items()}


@pytest.mark.parametrize("uri", BAD_URIS)
@pytest.mark.parametrize("make, values, flag", LOCATION_KEYS, ids=[flag for _, _, flag in LOCATION_KEYS])
def test_locations_in_other_schemes_are_refused_at_build_time(make, values, flag, uri):
    line = refused(make, _with(values, uri))
    assert flag in line and "secret-word" not in line


def test_data_home_in_another_scheme_is_refused(monkeypatch):
    monkeypatch.setenv("FAME_RAY_DATA", "gs://bucket/data")
    assert "FAME_RAY_DATA" in refused(pretrain, {"data": {"dataset": "ucf101"}})


def test_local_and_s3_locations_are_accepted(tmp_path):
    assert (
        pretrain({"storage": {"path": str(tmp_path)}, "data": {"data_root": "s3://bucket/ucf"}}).data.data_root
        == "s3://bucket/ucf"
    )
    assert finetune({"pretrained": "s3://bucket/runs/r1"}).pretrained == "s3://bucket/runs/r1"


BAD_ENDPOINTS = [
    "not-a-url",
    "ftp://host:21",
    "http://[::1",
    "http://host:port",
    "http://",
    "http://user:secret-word@host:9000",
]


@pytest.mark.parametrize("endpoint", BAD_ENDPOINTS)
def test_bad_s3_endpoints_are_refused_and_never_echoed(endpoint, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    line = refused(pretrain, {"storage": {"s3_endpoint": endpoint}})
    assert "--s3-endpoint" in line and "secret-word" not in line
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    line = refused(pretrain, {})
    assert "AWS_ENDPOINT_URL" in line and "secret-word" not in line


def test_a_plain_endpoint_is_accepted(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert (
        pretrain({"storage": {"s3_endpoint": "http://127.0.0.1:9000"}}).storage.s3_endpoint == "http://127.0.0.1:9000"
    )


# ---------------------------------------------------------------------------------------
# malformed values


@pytest.mark.parametrize(
    "resources",
    [
        {"CPU": "abc"},
        {"slot": -1},
        {"slot": True},
        {"slot": "1"},
        {"slot": float("nan")},
        {1: 1},
        {"CPU": 1},
        {"GPU": 2},
    ],
)
def test_worker_resources_must_be_named_non_negative_numbers(resources):
    assert "train.worker_resources" in refused(pretrain, {"train": {"worker_resources": resources}})


def test_worker_resources_from_the_command_line_are_checked():
    assert "train.worker_resources" in refused(pretrain, {}, ["train.worker_resources={CPU: abc}"])
    assert pretrain({}, ["train.worker_resources={trainer_slot: 1, disk: 0.5}"]).train.worker_resources == {
        "trainer_slot": 1,
        "disk": 0.5,
    }


@pytest.mark.parametrize(
    "override",
    ["data.crop_scale=[0.5]", "data.crop_scale=[0.2, 0.5, 1.0]", "data.crop_scale=[0.9, 0.1]", "data.crop_scale=abc"],
)
def test_bad_crop_scales_are_config_errors(override):
    assert "data.crop_scale" in refused(pretrain, {}, [override])


def test_an_override_that_is_not_yaml_is_a_config_error():
    assert "train.epochs" in refused(pretrain, {}, ["train.epochs=[unclosed"])


def test_a_config_key_that_is_not_text_is_a_config_error():
    assert "unknown config key '1'" in refused(pretrain, {1: 2})


# ---------------------------------------------------------------------------------------
# config files


def test_config_files_that_are_not_yaml_mappings(tmp_path):
    assert "does not exist" in refused(load_yaml, tmp_path / "missing.yaml")
    assert "not a regular file" in refused(load_yaml, "/dev/null")
    assert "not a regular file" in refused(load_yaml, tmp_path)
    (tmp_path / "empty.yaml").write_text("")
    assert "is empty" in refused(load_yaml, tmp_path / "empty.yaml")
    (tmp_path / "comments.yaml").write_text("# nothing here\n")
    assert "is empty" in refused(load_yaml, tmp_path / "comments.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert "mapping" in refused(load_yaml, tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("train: {epochs: [1\n")
    assert "not valid YAML" in refused(load_yaml, tmp_path / "broken.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00train")
    assert "binary.yaml" in refused(load_yaml, tmp_path / "binary.yaml")
