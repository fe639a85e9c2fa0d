"""The stages of a study, each an ordinary fame-ray run with its config built the way its own
command builds it (`config.build`: a preset, a job file, then the study's values for it).

    stages = plan_stages(study, base_dir="jobs")      # pure: builds configs, reads only job files

Stages, in the order they run:
- manifests-<dataset>-split<N>: the dataset's Parquet manifests (`data.ready`), once per dataset
  and split, shared by every method;
- pretrain-<method>: one pretraining per method (none with `pretrained`);
- finetune- / linear- / retrieval-<dataset>-split<N>-<method>: the evaluations of each method's
  encoder. A stage's key is its run name under `<storage>/<study name>/`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fame_ray.config import FinetuneConfig, PretrainConfig, StudyConfig, build, load_yaml, merge, presets, to_dict
from fame_ray.config.tree import DataConfig
from fame_ray.downstream.sweep import signature
from fame_ray.storage import Location

KINDS = ("manifests", "pretrain", "finetune", "linear", "retrieval")
EVALUATIONS = ("finetune", "linear", "retrieval")
# What each evaluation is called in the progress view and the table.
TITLES = {"finetune": "finetune", "linear": "linear probe", "retrieval": "retrieval"}


@dataclass(frozen=True)
class Stage:
    """One step of the study: a run with its config, and the stages it reads."""

    key: str
    """Unique; also the run's name in the study folder."""
    kind: str
    """One of KINDS."""
    method: str
    """The method whose encoder it pretrains or evaluates ('' for manifests)."""
    dataset: str
    split: int
    config: PretrainConfig | FinetuneConfig
    needs: tuple[str, ...] = ()
    """Keys of the stages that must be done first."""
    optional: bool = False
    """Runs only when its dataset's root is present (else skipped)."""
    arch: str | None = None
    """The backbone an evaluation loads (the pretraining's; None: the checkpoint's)."""


def study_name(study: StudyConfig, quick: bool = False) -> str:
    """--run-name, else a name from what is studied."""
    if study.storage.run_name:
        return study.storage.run_name
    return "study-quick" if quick else f"study-{study.paper}" if study.paper != "none" else "study"


def study_location(study: StudyConfig, quick: bool = False) -> Location:
    """The study folder `<storage>/<study name>`: its record, its runs and its report."""
    return study.storage.root() / study_name(study, quick)


def _job(path: str, base_dir: str | None) -> dict | None:
    """A job file named by the study, relative to the study's own file."""
    if not path:
        return None
    return load_yaml(path if os.path.isabs(path) or not base_dir else os.path.join(base_dir, path))


def data_root(study: StudyConfig, dataset: str) -> str:
    """The dataset's root: the study's data_roots, else $FAME_RAY_DATA/<Dataset>."""
    return study.data_roots.get(dataset) or DataConfig(dataset=dataset).resolved_root()


def _storage(study: StudyConfig, folder: Location, run: str) -> dict:
    return {"path": folder.uri, "s3_endpoint": study.storage.s3_endpoint, "run_name": run, "resume": ""}


def pretrain_config(study: StudyConfig, method: str, folder: Location, base_dir: str | None) -> PretrainConfig:
    """The pretraining of `method`, as `fame-ray pretrain --config <pretrain_config>` builds it."""
    job = _job(study.pretrain_config, base_dir)
    dataset = ((study.pretrain.get("data") or {}).get("dataset")) or ((job or {}).get("data") or {}).get("dataset")
    preset = presets.choose(study.pretrain_preset or None, study.pretrain_config or None, dataset)
    values = merge(study.pretrain, {"method": method, "storage": _storage(study, folder, f"pretrain-{method}")})
    first = build(PretrainConfig, presets.get(presets.PRETRAIN, preset), job, values)
    values = merge(values, {"data": {"data_root": data_root(study, first.data.dataset)}})
    return build(PretrainConfig, presets.get(presets.PRETRAIN, preset), job, values)


def downstream_config(
    study: StudyConfig,
    kind: str,
    dataset: str,
    split: int,
    pretrained: str,
    run: str,
    folder: Location,
    base_dir,
    arch: str | None = None,
) -> FinetuneConfig:
    """A finetune, probe or retrieval as its command builds it: the kind's preset, the finetune job
    file (not for the probe: its optimizer is the finetune's), `downstream`, then the kind's values;
    `arch`: the backbone of the weights (the pretraining's), which wins over the file's."""
    preset = {"finetune": study.finetune_preset, "linear": study.linear_preset, "retrieval": study.retrieval_preset}
    job = _job(study.finetune_config, base_dir) if kind != "linear" else None
    stage = {
        "data": {"dataset": dataset, "split": split, "data_root": data_root(study, dataset)},
        "mode": "linear" if kind == "linear" else "finetune",
        "pretrained": pretrained,
        "storage": _storage(study, folder, run),
        **({"model": {"arch": arch}} if arch else {}),
    }
    values = merge(merge(study.downstream, getattr(study, kind)), stage)
    return build(FinetuneConfig, presets.get(presets.FINETUNE, preset[kind]), job, values)


