"""Running a study: the inputs checked before any stage, then each stage through the entry point
its own command uses (`data.ready.manifests`, `run_pretrain`, `run_finetune`, `run_retrieval`),
on one Ray connection, the record saved around every stage, the progress view after each.

    skipped = check_inputs(study, stages)
    summary = run_study(study, stages, folder, skipped, on_progress=print_function)

Stages run as many at once as the cluster fits (fame_ray.study.schedule; `concurrent_stages`
caps them): a stage starts once the stages it needs are done and its smallest form fits in what
the running stages leave, and it plans for its share of the cluster (a finetune sweep runs as
many trials at once as its share fits). A stage that runs alone runs in the driver's main thread
with the whole cluster, exactly as its command would; stages that run together run in threads of
the driver, each its own Ray Train / Tune job on the one Ray connection, and the record is
written from the main thread only.

Resume: a stage the record marks done is skipped. A stage marked running (its driver died) runs
again under the same run name, and the runs resume themselves: a pretraining from its latest
complete checkpoint, a finetune sweep from Tune's saved state (finished trials kept, unfinished
ones from their last epoch); manifests are rebuilt only when the dataset changed; a retrieval
(no training) runs again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import ray

from fame_ray import checkpoints, runtime
from fame_ray.config.presets import QUICK_DATASETS
from fame_ray.data import catalog, ready, synthetic
from fame_ray.downstream import preflight
from fame_ray.downstream.features import run_retrieval
from fame_ray.downstream.finetune import run_finetune
from fame_ray.errors import UserError
from fame_ray.eval.report import RESULTS_JSON, read_record
from fame_ray.pretrain.driver import run_pretrain
from fame_ray.storage import Location
from fame_ray.study import progress, record, schedule
from fame_ray.study.plan import EVALUATIONS, Stage, describe, study_settings
from fame_ray.study.report import summarize, write

log = logging.getLogger(__name__)
# The quick study's synthetic copies: (classes, videos per class, frames) per dataset.
QUICK_SIZES = {"ucf101": (4, 6, 40), "hmdb51": (3, 5, 32)}


def write_quick_data(data_dir: str) -> None:
    """The quick study's synthetic UCF101 and HMDB51 copies (kept when already written)."""
    for dataset, (classes, videos, frames) in QUICK_SIZES.items():
        root = os.path.join(data_dir, QUICK_DATASETS[dataset])
        if not synthetic.is_complete(root):
            synthetic.write_dataset(root, layout=dataset, num_classes=classes, videos_per_class=videos, frames=frames)


def check_inputs(study, stages: list[Stage]) -> dict[str, str]:
    """Every input checked before any stage starts (UserError: one line, exit 2): each dataset's
    root, split files and annotations as its layout reads them (no decoding), existing weights,
    the storage. Returns {stage key: why} of the stages to skip: those of an optional dataset
    whose root is absent."""
    study.storage.root().check_writable_root()
    skipped = {}
    for stage in stages:
        if stage.kind != "manifests" or stage.config.data.dataset == "synthetic":
            continue
        source = stage.config.data_location()
        if stage.optional and not source.exists():
            skipped[stage.key] = f"{stage.dataset} is optional and not found at {source}"
            continue
        try:
            catalog.scan(stage.config.data, source)
        except UserError as error:
            raise UserError(
                f"{stage.key}: {error.message}",
                f"{error.hint}; in a study: data_roots.{stage.dataset} (--set data_roots.{stage.dataset}=DIR)",
            ) from None
    for stage in stages:
        missing = [need for need in stage.needs if need in skipped]
        if missing and stage.key not in skipped:
            skipped[stage.key] = f"{stage.dataset} is optional and not found ({missing[0]} skipped)"
    if study.pretrained:
        preflight.check_pretrained(next(s.config for s in stages if s.kind in EVALUATIONS))
    return skipped


def run_stage(stage: Stage, verbose: bool = False, budget: dict | None = None) -> str | None:
    """Run (or resume) one stage through its command's own entry point; where its results are.
    `budget`: the share of the cluster an evaluation plans for (None: the whole cluster)."""
    cfg = stage.config
    if stage.kind == "manifests":
        ready.manifests(cfg.data, cfg.data_location())
        return None
    if stage.kind == "pretrain":
        run_pretrain(cfg, verbose)
        return cfg.run_location().uri
    if stage.kind == "retrieval":
        found = run_retrieval(cfg, stage.arch, budget)
    else:
        found = run_finetune(cfg, stage.arch, budget)
    return f"{found['run_dir']}/{RESULTS_JSON}"


def _cluster() -> dict:
    """The CPUs and GPUs of the Ray cluster now."""
    total = ray.cluster_resources()
    return {name: float(total.get(name, 0.0)) for name in schedule.RESOURCES}


