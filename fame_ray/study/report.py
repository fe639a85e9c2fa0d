"""The study's table: each metric as mean ± std over the splits, the paper's figure beside it with
its source and the difference, and every setting needed to rerun it (study.md, study.json,
study.png).

    summary = summarize(study, stages, records)      # pure: records = stage key -> results.json
    write(summary, folder)

For finetunes and probes two numbers per split come from each run's results (eval.report): the
official protocol's (the best test epoch, as the paper reports) and the held-out one (the trial
chosen on the validation split, its last test); the paper's figure is compared with the first.
"""

from __future__ import annotations

import io
import json
import math

import yaml

from fame_ray.config import to_dict
from fame_ray.eval.chart import grouped_bars
from fame_ray.eval.report import markdown_table
from fame_ray.storage import Location
from fame_ray.study.plan import EVALUATIONS, TITLES
from fame_ray.study.references import PAPER, figures_for

FILES = ("study.md", "study.json", "study.png")
DATASET_TITLES = {"ucf101": "UCF101", "hmdb51": "HMDB51", "diving48": "Diving48"}
# The metrics each evaluation reports in the table (results keys, in percent).
METRICS = {"finetune": ("video_top1",), "linear": ("video_top1",), "retrieval": ("R@1", "R@5")}
METRIC_TITLES = {"video_top1": "video top-1", "R@1": "R@1", "R@5": "R@5"}


def split_numbers(record: dict, metric: str) -> tuple[float | None, float | None]:
    """(the official protocol's number, the held-out number) of one run's results, in percent."""
    numbers = record.get("numbers") or {}
    if not numbers:  # retrieval: one number
        return record.get("metrics", {}).get(metric), None
    official = (numbers.get("official") or {}).get("metrics", {}).get(metric)
    held_out = (numbers.get("held_out") or {}).get("metrics", {}).get(metric)
    return official, held_out


