"""The Ray Train worker loop of pretraining: one function per worker, plain PyTorch inside.

Ray-specific lines are few and marked `# Ray:`. Each worker: takes the config and plan, builds MoCo
on its device (DDP across workers via prepare_model), restores the latest checkpoint, then
loops `train_step` over its Ray Data shard for a fixed number of steps (the same on every
rank), reporting metrics every `log_every` steps and a checkpoint every `checkpoint_every`
steps and at the end. Data passes restart when a shard ends, so every rank takes exactly the
same number of steps; a resumed run starts a fresh pass over the data (clip positions are
random per pass anyway), at the step, epoch, lr and RNG state of the checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import tempfile

import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointUploadMode

from fame_ray import checkpoints as ckpt
from fame_ray import logs
from fame_ray.config import PretrainConfig, to_dict
from fame_ray.pretrain import progress, schedule
from fame_ray.pretrain.metrics import MetricsWriter
from fame_ray.pretrain.plan import RunPlan
from fame_ray.pretrain.step import build_training, new_generators, train_step, unwrap

logger = logging.getLogger(__name__)


def _choose_source(plan: RunPlan) -> tuple[str, int]:
    """('ray' | storage URI | '', step): the furthest of Ray's restored checkpoint and storage's.

    Ray Train restores the latest checkpoint it *registered*; after an ungraceful kill a
    checkpoint can be complete in storage (meta.json written) but not registered yet, so
    storage is scanned too, at this moment (not when the run started).
    """
    options = [("", 0)]
    restored = ray.train.get_checkpoint()  # Ray: restored after a failure, or from the run snapshot
    if restored is not None:
        options.append(("ray", ckpt.ray_checkpoint_step(restored)))
    latest = ckpt.latest_complete(plan.run)
    if latest is not None:
        options.append((latest.uri, latest.step))
    return max(options, key=lambda option: option[1])


def _restore_source(plan: RunPlan, rank: int, world: int):
    """(state dict or None, where from): rank 0 chooses, every rank loads the same checkpoint."""
    choice = [_choose_source(plan) if rank == 0 else None]
    if world > 1 and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(choice, src=0)
    source, _ = choice[0]
    if not source:
        return None, ""
    if source == "ray":
        restored = ray.train.get_checkpoint()
        return ckpt.load_ray_checkpoint_state(restored), restored.path
    return ckpt.load_state(plan.run.at(source)), source


def _set_rng(state: dict | None, generators: dict, rank: int, world: int) -> None:
    """Per-rank RNG states from the checkpoint when the world size is unchanged."""
    if not state or state.get("world_size") != world or rank >= len(state["rng"]):
        return
    saved = state["rng"][rank]
    torch.set_rng_state(saved["torch"])
    for name, generator in generators.items():
        generator.set_state(saved[name])


def _rng_states(generators: dict, world: int) -> list[dict]:
    """Every rank's RNG state, gathered (a collective: all ranks call it)."""
    mine = {"torch": torch.get_rng_state(), **{name: generator.get_state().cpu() for name, generator in generators.items()}}
    if world == 1 or not torch.distributed.is_initialized():
        return [mine]
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, mine)
    return gathered


def _batches(shard, per_worker: int):
    """Batches forever: a new pass over the shard each time it ends."""
    while True:
        for batch in shard.iter_torch_batches(batch_size=per_worker, drop_last=True):  # Ray: streaming shard
            yield batch


