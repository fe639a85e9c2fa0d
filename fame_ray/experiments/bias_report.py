"""The background-bias experiment's results: seeds summarised, results.json / .md / .png.

Spread: the standard deviation over seeds (ddof 1, the sample estimate; 0 with one seed).
Comparisons (`comparisons`): the difference of two methods' means with the combined spread
sqrt(s1^2 + s2^2); a difference beyond twice that is called higher or lower, else a tie. With
three seeds a spread is itself uncertain: the rule is a reading aid, the numbers are the result.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
from PIL import Image

from fame_ray.eval.chart import grouped_bars
from fame_ray.eval.report import markdown_table
from fame_ray.experiments.bias_readout import READOUTS
from fame_ray.storage import Location

LABELS = {
    "fame": "MoCo + FAME",
    "moco": "MoCo",
    "be": "Background Erasing (as released)",
    "moco_be_mix": "MoCo + BE frame mix",
    "dclr": "DCLR",
    "random_init": "random init (no pretraining)",
}
HEADERS = {
    "motion": "motion",
    "scene": "scene",
    "biased_to_decorrelated": "biased → decorrelated",
}
# The comparisons the README reads: higher is better on these two, scene is reported as measured.
COMPARED = ("motion", "biased_to_decorrelated", "scene")


def label(method: str) -> str:
    return LABELS.get(method, method)


def _summary(values: list[float]) -> dict:
    values = [float(v) for v in values]
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "values": values}


def summarise(results: list[dict]) -> dict:
    """Per read-out (and in-mask share) the mean, std and values over the seeds' results."""
    names = list(results[0]["readouts"])
    out = {"readouts": {name: _summary([r["readouts"][name] for r in results]) for name in names}}
    out["in_mask"] = _summary([r["in_mask"] for r in results])
    acc = [r["contrastive_acc1"] for r in results if r.get("contrastive_acc1") is not None]
    if acc:
        out["contrastive_acc1"] = _summary(acc)
    return out


def one_line(result: dict) -> str:
    found = result["readouts"]
    parts = [f"{name} {found[name]:.3f} (static {found[name + '_static']:.3f})" for name in READOUTS]
    return " | ".join([*parts, f"validation {found['validation']:.3f}", f"in mask {result['in_mask']:.3f}"])


def _cell(summary: dict) -> str:
    return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"


def _point(point: dict) -> str:
    return ", ".join(f"{key.rsplit('.', 1)[-1]} {value}" for key, value in point.items()) or "shared recipe"


def _variant_table(name: str, found: dict, chance: dict) -> list[str]:
    headers = ["pretraining", "recipe"]
    for readout in READOUTS:
        headers += [HEADERS[readout], f"{HEADERS[readout]}, static"]
    headers.append("activation in object")
    rows = []
    for method, summary in found["results"].items():
        recipe = _point(found["recipes"][method]) if method in found["recipes"] else "-"
        readouts = summary["readouts"]
        cells = [c for r in READOUTS for c in (_cell(readouts[r]), _cell(readouts[f"{r}_static"]))]
        rows.append([label(method), recipe, *cells, _cell(summary["in_mask"])])
    ceiling = found.get("ceiling") or {}
    if ceiling.get("top1") is not None:
        rows.append(["supervised ceiling", f"{ceiling['epochs']} epochs", f"{100 * ceiling['top1']:.1f}", *["-"] * 6])
    rows.append(["chance", "", *[f"{100 * chance[r]:.1f}" for r in READOUTS for _ in (0, 1)], ""])
    return [
        f"## {name}: {found['factor']}",
        "",
        markdown_table(headers, rows),
        "",
        f"The object's mask covers {100 * found['mask_area']:.1f}% of the crop: the share a map blind to it scores.",
        *([ceiling_check(found)] if ceiling.get("top1") is not None else []),
        "",
    ]


def ceiling_check(found: dict) -> str:
    """Whether the supervised ceiling lies above every frozen encoder's motion probe (mean + std): a ceiling
    below one bounds nothing."""
    top1 = found["ceiling"]["top1"]
    best, method = max(
        (summary["readouts"]["motion"]["mean"] + summary["readouts"]["motion"]["std"], method)
        for method, summary in found["results"].items()
    )
    where = "above" if top1 > best else "not above"
    return (
        f"The supervised ceiling ({100 * top1:.1f}) is {where} every frozen motion probe (the highest, "
        f"{label(method)}, {100 * best:.1f} at its mean + std)."
    )


