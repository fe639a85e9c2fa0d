"""The results table of a downstream run (results.json + results.md), and paper-style
side-by-side tables of several runs.

A results record is a plain dict (see `new_record`); metrics are percentages, as papers
print them. Files go to the run directory, local or s3://, through `fame_ray.storage`.
"""

from __future__ import annotations

import json
import math

from fame_ray.errors import UserError, printable
from fame_ray.storage import Location, parse_json

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
# Metric columns in the order a paper prints them; others follow alphabetically.
METRIC_ORDER = ("video_top1", "video_top5", "clip_top1", "clip_top5", "R@1", "R@5", "R@10", "R@20", "R@50")
METRIC_TITLES = {
    "video_top1": "video top-1",
    "video_top5": "video top-5",
    "clip_top1": "clip top-1",
    "clip_top5": "clip top-5",
}
# Pretraining settings that explain 1-3 point gaps between runs (docs/recipe.md, last section).
RECIPE_KEYS = (
    "dataset",
    "arch",
    "epochs",
    "global_batch",
    "lr",
    "schedule",
    "mlp_head",
    "queue_size",
    "fame",
    "fame_beta",
    "crop_size",
    "frames_per_clip",
    "steps",
)
HYPER_KEYS = ("lr", "weight_decay", "dropout", "epochs")


def new_record(kind: str, run: str, setting: dict, pretrain_recipe: dict, metrics: dict, **extra) -> dict:
    """A results record: `setting` holds dataset, split, mode, backbone, pretrained."""
    return {
        "kind": kind,
        "run": run,
        **setting,
        "pretrain_recipe": dict(pretrain_recipe),
        "units": "percent",
        "metrics": dict(metrics),
        **extra,
    }


def percent(metrics: dict) -> dict:
    """Fractions -> percentages rounded to 2 decimals; counts (ints) stay as they are."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float):
            out[key] = round(100.0 * value, 2) if math.isfinite(value) else None
        else:
            out[key] = value
    return out


def fmt(value) -> str:
    """One table cell."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{fmt(k)}: {fmt(v)}" for k, v in value.items())
    # Text from a results file reaches the terminal: control characters (escape sequences) escaped.
    return printable(value, limit=500).replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def metric_columns(metric_dicts: list[dict]) -> list[str]:
    """Union of metric names (counts left out), in paper order."""
    names = {
        k
        for metrics in metric_dicts
        for k, v in metrics.items()
        if k not in ("clips", "videos", "queries", "gallery", "epoch")
    }
    ordered = [k for k in METRIC_ORDER if k in names]
    return ordered + sorted(names - set(ordered))


def _title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric)


# The numbers of a finetune record, in the order results.md lists them (downstream.finetune).
NUMBERS = ("held_out", "official", "validation")


def _headline(record: dict) -> list[str]:
    """The table of the run's numbers: one row, or for a sweep one row per labelled number (the
    chosen trial's test accuracy, the official protocol's best test epoch, the validation)."""
    setting = [record.get(k) for k in ("dataset", "split", "mode", "backbone", "pretrained")]
    numbers = [record["numbers"][name] for name in NUMBERS if name in (record.get("numbers") or {})]
    if not numbers:
        columns = metric_columns([record.get("metrics", {})])
        header = ["dataset", "split", "mode", "backbone", "pretrained"] + [f"{_title(c)} (%)" for c in columns]
        return [markdown_table(header, [setting + [record["metrics"].get(c) for c in columns]]), ""]
    columns = metric_columns([number["metrics"] for number in numbers])
    header = ["number", "dataset", "split", "mode", "backbone", "pretrained"] + [f"{_title(c)} (%)" for c in columns]
    rows = [[number["label"], *setting, *[number["metrics"].get(c) for c in columns]] for number in numbers]
    held_out = (record.get("validation") or {}).get("split") == "validation"
    first = (
        "The first row is the number to report as an unbiased result: the trial was chosen on the validation "
        "split, without the test split."
        if held_out
        else "No validation split (val_fraction 0): the trial was chosen on the test split, so neither test "
        "number is unbiased."
    )
    second = (
        " The second is the number the paper's protocol reports (the best test epoch, as the official eval.py), "
        "to compare with the paper."
    )
    return [markdown_table(header, rows), "", first + second, ""]