class Loop:
    """State of one worker's training run, and the three things it does: step, log, save."""

    def __init__(self, cfg: PretrainConfig, plan: RunPlan):
        self.cfg, self.plan = cfg, plan
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()  # Ray: the worker's device
        self.world_plan = plan.for_world(self.world)
        self.per_worker, self.effective_batch = self.world_plan.per_worker_batch, self.world_plan.effective_batch
        if self.effective_batch != cfg.train.global_batch and self.rank == 0:
            logger.warning("global batch %d does not split over %d workers: using %d", cfg.train.global_batch, self.world, self.effective_batch)
        self.total = plan.total_steps
        self.steps_per_epoch = plan.steps_per_epoch
        torch.manual_seed(cfg.train.seed)  # the same initial weights and queue on every rank
        self.generators = new_generators(cfg.train.seed, self.rank, self.device)
        self.moco, self.optimizer = build_training(cfg, self.device, self.generators)
        self.step = self._restore()
        self.start_step = self.step
        # Ray: DDP when world > 1; the queue is identical on every rank, no need to re-send buffers.
        self.model = ray.train.torch.prepare_model(self.moco, move_to_device=False, parallel_strategy_kwargs={"broadcast_buffers": False})
        self.lrs = schedule.lr_schedule(cfg.optim, self.world_plan.peak_lr, self.steps_per_epoch, cfg.train.epochs)
        self.writer = MetricsWriter(plan.run, self.step) if self.rank == 0 else None
        self.timer = progress.StepTimer()
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, float]] = []
        self.last_metrics: dict = {}

    def _restore(self) -> int:
        state, source = _restore_source(self.plan, self.rank, self.world)
        if state is None:
            return 0
        self.moco.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng(state, self.generators, self.rank, self.world)
        if self.rank == 0:
            logger.info("resumed from %s at step %d (epoch %d)", source, state["step"], state["epoch"])
        return int(state["step"])

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def run(self) -> None:
        if self.step >= self.total:
            logger.info("rank %d: already at step %d of %d, nothing to do", self.rank, self.step, self.total)
            return
        batches = _batches(ray.train.get_dataset_shard("train"), self.per_worker)  # Ray: this worker's shard
        self.timer.reset()
        while self.step < self.total:
            batch = next(batches)
            self.timer.data_ready()
            lr = schedule.lr_at(self.lrs, self.step)
            loss, acc1 = train_step(self.model, self.optimizer, batch, lr, self.generators, self.cfg, self.device)
            self.step += 1
            self.timer.step_done(self.effective_batch)
            self.pending.append((self.step, loss, acc1, lr))
            self._after_step()
            self.timer.bookkeeping_done()
        if self.writer:
            self.writer.close()

    def _after_step(self) -> None:
        save = self.step % self.cfg.train.checkpoint_every == 0 or self.step == self.total
        if self.step % self.cfg.train.log_every == 0 or save:
            self._log()
        if save:
            self._save(final=self.step == self.total)

    def _log(self) -> None:
        """Per-step records for the interval, one progress line, one report on every rank."""
        values = torch.stack([torch.stack([loss.float(), acc.float()]) for _, loss, acc, _ in self.pending]).cpu().tolist()
        summary = self.timer.summary(self.total - self.step)
        self.timer.reset()
        for (step, _, _, lr), (loss, acc1) in zip(self.pending, values):
            record = {"loss": loss, "acc1": acc1, "lr": lr, "epoch": step // self.steps_per_epoch, "world_size": self.world, "start_step": self.start_step, **summary}
            if self.writer:
                self.writer.write(step, record)
        self.pending = []
        self.last_metrics = {"step": self.step, **record}
        if self.rank == 0:
            logger.info(progress.format_line(self.step, self.total, self.epoch, record))
        if self.step % self.cfg.train.checkpoint_every and self.step != self.total:
            ray.train.report(self.last_metrics)  # Ray: every rank, same steps

    def _save(self, final: bool) -> None:
        """Checkpoint: RNG states gathered, rank 0 writes and attaches it, all ranks report."""
        rng = _rng_states(self.generators, self.world)
        name = ckpt.dir_name(self.step)
        if self.rank != 0:
            ray.train.report(self.last_metrics, checkpoint=None, checkpoint_dir_name=name)  # Ray: same count on every rank
            return
        self.writer.flush()
        state = {
            "model": unwrap(self.moco).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None,
            "step": self.step,
            "epoch": self.epoch,
            "world_size": self.world,
            "rng": rng,
            "format": ckpt.FORMAT_VERSION,
        }
        meta = ckpt.make_meta(self.step, self.epoch, self.last_metrics, self.world, self.plan.git_sha)
        local = ckpt.write_local(tempfile.mkdtemp(prefix="fame-ray-ckpt-"), state, to_dict(self.cfg), meta)
        use_async = self.cfg.train.async_checkpoint and not final
        mode = CheckpointUploadMode.ASYNC if use_async else CheckpointUploadMode.SYNC
        ray.train.report(  # Ray: rank 0 attaches the checkpoint; upload writes meta.json last
            self.last_metrics,
            checkpoint=Checkpoint.from_directory(local),
            checkpoint_dir_name=name,
            checkpoint_upload_mode=mode,
            checkpoint_upload_fn=ckpt.upload,
        )
        if not use_async:
            shutil.rmtree(local, ignore_errors=True)


def train_loop(loop_config: dict) -> None:
    """Ray Train's train_loop_per_worker: {"config": PretrainConfig, "plan": RunPlan} -> train."""
    logs.setup()
    Loop(loop_config["config"], loop_config["plan"]).run()
