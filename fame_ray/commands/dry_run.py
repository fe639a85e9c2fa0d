"""`--dry-run` of pretrain, finetune, retrieve and reproduce: what the run would be, and nothing trains.

Printed: the resolved config (YAML, as the run would save it), the protocol (every setting of
docs/recipe.md's table for the task, with this run's value, the official one and the option),
the plan (workers, CPUs for Ray Data, per-worker and micro batch, epochs and steps, the memory
estimate per worker) and the checks a run makes up front, each 'ok' or what would stop it. For a
study (`reproduce`): every stage with its protocol, the cluster it needs and its status.

Where it plans: with RAY_ADDRESS set, it joins that cluster to read its CPUs, GPUs and node
memory (it starts nothing there); otherwise it plans for this machine without starting Ray:
`os.cpu_count()` CPUs and, as the memory Ray would report for a local instance, 70% of the
memory available now (Ray keeps the other 30% for its object store). It reads what is on disk
(manifests, the pretrained weights) and writes nothing: a dataset that is not prepared yet is
reported, not prepared.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import psutil
import yaml

from fame_ray import runtime
from fame_ray.config import FinetuneConfig, PretrainConfig, protocol, to_dict
from fame_ray.data import catalog, manifest
from fame_ray.data.catalog import holdout
from fame_ray.data.catalog.datasets import NUM_CLASSES
from fame_ray.downstream import preflight
from fame_ray.downstream.finetune import sweep_plan
from fame_ray.downstream.search_space import grid_size, max_value, normalise_space
from fame_ray.errors import UserError
from fame_ray.eval.report import markdown_table
from fame_ray.models import memory
from fame_ray.pretrain import plan as pretrain_plan
from fame_ray.study import schedule
from fame_ray.study.plan import describe

GB = memory.GB
# Ray's default object store takes 30% of the memory available when a local instance starts.
LOCAL_MEMORY_SHARE = 0.7


@dataclass(frozen=True)
class Machine:
    """What the plan is made for."""

    where: str
    cpus: float
    gpus: float
    node_memory: list[float]


def machine(use_gpu: bool) -> Machine:
    """The cluster in RAY_ADDRESS (joined, nothing started), else this machine without Ray."""
    if os.environ.get("RAY_ADDRESS"):
        import ray

        runtime.connect_ray()
        total = ray.cluster_resources()
        where = f"the Ray cluster at {os.environ['RAY_ADDRESS']}"
        return Machine(where, total.get("CPU", 0.0), total.get("GPU", 0.0), runtime.node_memory(use_gpu))
    gpus = 0.0
    if use_gpu:
        import torch

        gpus = float(torch.cuda.device_count())
    available = psutil.virtual_memory().available * LOCAL_MEMORY_SHARE
    where = "this machine, without Ray (RAY_ADDRESS is not set)"
    return Machine(where, float(os.cpu_count() or 1), gpus, [available])


def _table(rows: list[tuple[str, object]]) -> str:
    return markdown_table(["", ""], [[name, value] for name, value in rows])


def _report(title: str, cfg, task: str, plan: list[tuple[str, object]], checks: list[str]) -> str:
    """The dry run's text: config, protocol, plan, checks."""
    settings = [[name, value, official, option] for name, value, official, option in protocol.rows(task, cfg)]
    parts = [
        f"# {title}: dry run, nothing trains",
        "",
        "## Config (resolved)",
        "",
        yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(),
        "",
        f"## Protocol ({task}; docs/recipe.md)",
        "",
        markdown_table(["setting", "this run", "official (file:line)", "option"], settings),
        "",
        "## Plan",
        "",
        _table(plan),
        "",
        "## Checks",
        "",
        *[f"- {check}" for check in checks],
        "",
    ]
    return "\n".join(parts)