def mean_std(values: list[float]) -> dict | None:
    """{'mean', 'std' (population, as over the official splits), 'values'}; None when empty."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean": round(mean, 2), "std": round(std, 2), "values": values}


def _row(study, method: str, kind: str, dataset: str, metric: str, stages: list, records: dict) -> dict:
    runs = [s for s in stages if (s.method, s.kind, s.dataset) == (method, kind, dataset)]
    found = [(s, records[s.key]) for s in runs if s.key in records]
    official = mean_std([split_numbers(record, metric)[0] for _, record in found])
    held_out = mean_std([split_numbers(record, metric)[1] for _, record in found])
    figures = figures_for(study.paper, method, kind, dataset, metric)
    return {
        "method": method,
        "evaluation": kind,
        "dataset": dataset,
        "metric": metric,
        "splits": [s.split for s, _ in found],
        "splits_planned": [s.split for s in runs],
        "official": official,
        "held_out": held_out,
        "paper": [{"value": f.value, "source": f.source} for f in figures],
        "difference": round(official["mean"] - figures[0].value, 2) if official and figures else None,
        "runs": [s.key for s, _ in found],
    }


def summarize(study, stages: list, records: dict, skipped: dict | None = None, context: dict | None = None) -> dict:
    """study.json: the rows of the table, the paper's setting, every stage's config and status."""
    rows = []
    for method in study.method_names():
        for kind in EVALUATIONS:
            for dataset in getattr(study, f"{kind}_on"):
                for metric in METRICS[kind]:
                    rows.append(_row(study, method, kind, dataset, metric, stages, records))
    setting = PAPER.get(study.paper)
    return {
        "rows": rows,
        "paper": {"setting": study.paper, "describe": setting.describe() if setting else "none"},
        "comparable": comparable(study, stages),
        "skipped": dict(skipped or {}),
        "stages": [
            {"key": s.key, "kind": s.kind, "method": s.method, "dataset": s.dataset, "split": s.split} for s in stages
        ],
        "study_config": to_dict(study),
        "stage_configs": {s.key: to_dict(s.config) for s in stages},
        **(context or {}),
    }


def comparable(study, stages: list) -> str:
    """Whether the study's pretraining is the one the paper's figures come from, in one line."""
    setting = PAPER.get(study.paper)
    if setting is None:
        return "no paper figures (paper: none)"
    pretrain = next((s.config for s in stages if s.kind == "pretrain"), None)
    if pretrain is None:
        return f"the paper's figures are of {setting.describe()}; this study evaluates the weights {study.pretrained}"
    ours = f"{pretrain.model.arch} pretrained on {pretrain.data.dataset}"
    if (pretrain.model.arch, pretrain.data.dataset) == (setting.arch, setting.pretrain_dataset):
        return f"the paper's figures are of {setting.describe()}, as this study"
    return f"not comparable: the paper's figures are of {setting.describe()}, this study's {ours}"


def _cell(summary: dict | None, planned: int) -> str:
    if not summary:
        return "–"
    count = len(summary["values"])
    shown = f"{summary['mean']:.1f} ± {summary['std']:.1f}"
    return (
        f"{shown} ({count} of {planned} splits)" if count < planned else f"{shown} ({count} split{'s' * (count > 1)})"
    )


def table(summary: dict) -> str:
    """The Markdown table of the rows."""
    header = ["evaluation", "metric", "method", "official protocol (%)", "held-out (%)", "paper (%)", "source", "Δ"]
    rows = []
    for row in summary["rows"]:
        planned = len(row["splits_planned"])
        papers = row["paper"]
        difference = row["difference"]
        rows.append(
            [
                f"{DATASET_TITLES.get(row['dataset'], row['dataset'])} {TITLES[row['evaluation']]}",
                METRIC_TITLES.get(row["metric"], row["metric"]),
                row["method"],
                _cell(row["official"], planned) if planned else "not planned",
                _cell(row["held_out"], planned) if row["evaluation"] != "retrieval" else "–",
                " / ".join(f"{p['value']:.1f}" for p in papers) or "–",
                " / ".join(p["source"] for p in papers) or "–",
                f"{difference:+.1f}" if difference is not None else "–",
            ]
        )
    return markdown_table(header, rows)


def markdown(summary: dict) -> str:
    """study.md."""
    lines = [f"# Study {summary.get('study', '')}", "", table(summary), ""]
    lines += [
        "Each metric: mean ± std over the splits (population std). 'official protocol' is the paper's number (the "
        "best of the test epochs, as the official eval.py); 'held-out' is the trial chosen on the validation split, "
        "at its last test (the unbiased number). Δ = official protocol − the first paper figure.",
        "",
        f"Paper figures: {summary['comparable']}.",
        "",
    ]
    if summary.get("note"):
        lines += [summary["note"], ""]
    if summary.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {key}: {why}" for key, why in summary["skipped"].items()] + [""]
    lines += ["## Rerun", "", f"    {summary.get('command', 'fame-ray reproduce')}", ""]
    lines += [f"git {summary.get('git', 'unknown')}; {summary.get('machine', '')}", ""]
    lines += ["## Study config (resolved)", "", "```yaml", yaml.safe_dump(summary["study_config"], sort_keys=False)]
    lines += ["```", "", "## Stages", ""]
    lines += [markdown_table(["stage", "run folder (config.yaml / results.json there)"], _stage_rows(summary)), ""]
    lines += ["Every stage's resolved config is in study.json (stage_configs).", ""]
    return "\n".join(lines)


def _stage_rows(summary: dict) -> list[list]:
    return [[stage["key"], stage["key"] if stage["kind"] != "manifests" else "–"] for stage in summary["stages"]]


def figure(summary: dict):
    """study.png: one group per evaluation and metric, a bar per method (± std) and the paper's."""
    groups = {}
    for row in summary["rows"]:
        if not row["official"] and not row["paper"]:
            continue
        label = f"{DATASET_TITLES.get(row['dataset'], row['dataset'])} {row['evaluation']} {row['metric']}"
        bars = groups.setdefault(label, {})
        if row["official"]:
            bars[row["method"]] = (row["official"]["mean"] / 100, row["official"]["std"] / 100)
        if row["paper"]:
            bars["paper"] = (row["paper"][0]["value"] / 100, 0.0)
    return grouped_bars(groups, f"Study {summary.get('study', '')}: mean ± std over splits (fraction)", width=1100)


def write(summary: dict, folder: Location) -> list[Location]:
    """study.md, study.json and study.png into `folder` (local or s3://); returns where they went."""
    png = io.BytesIO()
    figure(summary).save(png, format="PNG")
    contents = {
        "study.md": markdown(summary).encode(),
        "study.json": json.dumps(summary, indent=1, default=str).encode(),
        "study.png": png.getvalue(),
    }
    written = []
    for name, data in contents.items():
        (folder / name).put_bytes(data)
        written.append(folder / name)
    return written