def _evaluations(study: StudyConfig) -> list[tuple[str, str, int]]:
    """(kind, dataset, split) of every evaluation, datasets in the order the study names them."""
    return [
        (kind, dataset, split)
        for kind in EVALUATIONS
        for dataset in getattr(study, f"{kind}_on")
        for split in study.splits_of(dataset)
    ]


def plan_stages(study: StudyConfig, base_dir: str | None = None, quick: bool = False) -> list[Stage]:
    """Every stage of the study, in the order it runs (dependencies first)."""
    folder = study_location(study, quick)
    pretrainings = {} if study.pretrained else {m: pretrain_config(study, m, folder, base_dir) for m in study.methods}
    evaluations = _evaluations(study)
    stages, seen = [], set()
    wanted = [(cfg.data.dataset, cfg.data.split, cfg) for cfg in pretrainings.values()]
    wanted += [(dataset, split, None) for _, dataset, split in evaluations]
    for dataset, split, cfg in wanted:
        if (dataset, split) in seen:
            continue
        seen.add((dataset, split))
        probe = cfg or downstream_config(study, "finetune", dataset, split, "", "manifests", folder, base_dir)
        stages.append(
            Stage(
                f"manifests-{dataset}-split{split}",
                "manifests",
                "",
                dataset,
                split,
                probe,
                (),
                _optional(study, dataset),
            )
        )
    for method, cfg in pretrainings.items():
        needs = (f"manifests-{cfg.data.dataset}-split{cfg.data.split}",)
        stages.append(Stage(f"pretrain-{method}", "pretrain", method, cfg.data.dataset, cfg.data.split, cfg, needs))
    for method in study.method_names():
        weights = study.pretrained or (folder / f"pretrain-{method}").uri
        arch = pretrainings[method].model.arch if method in pretrainings else _named_arch(study)
        for kind, dataset, split in evaluations:
            key = f"{kind}-{dataset}-split{split}-{method}"
            cfg = downstream_config(study, kind, dataset, split, weights, key, folder, base_dir, arch)
            needs = (f"manifests-{dataset}-split{split}",) + ((f"pretrain-{method}",) if method in pretrainings else ())
            stages.append(Stage(key, kind, method, dataset, split, cfg, needs, _optional(study, dataset), arch))
    return stages


def _optional(study: StudyConfig, dataset: str) -> bool:
    return dataset in study.optional


def _named_arch(study: StudyConfig) -> str | None:
    """The arch the study names for existing weights (downstream.model.arch), else the checkpoint's."""
    return (study.downstream.get("model") or {}).get("arch")


def stage_settings(stage: Stage, weights_of: dict[str, str]) -> dict:
    """What a stage computes, without where it lives (`sweep.signature`: no storage, no site keys);
    its pretrained weights named by the stage that makes them, so that the study's record does not
    depend on where the study is stored."""
    values = signature(to_dict(stage.config))
    if stage.kind in EVALUATIONS:
        values["pretrained"] = weights_of.get(stage.method, values.get("pretrained"))
        values["arch"] = stage.arch
    if stage.kind == "manifests":
        values = {"data": {k: values["data"][k] for k in ("dataset", "split", "data_root", "manifest_dir")}}
    return {"kind": stage.kind, "optional": stage.optional, "config": values}


def study_settings(study: StudyConfig, stages: list[Stage]) -> dict:
    """The settings the study's record fingerprints: every stage's, and the figures it compares with."""
    weights_of = {method: study.pretrained or f"stage:pretrain-{method}" for method in study.method_names()}
    return {
        "paper": study.paper,
        "methods": list(study.method_names()),
        "stages": {stage.key: stage_settings(stage, weights_of) for stage in stages},
    }


def describe(stage: Stage) -> str:
    """The stage's protocol in one line (the dry run and the progress view)."""
    cfg = stage.config
    if stage.kind == "manifests":
        return f"Parquet manifests of {stage.dataset} split {stage.split} (shared by every method)"
    if stage.kind == "pretrain":
        steps = f", at most {cfg.train.max_steps} steps" if cfg.train.max_steps else ""
        return (
            f"{cfg.method} on {cfg.data.dataset}, {cfg.model.arch}, {cfg.train.epochs} epochs{steps}, batch "
            f"{cfg.train.global_batch}, lr {cfg.optim.lr:g} ({cfg.optim.schedule}), K "
            f"{cfg.dclr.queue_size if cfg.method == 'dclr' else cfg.moco.queue_size}"
        )
    if stage.kind == "retrieval":
        return f"R@k, {cfg.data.eval_clips} clips per video, features '{cfg.retrieval}' (preset {cfg.preset})"
    trials = f", {cfg.samples} trial(s) over {json.dumps(cfg.search_space)}" if cfg.search_space else ""
    return (
        f"{cfg.mode}, {cfg.train.epochs} epochs, batch {cfg.train.global_batch}, lr {cfg.optim.lr:g}, wd "
        f"{cfg.optim.weight_decay:g}, lr / 10 at {list(cfg.optim.milestones)}, validation {cfg.val_fraction:g} "
        f"(preset {cfg.preset}){trials}"
    )