def _check(checks: list[str], what: str, step):
    """Run one up-front check; record 'ok' or what would stop the run. Returns its result or None."""
    try:
        result = step()
    except UserError as error:
        hint = f" ({error.hint})" if error.hint else ""
        checks.append(f"{what}: a run would stop here: {error.message}{hint}")
        return None
    checks.append(f"{what}: ok")
    return result


def _estimate(workload: memory.Workload, batch: int, micro: int, where: Machine) -> str:
    need = memory.worker_memory(workload, batch, micro).total
    nodes = f"{max(where.node_memory) / GB:.1f} GB" if where.node_memory else "unknown"
    return f"~{need / GB:.1f} GB per worker ({workload.setting}; CPU figures), nodes have {nodes}"


def pretrain(cfg: PretrainConfig, where: Machine | None = None) -> str:
    """The dry run of `fame-ray pretrain`."""
    where = where or machine(cfg.train.use_gpu)
    checks: list[str] = []
    worlds = pretrain_plan.world_plans(cfg)
    micro = _check(checks, "memory", lambda: pretrain_plan.micro_batch_for(cfg, worlds, where.node_memory))
    resources = _check(checks, "CPUs", lambda: runtime.plan_resources(where.cpus, cfg.train, cfg.data))
    videos = _videos(checks, cfg.data, cfg.data_location(), "train")
    plan = [
        ("planned for", f"{where.where}: {where.cpus:g} CPUs, {where.gpus:g} GPUs"),
        (
            "workers",
            "-".join(map(str, sorted({min(worlds), max(worlds)}))) + (" (GPU each)" if cfg.train.use_gpu else ""),
        ),
    ]
    if resources:
        plan.append(("CPUs", f"{resources.cpus_per_worker:g} per worker, {resources.data_cpus:g} for decoding"))
    for size, world in worlds.items():
        plan.append(
            (
                f"on {size} worker(s)",
                f"{world.per_worker_batch} clips per worker (global {world.effective_batch}), "
                f"peak lr {world.peak_lr:g}",
            )
        )
    if micro is not None:
        batch = max(world.per_worker_batch for world in worlds.values())
        shown = micro or "the whole per-worker batch"
        plan += [("micro batch", f"{shown} (train.micro_batch: {cfg.train.micro_batch})")]
        plan += [("memory", _estimate(pretrain_plan.workload(cfg), batch, micro, where))]
    if videos is not None:
        per_epoch = pretrain_plan.steps_per_epoch(cfg, videos)
        total = pretrain_plan.total_steps(cfg, videos)
        plan.append(("length", f"{cfg.train.epochs} epochs x {per_epoch} steps = {total} steps ({videos} videos)"))
    else:
        plan.append(("length", f"{cfg.train.epochs} epochs; steps per epoch once the dataset is prepared"))
    return _report("fame-ray pretrain", cfg, "pretrain", plan, checks)


def _videos(checks: list[str], data, source, subset: str) -> int | None:
    """Videos in a manifest already prepared; None (and a check line) when there is none yet."""
    location = catalog.locate(data, source)[subset]
    if not location.exists():
        checks.append(
            f"{subset} manifest: not prepared yet at {location} (a run prepares it first; `fame-ray data prepare`)"
        )
        return None
    return manifest.read(location).num_rows


def _downstream_checks(cfg: FinetuneConfig, wanted_arch: str | None, checks: list[str]) -> tuple[FinetuneConfig, int]:
    """The checks of `preflight.prepare` that read and write nothing; (cfg with the arch, classes)."""
    _check(checks, "dataset", lambda: preflight.check_data_root(cfg))
    weights = _check(checks, "pretrained weights", lambda: preflight.check_pretrained(cfg))
    if weights is not None:
        found = _check(checks, "architecture", lambda: _arch(cfg, wanted_arch, weights))
        cfg = found or cfg
    classes = NUM_CLASSES.get(cfg.data.dataset)
    known = catalog.locate(cfg.data, cfg.data_location())["train"].exists()
    if known:
        classes = len(catalog.class_names(cfg.data, cfg.data_location()))
    return cfg, classes or 101