def comparisons(record: dict) -> list[list[str]]:
    """Rows: variant, read-out, then FAME minus each other method and random init."""
    variants = record["variants"]
    others = [m for m in next(iter(variants.values()))["results"] if m != "fame"]
    rows = []
    for name, found in variants.items():
        results = found["results"]
        if "fame" not in results:
            return []
        for readout in COMPARED:
            fame = results["fame"]["readouts"][readout]
            cells = []
            for other in others:
                theirs = results[other]["readouts"][readout]
                difference = fame["mean"] - theirs["mean"]
                spread = math.hypot(fame["std"], theirs["std"])
                if len(fame["values"]) < 2:
                    verdict = "one seed"
                elif abs(difference) > 2 * spread:
                    verdict = "higher" if difference > 0 else "lower"
                else:
                    verdict = "tie"
                cells.append(f"{100 * difference:+.1f} ± {100 * spread:.1f} ({verdict})")
            rows.append([name, HEADERS[readout], *cells])
    return rows


def _search_table(search: dict, grid: list) -> list[str]:
    lines = []
    for variant, found in search.items():
        if not isinstance(found, dict) or "scores" not in found:
            continue
        points = [_point(s["point"]) for s in next(iter(found["scores"].values()))]
        rows = [
            [label(method), *[f"{100 * s['validation']:.1f}" for s in scores], _point(found["chosen"][method])]
            for method, scores in found["scores"].items()
        ]
        lines += [f"Validation accuracy (%) on {variant}:", "", markdown_table(["method", *points, "chosen"], rows), ""]
    return lines


def _curves(record: dict) -> list[str]:
    curves = {name: (found.get("ceiling") or {}).get("curve") or [] for name, found in record["variants"].items()}
    curves = {name: curve for name, curve in curves.items() if curve}
    if not curves:
        return []
    length = max(len(curve) for curve in curves.values())
    shown = sorted({1, length, *range(5, length + 1, 5)})
    rows = []
    for epoch in shown:
        cells = []
        for curve in curves.values():
            row = next((r for r in curve if r["epoch"] == epoch), None)
            cells.append(f"{row['train_loss']:.3f} / {100 * row['test_video_top1']:.1f}" if row else "")
        rows.append([str(epoch), *cells])
    return [
        "## Supervised ceiling: training curves",
        "",
        "Train loss / test video top-1 (%) by epoch (every epoch in results.json).",
        "",
        markdown_table(["epoch", *curves], rows),
        "",
    ]


def markdown(record: dict) -> str:
    """results.md: the search, one table per variant, FAME against the others, the ceiling's curves."""
    plan = record["plan"]
    methods = list(next(iter(record["variants"].values()))["results"])
    lines = [
        "# Background bias: motion or scene?",
        "",
        (
            f"Form: {record['form']}. Linear-probe accuracy (%) on frozen features, mean ± std over "
            f"{len(plan['seeds'])} seed(s); {plan['steps']} pretraining steps of 32 clips per run; each read-out "
            "also on static clips (every clip's frames replaced by one of them: no motion)."
        ),
        "",
        "## Recipe search",
        "",
        f"Grid: {', '.join(f'{key} in {values}' for key, values in record['search']['grid'])}; "
        f"criterion: {record['search']['criterion']}.",
        "",
        *_search_table(record["search"], record["search"]["grid"]),
    ]
    for name, found in record["variants"].items():
        lines += _variant_table(name, found, record["chance"])
    rows = comparisons(record)
    if rows:
        headers = ["variant", "read-out", *[f"FAME − {label(m)}" for m in methods if m != "fame"]]
        lines += [
            "## FAME against the others",
            "",
            "Difference of means (points) ± combined seed spread; beyond twice it: higher or lower, else a tie.",
            "",
            markdown_table(headers, rows),
            "",
        ]
    lines += _curves(record)
    machine = record["machine"]
    lines += [f"Wall time {record['wall_s'] / 60:.1f} min on {machine['cpu_count']} CPUs ({machine['processor']}).", ""]
    return "\n".join(lines)


def chart(record: dict) -> Image.Image:
    """results.png: one panel per read-out (motion, its static control, scene, biased -> decorrelated),
    bars per variant and method, whiskers the seeds' std."""
    panels = [("motion", "motion"), ("motion_static", "motion"), ("scene", "scene")]
    panels.append(("biased_to_decorrelated", "biased_to_decorrelated"))
    images = []
    for readout, chance in panels:
        groups = {
            name: {
                label(method).removesuffix(" (no pretraining)"): (
                    summary["readouts"][readout]["mean"],
                    summary["readouts"][readout]["std"],
                )
                for method, summary in found["results"].items()
            }
            for name, found in record["variants"].items()
        }
        title = f"{readout.replace('_', ' ')}: linear probe on frozen features (mean ± std over seeds)"
        images.append(grouped_bars(groups, title, {"chance": record["chance"][chance]}, width=1000, height=330))
    sheet = Image.new("RGB", (1000, 330 * len(images)), "white")
    for index, image in enumerate(images):
        sheet.paste(image, (0, 330 * index))
    return sheet


def write(record: dict, target: Location) -> None:
    (target / "results.json").write_text(json.dumps(record, indent=2))
    (target / "results.md").write_text(markdown(record))
    png = io.BytesIO()
    chart(record).save(png, format="PNG")
    (target / "results.png").write_bytes(png.getvalue())