def _run_stages(study, stages: list[Stage], study_record: dict, folder: Location, on_progress, verbose: bool) -> None:
    """Every stage not done yet, as many at once as fit (module doc); the first failure is raised
    once the stages running beside it have ended (their record kept)."""
    left = [stage for stage in stages if record.status(study_record, stage.key) not in ("done", "skipped")]
    running: dict[Future, tuple[Stage, dict]] = {}
    failure: BaseException | None = None

    def started(stage: Stage, budget: dict, together: bool) -> None:
        resumed = record.start(study_record, stage.key)
        record.save(study_record, folder)
        share = f"; {budget['CPU']:g} CPUs of the cluster" if together else ""
        on_progress(f"stage {stage.key}: {'resuming' if resumed else 'starting'} ({describe(stage)}{share})")

    def finished(stage: Stage, results: str | None) -> None:
        record.finish(study_record, stage.key, results)
        record.save(study_record, folder)
        on_progress(progress.view(stages, study_record))

    with ThreadPoolExecutor(max_workers=max(len(left), 1), thread_name_prefix="stage") as pool:
        while left or running:
            if failure is None:
                done = {key for key, entry in study_record["stages"].items() if entry["status"] == "done"}
                budgets = {stage.key: budget for stage, budget in running.values()}
                chosen = schedule.admit(schedule.ready(left, done), budgets, _cluster(), study.concurrent_stages)
                if not chosen and not running:
                    raise RuntimeError(f"stages wait on stages that never finish: {[s.key for s in left]}")
                if len(chosen) == 1 and not running:
                    # Alone: in the main thread with the whole cluster, as its command runs it.
                    stage, budget = chosen[0]
                    left.remove(stage)
                    started(stage, budget, together=False)
                    finished(stage, run_stage(stage, verbose))
                    continue
                for stage, budget in chosen:
                    left.remove(stage)
                    started(stage, budget, together=True)
                    running[pool.submit(run_stage, stage, verbose, budget)] = (stage, budget)
            if not running:
                break
            ended, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in ended:
                stage, _ = running.pop(future)
                try:
                    finished(stage, future.result())
                except Exception as error:  # the stage stays 'running' in the record: a rerun resumes it
                    log.error("stage %s failed: %s", stage.key, error)
                    failure = failure or error
    if failure is not None:
        raise failure


def _reconcile(study_record: dict, stages: list[Stage], skipped: dict[str, str]) -> None:
    """Skipped stages as this run finds them: a dataset that appeared since is run now."""
    for stage in stages:
        entry = study_record["stages"][stage.key]
        if stage.key in skipped and entry["status"] != "done":
            record.skip(study_record, stage.key, skipped[stage.key])
        elif entry["status"] == "skipped":
            entry.update(status="left", reason="")


def _results(stages: list[Stage], study_record: dict, endpoint: str) -> dict:
    """Stage key -> results record of every finished evaluation."""
    found = {}
    for stage in stages:
        entry = study_record["stages"][stage.key]
        if stage.kind in EVALUATIONS and entry["status"] == "done" and entry.get("results"):
            found[stage.key] = read_record(Location.parse(entry["results"], endpoint))
    return found


def run_study(
    study,
    stages: list[Stage],
    folder: Location,
    skipped: dict[str, str],
    on_progress: Callable[[str], None] = log.info,
    verbose: bool = False,
    context: dict | None = None,
) -> dict:
    """Run every stage not done yet (as many at once as fit); write study.md/.json/.png into
    `folder`; the summary."""
    started = time.time()
    settings = study_settings(study, stages)
    study_record = record.open_record(folder, settings, [s.key for s in stages], folder.name)
    study_record["sessions"] = study_record.get("sessions", 0) + 1
    _reconcile(study_record, stages, skipped)
    folder.make_dirs()
    record.save(study_record, folder)
    on_progress(progress.view(stages, study_record))
    owns_ray = runtime.connect_ray(dashboard=True, verbose=verbose)
    try:
        _run_stages(study, stages, study_record, folder, on_progress, verbose)
    finally:
        if owns_ray:
            ray.shutdown()
    context = {
        "study": folder.name,
        "folder": folder.uri,
        "git": checkpoints.git_sha(),
        "sessions": study_record["sessions"],
        "wall_s_this_session": round(time.time() - started, 1),
        **(context or {}),
    }
    reasons = {key: entry["reason"] for key, entry in study_record["stages"].items() if entry["status"] == "skipped"}
    summary = summarize(study, stages, _results(stages, study_record, study.storage.s3_endpoint), reasons, context)
    write(summary, folder)
    return summary