def _arch(cfg: FinetuneConfig, wanted_arch: str | None, weights) -> FinetuneConfig:
    config, _ = preflight.checkpoint_config(weights)
    arch = preflight.resolve_arch(wanted_arch, config, cfg.model.arch)
    preflight.load_backbone(weights, arch)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch))


def _training_videos(cfg: FinetuneConfig, checks: list[str]) -> tuple[int, int] | None:
    """(videos trained on, validation videos) when the training manifest is prepared."""
    location = catalog.locate(cfg.data, cfg.data_location())["train"]
    if _videos(checks, cfg.data, cfg.data_location(), "train") is None:
        return None
    held = holdout.validation_rows(manifest.read(location), cfg.val_fraction, cfg.val_seed)
    return int((~held).sum()), int(held.sum())


def finetune(cfg: FinetuneConfig, wanted_arch: str | None = None, where: Machine | None = None) -> str:
    """The dry run of `fame-ray finetune`."""
    where = where or machine(cfg.train.use_gpu)
    checks: list[str] = []
    cfg, classes = _downstream_checks(cfg, wanted_arch, checks)
    resolved = _check(checks, "memory", lambda: preflight.micro_batch_for(cfg, classes, where.node_memory))
    space = normalise_space(cfg.search_space)
    sweep = _check(checks, "trials", lambda: sweep_plan(cfg, space, where.cpus, where.gpus))
    batch, effective = cfg.train.split_batch(cfg.train.num_workers)
    plan = [
        ("planned for", f"{where.where}: {where.cpus:g} CPUs, {where.gpus:g} GPUs"),
        ("trials", f"{cfg.samples * grid_size(space)}" + (f", {sweep['max_concurrent']} at once" if sweep else "")),
        ("workers per trial", f"{cfg.train.num_workers}" + (" (GPU each)" if cfg.train.use_gpu else "")),
    ]
    if sweep:
        plan.append(("CPUs per trial", f"{sweep['cpus_per_worker']:g} per worker, {sweep['data_cpus']:g} for Ray Data"))
    plan.append(("batch", f"{batch} clips per worker (global {effective})"))
    if resolved is not None:
        micro = resolved.train.micro_batch
        plan.append(
            ("micro batch", f"{micro or 'the whole per-worker batch'} (train.micro_batch: {cfg.train.micro_batch})")
        )
        plan.append(("memory", _estimate(preflight.workload(cfg, classes), batch, micro, where)))
    epochs = int(max_value(space, "epochs", cfg.train.epochs))
    videos = _training_videos(cfg, checks)
    if videos:
        fit, val = videos
        plan.append(("length", f"{epochs} epochs x {math.ceil(fit / effective)} steps ({fit} training videos)"))
        plan.append(("validation", f"{val} videos held out (val_fraction {cfg.val_fraction:g}, seed {cfg.val_seed})"))
    else:
        plan.append(("length", f"{epochs} epochs; steps per epoch once the dataset is prepared"))
    plan.append(("classes", classes))
    return _report(f"fame-ray finetune --mode {cfg.mode}", cfg, cfg.mode, plan, checks)


