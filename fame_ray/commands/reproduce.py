"""`fame-ray reproduce`: the paper's whole study as one resumable job."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import METHODS, StudyConfig, build, load_yaml, presets
from fame_ray.errors import UserError
from fame_ray.storage import Location

Quick = Annotated[
    bool,
    typer.Option(
        "--quick",
        help=(
            "The test suite's form: synthetic UCF101 and HMDB51 copies written under --out, the tiny backbone, a few "
            "steps and epochs, one split each (minutes on 2 CPUs)."
        ),
    ),
]
Methods = Annotated[
    str | None,
    typer.Option("--methods", help=f"Comma-separated methods out of {', '.join(METHODS)}, one study each."),
]
Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained", "-p", help="Evaluate these weights (run, checkpoint or official .pth): no pretraining."
    ),
]
Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        help=(
            "Local folder that also gets study.md, study.json and study.png (they are always written into the study "
            "folder); with --quick it holds the synthetic data and, without --storage, the study."
        ),
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Let Ray's own logs through.")]
QUICK_OUT = "study-quick"


def reproduce(
    config_file: common.ConfigFile = None,
    quick: Quick = False,
    methods: Methods = None,
    pretrained: Pretrained = None,
    storage: common.Storage = None,
    s3_endpoint: common.S3Endpoint = None,
    run_name: common.RunName = None,
    out: Out = None,
    overrides: common.Overrides = None,
    dry_run: common.DryRun = False,
    verbose: Verbose = False,
) -> None:
    """The paper's study as one job: pretrain once per method, then every evaluation, one table.

    Stages: the manifests of every dataset and split (shared by the methods), one pretraining per method (none with
    --pretrained), then finetunes on UCF101 and HMDB51 over the 3 official splits, linear probes (the official
    probe), retrievals, and a Diving48 finetune when its data root is present. Each stage is an ordinary fame-ray
    run under <storage>/<study name>/, run through its own command's code; stages run as many at once as the cluster
    fits, each planning for its share (--set concurrent_stages=1: one after another; --dry-run shows the waves).

    The same command again resumes the study: finished stages are skipped, an unfinished one resumes from its
    run's checkpoints; a study of other settings under the same name is refused. A progress view (done, running,
    left, ETA) is printed as stages finish. At the end: study.md, study.json and study.png in the study folder (and
    --out): each metric as mean ± std over the splits, the paper's figure beside it with its source, the
    difference, and every setting needed to rerun.

    Examples:

      fame-ray reproduce --config jobs/reproduce-k400-i3d.yaml --storage s3://bucket/studies

      fame-ray reproduce --config jobs/reproduce-ucf101-r21d.yaml --methods fame,moco --dry-run

      fame-ray reproduce --quick --out study-quick    (synthetic data, minutes: the suite's form)
    """
    common.start_logging()
    flags = (methods, pretrained, storage, s3_endpoint, run_name)
    study, base_dir, out = study_config(config_file, quick, flags, out, overrides)
    from fame_ray.study import plan  # torch and ray: loaded only to plan and run

    stages = plan.plan_stages(study, base_dir, quick)
    folder = plan.study_location(study, quick)
    if out:
        common.check_folder_target(out, "--out")
    if dry_run:
        typer.echo(dry_run_text(study, stages, folder))
        return
    from fame_ray.study import run

    if quick:
        run.write_quick_data(quick_data(out))
    skipped = run.check_inputs(study, stages)
    context = {"command": rerun_command(), "machine": machine_line()}
    try:
        summary = run.run_study(study, stages, folder, skipped, typer.echo, verbose, context)
    except KeyboardInterrupt:
        typer.echo(f"stopped: study {folder.name} keeps its finished stages; the same command resumes it", err=True)
        raise typer.Exit(130) from None  # as shells expect after Ctrl-C (128 + SIGINT)
    from fame_ray.study.report import table, write

    if out:
        os.makedirs(out, exist_ok=True)
        write(summary, Location.parse(os.path.abspath(out)))
    typer.echo(table(summary))
    typer.echo(f"study {folder.name}: study.md, study.json and study.png in {folder}" + (f" and {out}" if out else ""))


def study_config(config_file, quick: bool, flags: tuple, out, overrides):
    """(StudyConfig, the folder its job files are relative to, --out): the quick preset (its data
    and, without --storage, its study under --out) or the defaults, then the file, flags, --set."""
    methods, pretrained, storage, s3_endpoint, run_name = flags
    if quick:
        out = out or QUICK_OUT
        storage = storage or os.path.join(os.path.abspath(common.local_path(out, "--out")), "runs")
        preset = presets.quick_study(quick_data(out))
    else:
        preset = StudyConfig()
    chosen = [m.strip() for m in methods.split(",") if m.strip()] if methods is not None else None
    flags = {
        "methods": chosen,
        "pretrained": pretrained,
        "storage": common.storage_flags(storage, s3_endpoint, run_name),
    }
    file_values = load_yaml(config_file) if config_file else None
    study = build(StudyConfig, preset, file_values, common.drop_none(flags), overrides or [])
    return study, os.path.dirname(os.path.abspath(config_file)) if config_file else None, out


def quick_data(out: str) -> str:
    """Where the quick study's synthetic datasets are written."""
    return os.path.join(os.path.abspath(common.local_path(out, "--out")), "data")


def dry_run_text(study, stages, folder) -> str:
    """The stages, their protocols, the cluster each needs and the checks; nothing trains."""
    from fame_ray.commands import dry_run as planner
    from fame_ray.study import record, run
    from fame_ray.study.plan import study_settings

    checks = []
    try:
        skipped = run.check_inputs(study, stages)
        checks.append("datasets, split files and weights: ok")
        checks += [f"{key}: skipped ({why})" for key, why in skipped.items()]
    except UserError as error:
        checks.append(f"inputs: the study would stop here: {error.one_line()}")
    status = {}
    try:
        saved = record.read(folder)
        if saved is not None:
            record.check_same(saved, study_settings(study, stages), folder.name, str(folder.parent))
            status = {key: entry["status"] for key, entry in saved["stages"].items()}
            checks.append(
                f"study record: found, same settings: a run resumes it (sessions so far: {saved['sessions']})"
            )
        else:
            checks.append("study record: none yet, a run starts the study")
    except UserError as error:
        checks.append(f"study record: a run would stop here: {error.one_line()}")
    return planner.reproduce(study, stages, folder, status, checks)


def rerun_command() -> str:
    """The command line that ran (and reruns, i.e. resumes) this study."""
    return "fame-ray " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def machine_line() -> str:
    """The machine the driver ran on, for the report (CPUs, load)."""
    import platform

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"driver on {platform.node() or 'this machine'}: {os.cpu_count()} CPUs, load {load} at the end"
