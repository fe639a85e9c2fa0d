"""The background-bias experiment's pure parts: its plan and bad input, the generator's variants and
masks, the sets, the static control's frozen clips, the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import decord
import numpy as np
import pytest

from fame_ray.commands.experiment import MARKER, VARIANT_NAMES, claim_folder, plan_of
from fame_ray.config import METHODS
from fame_ray.data import synthetic
from fame_ray.errors import UserError
from fame_ray.experiments import bias_plan, bias_readout, bias_report, scene_bias

REPO = Path(__file__).resolve().parents[2]


def test_every_method_of_the_config_is_in_the_default_plan():
    assert bias_plan.Plan().methods == METHODS
    bias_plan.check(bias_plan.with_overrides(bias_plan.Plan(), methods=METHODS))  # each can be asked for
    assert tuple(scene_bias.VARIANTS) == VARIANT_NAMES
    for make in bias_plan.FORMS.values():
        bias_plan.check(make())


def test_the_plan_counts_its_pretraining_runs():
    # Per method: 3 grid points (seed 0) + seeds 1 and 2 on base; each further set 3 seeds.
    assert bias_plan.Plan().pretraining_runs() == 5 * (3 + 2)
    assert bias_plan.with_overrides(bias_plan.Plan(), variants=VARIANT_NAMES).pretraining_runs() == 25 + 60
    assert bias_plan.quick_plan().pretraining_runs() == 2
    # The full form searches 3 x 2 points on every one of the five sets.
    assert bias_plan.full_plan().pretraining_runs() == 5 * 5 * (6 + 2)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"methods": ("fame", "simclr")}, "unknown method(s) simclr"),
        ({"variants": ("base", "fog")}, "unknown variant(s) fog"),
        ({"variants": ("camera",)}, "include base"),
        ({"ceiling_variants": ("base", "fog")}, "unknown variant(s) fog"),
        ({"ceiling_variants": ("camera",)}, "a ceiling on camera, a set this run does not write"),
        ({"grid": (("optim.lrr", (0.1,)),)}, "unknown config key 'optim.lrr'"),
        ({"grid": (("optim.lr", (-1.0,)),)}, "optim.lr must be positive"),
        ({"grid": (("train.seed", (1, 2)),)}, "sets this key itself"),
        ({"grid": (("data.crop_size", (32,)),)}, "sets this key itself"),
    ],
)
def test_bad_plans_are_one_user_error(change, expected):
    with pytest.raises(UserError, match=None) as caught:
        bias_plan.check(bias_plan.with_overrides(bias_plan.Plan(), **change))
    assert expected in caught.value.one_line()


def test_grid_flags_parse_and_refuse_repeats():
    grid = bias_plan.parse_grid(["optim.lr=0.03,0.1", "moco.momentum=0.99"])
    assert grid == (("optim.lr", (0.03, 0.1)), ("moco.momentum", (0.99,)))
    plan = bias_plan.with_overrides(bias_plan.Plan(), grid=grid)
    assert plan.points() == [{"optim.lr": 0.03, "moco.momentum": 0.99}, {"optim.lr": 0.1, "moco.momentum": 0.99}]
    with pytest.raises(UserError, match="given twice"):
        bias_plan.parse_grid(["optim.lr=0.1", "optim.lr=0.2"])
    with pytest.raises(UserError, match="KEY=V1,V2"):
        bias_plan.parse_grid(["optim.lr"])


def test_the_search_keeps_the_best_validation_point_and_the_earlier_on_a_tie():
    found = [
        {"point": {"optim.lr": lr}, "readouts": {"validation": score}}
        for lr, score in ((0.03, 0.5), (0.1, 0.75), (0.3, 0.75))
    ]
    assert bias_plan.best_point(found) == {"optim.lr": 0.1}
    assert bias_plan.best_point(found[:1]) == {"optim.lr": 0.03}


def test_a_run_is_named_by_its_config_and_its_set():
    plan = bias_plan.Plan()
    cfg = bias_plan.pretrain_config(plan, "/sets/biased", "fame", 1, {"optim.lr": 0.3}, "/runs")
    assert cfg.optim.lr == 0.3 and cfg.train.seed == 1 and cfg.method == "fame"
    # The cosine schedule ends at the last step: the run's epochs cover exactly its steps.
    assert cfg.train.epochs * bias_plan.steps_per_epoch(plan) >= plan.steps == cfg.train.max_steps
    assert (cfg.train.epochs - 1) * bias_plan.steps_per_epoch(plan) < plan.steps
    name = bias_plan.run_name(cfg, "base", plan.spec, {"optim.lr": 0.3})
    assert name.startswith("base-fame-lr0.3-seed1-")
    other_set = scene_bias.variant_spec(plan.spec, "small")
    assert bias_plan.run_name(cfg, "base", other_set, {"optim.lr": 0.3}) != name
    other = bias_plan.pretrain_config(plan, "/sets/biased", "fame", 1, {"optim.lr": 0.1}, "/elsewhere")
    assert bias_plan.run_name(other, "base", plan.spec, {"optim.lr": 0.3}).rsplit("-", 1)[1] != name.rsplit("-", 1)[1]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--methods", "fame,simclr"], "unknown method(s) simclr"),
        (["--variants", "base,fog"], "unknown variant(s) fog"),
        (["--ceiling-variants", "small"], "add it to --variants as well"),
        (["--grid", "optim.lrr=0.1"], "unknown config key 'optim.lrr'"),
        (["--quick", "--full"], "two different forms"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line_before_anything_runs(tmp_path, arguments, expected):
    out = tmp_path / "bias"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "fame_ray.cli", "experiment", "background-bias", "--out", str(out), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert expected in lines[0]
    assert not out.exists()


def test_the_out_folder_must_be_new_empty_or_an_earlier_run(tmp_path):
    assert claim_folder(str(tmp_path / "new")).endswith("new")
    assert (tmp_path / "new" / MARKER).is_file()  # marked: a rerun resumes it
    assert claim_folder(str(tmp_path / "new")).endswith("new")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        claim_folder(str(tmp_path / "file"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="did not write"):
        claim_folder(str(tmp_path / "other"))
    (tmp_path / "other" / MARKER).write_text("")
    claim_folder(str(tmp_path / "other"))
    with pytest.raises(UserError, match="local folder or file, not an s3:// location"):
        claim_folder("s3://bucket/bias")


def _scene(seed: int, **options):
    rng = np.random.default_rng(seed)
    motion = synthetic.motion_classes(3)[2]
    look = {"object_colour": (235, 235, 235), "object_size": (0.18, 0.23), **options}
    return synthetic.render_scene(motion, 16, 64, 64, rng, 0.3, 0.5, **look)


def test_a_variant_changes_only_its_factor_and_the_mask_is_the_class_object():
    base = _scene(4)
    palette, distractor = _scene(4, object_colour="palette"), _scene(4, distractor=True)
    # The same trajectories (the variants draw after the base look): the same class-object masks.
    assert (palette.mask == base.mask).all() and (distractor.mask == base.mask).all()
    assert 0.05 < base.mask.mean() < 0.4
    inside = base.video[base.mask]
    assert (np.abs(inside.astype(int) - 235) <= 0).mean() > 0.5  # the light fill (the rest: the dark outline)
    # Palette: the fill comes from the background's colours, not the light colour.
    assert np.abs(palette.video[palette.mask].astype(int) - 235).mean() > 60
    # The distractor moves outside the class object's mask; the base has nothing moving there.
    outside = ~base.mask.any(0)
    changes = lambda video: (np.abs(np.diff(video.astype(int), axis=0)).sum(-1)[:, outside] > 150).mean()  # noqa: E731
    assert changes(distractor.video) > 5 * changes(base.video)


def test_the_camera_moves_the_whole_background():
    still, moving = _scene(2), _scene(2, camera=synthetic.Camera(pan=(1.0, 1.5), shake=2.0))
    background = ~(still.mask.any(0) | moving.mask.any(0))

    def motion(video):
        return np.abs(np.diff(video.astype(int), axis=0)).sum(-1)[:, background].mean()

    assert motion(moving.video) > 1.5 * motion(still.video)  # about 2x: the texture is smooth, the noise +-4
    assert synthetic.Camera(pan=(0.5, 1.5), shake=2.0).margin(32) == 4 + 50


def test_sets_keep_families_and_the_object_masks(tmp_path):
    spec = scene_bias.SceneBiasSpec(
        classes=2, families=2, train_per_class=2, val_per_class=1, probe_per_class=2, frames=12
    )
    roots = scene_bias.write_sets(str(tmp_path), spec)
    assert set(roots) == {"biased", "decorrelated"}
    path = os.path.join(roots["decorrelated"], "test/vertical/video_0001.mp4")
    frames = decord.VideoReader(path).get_batch(list(range(12))).asnumpy()
    assert scene_bias.families_of(roots["decorrelated"], [path]).tolist()[0] in (0, 1)
    (mask,) = scene_bias.masks_of(roots["decorrelated"], [path], spec)
    assert mask.shape == (12, 64, 64) and 0.05 < mask.mean() < 0.4
    assert frames[mask].mean() > frames[~mask].mean() + 40  # the mask is where the light object is decoded
    written = (Path(roots["biased"]) / synthetic.MARKER).stat().st_mtime_ns
    scene_bias.write_sets(str(tmp_path), spec)  # complete: reused
    assert (Path(roots["biased"]) / synthetic.MARKER).stat().st_mtime_ns == written


def test_frozen_clips_keep_one_frame_of_their_own():
    clips = np.random.default_rng(0).integers(0, 255, size=(3, 3, 8, 4, 4), dtype=np.uint8)
    batch = {"clip": clips, "video_index": np.array([0, 1, 1]), "clip_index": np.array([0, 0, 1]), "label": [0, 1, 1]}
    frozen = bias_readout.freeze(batch)["clip"]
    assert frozen.shape == clips.shape and (np.diff(frozen.astype(int), axis=2) == 0).all()
    for clip, still in zip(clips, frozen):
        assert any((still[:, 0] == clip[:, t]).all() for t in range(8))
    again = bias_readout.freeze(batch)["clip"]
    assert (again == frozen).all()  # seeded by video and clip: the same for every encoder


def _record(fame_values, moco_values) -> dict:
    def summary(values):
        result = {"readouts": {}, "in_mask": bias_report._summary([0.3] * len(values))}
        for name in ("motion", "scene", "biased_to_decorrelated"):
            result["readouts"][name] = bias_report._summary(values)
            result["readouts"][f"{name}_static"] = bias_report._summary([0.15] * len(values))
        return result

    variant = {
        "factor": "f",
        "recipes": {"fame": {"optim.lr": 0.1}, "moco": {"optim.lr": 0.3}},
        "results": {"fame": summary(fame_values), "moco": summary(moco_values)},
        "ceiling": {"top1": 0.9, "epochs": 3, "curve": [{"epoch": 1, "train_loss": 2.0, "test_video_top1": 0.5}]},
        "mask_area": 0.12,
    }
    return {
        "form": "custom",
        "variants": {"base": variant},
        "search": {"grid": [["optim.lr", [0.1, 0.3]]], "criterion": "c"},
        "chance": {"motion": 0.125, "scene": 0.125, "biased_to_decorrelated": 0.125},
        "plan": {"seeds": [0, 1, 2], "steps": 10},
        "machine": {"cpu_count": 2, "processor": "cpu"},
        "wall_s": 60.0,
    }


def test_comparisons_call_a_tie_within_twice_the_spread():
    rows = bias_report.comparisons(_record([0.60, 0.62, 0.64], [0.50, 0.51, 0.52]))
    assert rows[0][:2] == ["base", "motion"] and "(higher)" in rows[0][2]
    rows = bias_report.comparisons(_record([0.50, 0.60, 0.70], [0.50, 0.55, 0.60]))
    assert "(tie)" in rows[0][2]
    table = bias_report.markdown(_record([0.6, 0.6, 0.6], [0.5, 0.5, 0.5]))
    assert "| MoCo + FAME | lr 0.1 | 60.0 ± 0.0 | 15.0 ± 0.0 |" in table
    assert "supervised ceiling" in table and "FAME − MoCo" in table
    assert bias_report.chart(_record([0.6, 0.6], [0.5, 0.5])).size == (1000, 4 * 330)


def test_the_report_says_whether_the_ceiling_bounds_every_frozen_probe():
    record = _record([0.60, 0.62, 0.64], [0.50, 0.51, 0.52])
    assert "ceiling (90.0) is above every frozen motion probe (the highest, MoCo + FAME, 64.0" in bias_report.markdown(
        record
    )
    record["variants"]["base"]["ceiling"]["top1"] = 0.63  # below FAME's mean + std (0.62 + 0.02)
    assert "ceiling (63.0) is not above every frozen motion probe" in bias_report.markdown(record)


def test_ceilings_follow_the_sets_a_run_writes_unless_asked_for():
    flags = dict(quick=False, full=False, seeds=None, steps=None, methods=None, grid=None, ceiling_epochs=None)
    assert plan_of(**flags, variants="all", ceiling_variants=None).ceiling_variants == ("base",)
    every = plan_of(**flags, variants="all", ceiling_variants="all")
    assert every.ceiling_variants == VARIANT_NAMES and every.variants == VARIANT_NAMES
    assert plan_of(**flags, variants="base,camera", ceiling_variants="camera").ceiling_variants == ("camera",)
    # The full form's ceilings on every set narrow to the sets asked for, not refused.
    full = plan_of(**{**flags, "full": True}, variants="base,camera", ceiling_variants=None)
    assert full.ceiling_variants == ("base", "camera")
    with pytest.raises(UserError, match="a set this run does not write"):
        plan_of(**flags, variants="base", ceiling_variants="base,small")