def retrieve(cfg: FinetuneConfig, wanted_arch: str | None = None, where: Machine | None = None) -> str:
    """The dry run of `fame-ray retrieve`."""
    where = where or machine(cfg.train.use_gpu)
    checks: list[str] = []
    cfg, _ = _downstream_checks(cfg, wanted_arch, checks)
    resources = _check(checks, "CPUs", lambda: runtime.plan_resources(where.cpus, cfg.train, cfg.data))
    batch, _ = cfg.train.split_batch(cfg.train.num_workers)
    plan = [
        ("planned for", f"{where.where}: {where.cpus:g} CPUs, {where.gpus:g} GPUs"),
        ("encoder actors", f"{cfg.train.num_workers}" + (" (GPU each)" if cfg.train.use_gpu else "")),
        ("batch", f"{batch} clips per actor, {cfg.data.eval_clips} clips per video"),
    ]
    if resources:
        plan.append(("CPUs", f"{resources.cpus_per_worker:g} per actor, {resources.data_cpus:g} for decoding"))
    for subset, role in (("train", "gallery"), ("test", "queries")):
        videos = _videos(checks, cfg.data, cfg.data_location(), subset)
        plan.append((role, f"{videos} {subset} videos" if videos is not None else f"the {subset} split"))
    return _report("fame-ray retrieve", cfg, "retrieval", plan, checks)


def _stage_needs(stage, where: Machine) -> str:
    """The cluster one stage needs: its workers (and GPUs), the CPUs its config fixes, and for a
    sweep how many trials run at once on the machine planned for."""
    cfg = stage.config
    if stage.kind == "manifests":
        return "the driver, and probe tasks of 1 CPU each (decoding checks)"
    need = runtime.job_minimum(cfg.train, cfg.data)
    gpus = f", {need['GPU']:g} GPU" if need.get("GPU") else ""
    text = f"{cfg.train.num_workers} worker(s){gpus}, at least {need['CPU']:g} CPU"
    if stage.kind in ("finetune", "linear"):
        space = normalise_space(cfg.search_space)
        try:
            sweep = sweep_plan(cfg, space, where.cpus, where.gpus)
        except UserError as error:
            return f"{text} per trial; {error.message}"
        text += f" per trial; {sweep['trials']} trial(s), {sweep['max_concurrent']} at once here"
    return text


def reproduce(study, stages, folder, status: dict, checks: list[str], where: Machine | None = None) -> str:
    """The dry run of `fame-ray reproduce`: every stage with its protocol, the cluster it needs and
    its status in the study's record (if the study was started), the protocol tables of each kind,
    and the checks."""
    where = where or machine(any(stage.config.train.use_gpu for stage in stages if stage.kind != "manifests"))
    done = tuple(key for key, state in status.items() if state in ("done", "skipped"))
    waves = schedule.waves(stages, {"CPU": where.cpus, "GPU": where.gpus}, study.concurrent_stages, done)
    wave_of = {key: index + 1 for index, wave in enumerate(waves) for key in wave}
    rows = [
        [
            s.key,
            s.method or "all",
            describe(s),
            _stage_needs(s, where),
            status.get(s.key, "left"),
            ", ".join(s.needs),
            wave_of.get(s.key, "–"),
        ]
        for s in stages
    ]
    at_once = max((len(wave) for wave in waves), default=0)
    parts = [
        f"# fame-ray reproduce: dry run of study {folder.name}, nothing trains",
        "",
        f"Study folder: {folder}; planned for {where.where}: {where.cpus:g} CPUs, {where.gpus:g} GPUs. Stages run as "
        f"many at once as fit (concurrent_stages {study.concurrent_stages or 'auto'}): here in {len(waves)} wave(s), "
        f"up to {at_once} stage(s) at once; a stage alone gets the whole cluster, stages together share it.",
        "",
        markdown_table(["stage", "method", "protocol", "cluster it needs", "status", "after", "wave"], rows),
        "",
    ]
    for kind in ("pretrain", "finetune", "linear", "retrieval"):
        first = next((s for s in stages if s.kind == kind), None)
        if first is None:
            continue
        settings = [[n, v, o, opt] for n, v, o, opt in protocol.rows(kind, first.config)]
        parts += [f"## Protocol: {kind} ({first.key} and the like; docs/recipe.md)", ""]
        parts += [markdown_table(["setting", "this study", "official (file:line)", "option"], settings), ""]
    parts += ["## Checks", "", *[f"- {check}" for check in checks], ""]
    return "\n".join(parts)