def render_markdown(record: dict) -> str:
    """results.md of one run."""
    parts = [f"# {record['run']}", ""]
    parts += _headline(record)
    if record.get("protocol"):
        parts += [
            "## Protocol",
            "",
            markdown_table(["setting", "value"], [[k, v] for k, v in record["protocol"].items()]),
            "",
        ]
    recipe = record.get("pretrain_recipe") or {}
    parts += ["## Pretraining recipe (from the checkpoint's config.yaml)", ""]
    parts += [
        markdown_table(["setting", "value"], [[k, v] for k, v in recipe.items()])
        if recipe
        else "not recorded (no config.yaml beside the checkpoint, e.g. an official FAME .pth)",
        "",
    ]
    if record.get("best"):
        best = record["best"]
        parts += [
            f"## Best trial: {best.get('trial')}",
            "",
            markdown_table(["hyperparameter", "value"], [[k, v] for k, v in best.get("hyperparameters", {}).items()]),
            "",
        ]
    if record.get("trials"):
        parts += ["## All trials", "", trials_table(record["trials"]), ""]
    if record.get("notes"):
        parts += ["## Notes", ""] + [f"- {note}" for note in record["notes"]] + [""]
    return "\n".join(parts)


def trials_table(trials: list[dict]) -> str:
    columns = metric_columns([t.get("metrics") or {} for t in trials])
    header = ["trial", "status", *HYPER_KEYS, "epochs run", *[f"{_title(c)} (%)" for c in columns], "error"]
    rows = []
    for trial in trials:
        hyper = trial.get("hyperparameters", {})
        metrics = trial.get("metrics") or {}
        rows.append(
            [
                trial.get("trial"),
                trial.get("status"),
                *[hyper.get(k) for k in HYPER_KEYS],
                trial.get("epochs_run"),
                *[metrics.get(c) for c in columns],
                trial.get("error"),
            ]
        )
    return markdown_table(header, rows)


def write(record: dict, run_dir: Location) -> tuple[Location, Location]:
    """Write results.json and results.md into `run_dir`; returns where they went."""
    json_file, md_file = run_dir / RESULTS_JSON, run_dir / RESULTS_MD
    json_file.write_text(json.dumps(record, indent=2, sort_keys=False, default=str))
    md_file.write_text(render_markdown(record))
    return json_file, md_file


def read_record(location: Location) -> dict:
    """The record in a results.json; a UserError when the file is not one (a table built from
    another JSON file would print as if the run had no results)."""
    try:
        record = parse_json(location.read_bytes())
    except ValueError:  # not JSON, not UTF-8, or nested deeper than any results file
        record = None
    fields_ok = (
        isinstance(record, dict)
        and "kind" in record
        and isinstance(record.get("run"), str)
        and isinstance(record.get("metrics"), dict)
    )
    if not fields_ok or not isinstance(record.get("pretrain_recipe") or {}, dict):
        raise UserError(
            f"{location} is not a fame-ray results file (a JSON object with kind, run and metrics)",
            "give a results.json written by `fame-ray finetune` or `fame-ray retrieve`, or its run directory",
        )
    return record


def find(run: str, storage_root: Location) -> Location:
    """The results.json of a run directory, a results.json file, or a run name under
    `storage_root`; the location goes through the same check as every other (no other scheme,
    no credentials in an s3:// URI, which is never echoed)."""
    try:
        given = Location.parse(run, storage_root.endpoint)
    except UserError as error:
        raise UserError(f"RUN argument: {error.message}", error.hint) from None
    candidates = [given] if run.endswith(".json") else [given / RESULTS_JSON]
    if "/" not in run.rstrip("/"):
        candidates.append(storage_root / run / RESULTS_JSON)
    for location in candidates:
        if location.exists():
            return location
    raise UserError(
        f"no results found for run '{run}' (looked for {', '.join(map(str, candidates))})",
        "give a run directory written by `fame-ray finetune` or `fame-ray retrieve`, or its name with --storage",
    )


def read(run: str, storage_root: Location) -> dict:
    """A results record from a run directory, a results.json file, or a run name under `storage_root`."""
    return read_record(find(run, storage_root))


def side_by_side(records: list[dict]) -> str:
    """Several runs as one paper-style table: one row per run, metrics as columns."""
    columns = metric_columns([r.get("metrics", {}) for r in records])
    header = [
        "run",
        "backbone",
        "pretrain data",
        "pretrain epochs",
        "schedule",
        "mlp head",
        "K",
        "dataset",
        "split",
        "mode",
        *[f"{_title(c)} (%)" for c in columns],
    ]
    rows = []
    for record in records:
        recipe = record.get("pretrain_recipe") or {}
        rows.append(
            [
                record.get("run"),
                record.get("backbone"),
                recipe.get("dataset"),
                recipe.get("epochs"),
                recipe.get("schedule"),
                recipe.get("mlp_head"),
                recipe.get("queue_size"),
                record.get("dataset"),
                record.get("split"),
                record.get("mode"),
                *[record.get("metrics", {}).get(c) for c in columns],
            ]
        )
    return markdown_table(header, rows)
