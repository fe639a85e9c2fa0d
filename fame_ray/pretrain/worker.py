"""The Ray Train worker loop of pretraining: one function per worker, plain PyTorch inside.

The calls into Ray Train and Ray are few and each is marked `# Ray:`. Each worker takes the config and the plan,
builds MoCo on its device (DDP across workers via prepare_model), restores the latest
checkpoint, then streams its own rows of every step from decode tasks (`pipeline.pretrain_stream`:
which videos a step sees is fixed by the seed, so a resumed run continues in the epoch and at
the step where it stopped) and runs `train_step` on every per-worker batch, reporting metrics
every `log_every` steps and a checkpoint every `checkpoint_every` steps, at the end, and at once
when a node of the worker group is being preempted (asked at the log steps). Every
rank takes exactly the same number of steps.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time

import numpy as np
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointUploadMode

from fame_ray import checkpoints as ckpt
from fame_ray import logs, runtime
from fame_ray.components import schedule
from fame_ray.config import PretrainConfig, to_dict
from fame_ray.data.clips import pipeline
from fame_ray.pretrain import progress
from fame_ray.pretrain.metrics import MetricsWriter
from fame_ray.pretrain.plan import RunPlan
from fame_ray.pretrain.readout import FeatureReadout
from fame_ray.pretrain.step import build_training, data_masks, step_generators, train_step, unwrap, warmup_steps

logger = logging.getLogger(__name__)


def _choose_source(plan: RunPlan) -> tuple[str, int]:
    """('ray' | storage URI | '', step): the furthest of Ray's restored checkpoint and storage's.

    Ray Train restores the latest checkpoint it *registered*; after an ungraceful kill a
    checkpoint can be complete in storage (meta.json written) but not registered yet, so
    storage is scanned too, at this moment (not when the run started).
    """
    options = [("", 0)]
    restored = ray.train.get_checkpoint()  # Ray: restored after a failure, or from the run snapshot
    step = ckpt.ray_checkpoint_step(restored) if restored is not None else None
    if step is not None:
        options.append(("ray", step))
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
        restored = ray.train.get_checkpoint()  # Ray: the checkpoint Ray Train restored
        return ckpt.load_ray_checkpoint_state(restored), restored.path
    return ckpt.load_state(plan.run.at(source)), source


class Loop:
    """State of one worker's training run, and the three things it does: step, log, save."""

    def __init__(self, cfg: PretrainConfig, plan: RunPlan, relay=None):
        self.cfg, self.plan, self.relay = cfg, plan, relay
        context = ray.train.get_context()  # Ray: this worker's rank and world size
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()  # Ray: the worker's device
        world_plan = plan.for_world(self.world)
        self.per_worker_batch, self.effective_batch = world_plan.per_worker_batch, world_plan.effective_batch
        if self.effective_batch != cfg.train.global_batch and self.rank == 0:
            logger.warning(
                "global batch %d does not split over %d workers: using %d",
                cfg.train.global_batch,
                self.world,
                self.effective_batch,
            )
        self.total, self.steps_per_epoch = plan.total_steps, plan.steps_per_epoch
        torch.manual_seed(cfg.train.seed)  # the same initial weights and queue on every rank
        # The method's model (MoCo, or DCLR) before DDP wraps it; `self.model` is the wrapped one.
        self.net, self.optimizer = build_training(cfg, self.device)

        self.warmup = warmup_steps(cfg)
        self.step = self._restore()
        self.start_step = self.step
        # Ray deletes what it registered; this worker group prunes only what Ray never will.
        self.unmanaged = ckpt.unmanaged(plan.run) if self.rank == 0 else frozenset()
        # Ray: DDP when world > 1; the queue is identical on every rank, no need to re-send buffers.
        self.model = ray.train.torch.prepare_model(
            self.net, move_to_device=False, parallel_strategy_kwargs={"broadcast_buffers": False}
        )
        self.lrs = plan.lr_schedule(cfg, self.world)
        self.writer = MetricsWriter(plan.run, self.step) if self.rank == 0 else None
        self.timer = progress.StepTimer()
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor, float, dict]] = []
        self.last_metrics: dict = {}
        self.saved_for_preemption = False
        self.readout: FeatureReadout | None = None  # rank 0, when train.readout_every asks for it
        self.last_readout = self.step
        self.readout_start = float("nan")  # the read-out when this session started

    def _restore(self) -> int:
        """Model and optimizer state of the latest checkpoint (the model is on its device first,
        so the optimizer's momentum follows it there); the step to continue from."""
        state, source = _restore_source(self.plan, self.rank, self.world)
        if state is None:
            return 0
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.rank == 0:
            logger.info("resumed from %s at step %d (epoch %d)", source, state["step"], state["epoch"])
        return int(state["step"])

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def shard(self) -> pipeline.PretrainShard:
        """What this worker streams: its rows of every step from the current one on."""
        sampler = self.plan.sampler(self.world, self.rank, self.cfg.train.seed)
        return pipeline.PretrainShard(
            self.plan.manifest,
            self.cfg.data,
            sampler,
            self.step,
            self.total,
            data_masks(self.cfg),
            self.cfg.fame.beta,
            segment_positive=self.cfg.method == "be",
            statics=self.cfg.method == "dclr",
        )

    def batches(self, premade: bool = False):
        """This worker's batches from the current step to the end, epoch after epoch (or, for
        benchmarks and tests, passes over a premade dataset's shard, as many as needed)."""
        if premade:
            shard = ray.train.get_dataset_shard("train")  # Ray: the premade dataset's shard
            while True:
                yield from shard.iter_torch_batches(batch_size=self.per_worker_batch, drop_last=True)
        tasks, task_cpus = self.plan.resources.per_rank(self.world)
        # Ray: this worker's decode tasks, one batch per step in step order
        yield from pipeline.pretrain_batches(self.shard(), tasks, task_cpus, self._keep_data_stats)

    def _keep_data_stats(self, steps: range, stats) -> None:
        """The stream's stats of one segment (at most an epoch) of rank 0's stream, as
        `<run>/data_stats/epoch_<E>_steps_<first>-<last>.txt` (what `fame-ray runs show` lists)."""
        if self.rank != 0:
            return
        name = f"epoch_{steps.start // self.steps_per_epoch:04d}_steps_{steps.start + 1}-{steps.stop}.txt"
        try:
            (self.plan.run / ckpt.DATA_STATS_DIR / name).write_text(stats())
        except Exception as error:  # noqa: BLE001 - stats are telemetry: never fail a run over them
            logger.warning("could not keep the stream's stats of steps %d-%d: %s", steps.start + 1, steps.stop, error)

    def run(self, premade: bool = False) -> None:
        if self.step >= self.total:
            logger.info("rank %d: already at step %d of %d, nothing to do", self.rank, self.step, self.total)
            return
        if self.rank == 0 and self.cfg.train.readout_every and not premade:
            self.readout = FeatureReadout(self.cfg, self.plan.manifest, self.plan.test_manifest, self.device)
            start = self.readout_start = self.readout(unwrap(self.net).backbone)
            self._say(
                f"read-out at step {self.step}: {start:.3f} (a linear probe of held-out videos' features; chance "
                f"{1 / max(int(self.readout.train_labels.max()) + 1, 1):.3f}); loss and acc@1 below are the "
                f"{'DCLR' if self.cfg.method == 'dclr' else 'MoCo'} instance task's, which flattens once features "
                "group by class: the read-out is the learning signal"
            )
        self.timer.reset()
        for batch in self.batches(premade):
            self.timer.data_ready()
            lr = schedule.lr_at(self.lrs, self.step)
            generators = step_generators(self.cfg.train.seed, self.step, self.rank, self.device)
            learn = self.step >= self.warmup  # DCLR's first steps fill its queues (step.warmup_steps)
            loss, acc1 = train_step(self.model, self.optimizer, batch, lr, generators, self.cfg, self.device, learn)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the step's time ends when the GPU is done
            self.step += 1
            self.timer.step_done(self.effective_batch)
            self.pending.append((self.step, loss, acc1, lr, _stage_times(batch)))
            self._after_step()
            self.timer.bookkeeping_done()
            if self.step >= self.total:
                break
        if self.writer:
            self.writer.close()

    def _after_step(self) -> None:
        save = self.step % self.cfg.train.checkpoint_every == 0 or self.step == self.total
        check = self.step % self.cfg.train.log_every == 0
        preempted = check and not save and self._preempted()
        if check or save or preempted:
            self._log(report=not (save or preempted))
        if save or preempted:
            self._save(final=self.step == self.total, sync=preempted)

    def _preempted(self) -> bool:
        """Whether a node of this worker group is being drained for preemption (once per worker
        group: the checkpoint written now is what the next group resumes from).

        Ray Train learns of the drain from Ray Core (a spot reclaim, `ray drain-node`, or
        `fame-ray node guard` on SIGTERM) and agrees on the answer across ranks, so every rank
        asks at the same steps (the log steps) and gets the same value.
        """
        if self.saved_for_preemption:
            return False
        info = ray.train.get_preemption_info()  # Ray: a barrier over all ranks
        if info is None:
            return False
        self.saved_for_preemption = True
        if self.rank == 0:
            left = (
                ""
                if info.deadline_ms is None
                else f", {max(0.0, info.deadline_ms / 1000 - time.time()):.0f} s before the deadline"
            )
            logger.warning(
                "node(s) %s are being preempted (ranks %s): checkpoint at step %d%s",
                ", ".join(info.preempted_node_ids),
                info.preempted_ranks,
                self.step,
                left,
            )
        return True

    def _say(self, line: str) -> None:
        """A line for the user: through the driver's relay when there is one (rank 0 only)."""
        if self.relay is not None:
            self.relay.post.remote(line)  # Ray: to the driver, which prints it
        else:
            logger.info(line)

    def _readout(self) -> dict:
        """{'readout': accuracy} on rank 0 at the steps `train.readout_every` asks for (the log step at
        or after each multiple of it), else {}."""
        every = self.cfg.train.readout_every
        if self.readout is None or self.step // every == self.last_readout // every and self.step != self.total:
            return {}
        self.last_readout = self.step
        return {"readout": self.readout(unwrap(self.net).backbone), "readout_start": self.readout_start}

    def _log(self, report: bool = True) -> None:
        """Per-step records for the interval, one progress line, and (unless a checkpoint
        report follows) one metrics report on every rank."""
        values = (
            torch.stack([torch.stack([loss.float(), acc.float()]) for _, loss, acc, _, _ in self.pending])
            .cpu()
            .tolist()
        )
        readout = self._readout()
        summary = self.timer.summary(self.total - self.step)
        self.timer.reset()
        done, self.pending = self.pending, []
        for (step, _, _, lr, stages), (loss, acc1) in zip(done, values):
            record = {
                "loss": loss,
                "acc1": acc1,
                "lr": lr,
                "epoch": step // self.steps_per_epoch,
                "world_size": self.world,
                "start_step": self.start_step,
                **stages,
                **summary,
                **(readout if step == self.step else {}),
            }
            if self.writer:
                self.writer.write(step, record)
        # The progress line shows the interval's means: one batch's acc@1 is too noisy to read.
        means = {
            "loss_mean": float(np.mean([v[0] for v in values])),
            "acc1_mean": float(np.mean([v[1] for v in values])),
        }
        stages = {
            name: float(np.mean([entry[4][name] for entry in done]))
            for name in pipeline.STAGE_COLUMNS
            if all(name in entry[4] for entry in done)
        }
        self.last_metrics = {"step": self.step, **record, **means}
        if self.rank == 0:
            line = progress.format_line(
                self.step,
                self.total,
                self.epoch,
                {**record, **stages, "loss": means["loss_mean"], "acc1": means["acc1_mean"]},
            )
            self._say(line)
        if report:
            ray.train.report(self.last_metrics)  # Ray: every rank, same steps

    def _save(self, final: bool, sync: bool = False) -> None:
        """Checkpoint: rank 0 writes and attaches it, all ranks report (synchronously at the end
        and on preemption: the upload must be done before the workers go)."""
        name = ckpt.dir_name(self.step)
        if self.rank != 0:
            # Ray: every rank reports as often as rank 0 (no checkpoint from the others)
            ray.train.report(self.last_metrics, checkpoint=None, checkpoint_dir_name=name)
            return
        self.writer.flush()
        state = {
            "model": unwrap(self.net).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "world_size": self.world,
            "format": ckpt.FORMAT_VERSION,
        }
        meta = ckpt.make_meta(self.step, self.epoch, self.last_metrics, self.world, self.plan.git_sha)
        local = ckpt.write_local(tempfile.mkdtemp(prefix="fame-ray-ckpt-"), state, to_dict(self.cfg), meta)
        use_async = self.cfg.train.async_checkpoint and not (final or sync)
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
        ckpt.prune(self.plan.run, self.cfg.train.keep_checkpoints, self.unmanaged)


def _stage_times(batch: dict) -> dict:
    """Mean per-clip decode / crop / mask milliseconds of a batch (what the data tasks measured)."""
    return {name: float(np.mean(batch[name].numpy())) for name in pipeline.STAGE_COLUMNS if name in batch}


def train_loop(loop_config: dict) -> None:
    """Ray Train's train_loop_per_worker: {"config": PretrainConfig, "plan": RunPlan, "premade":
    bool, "relay": the driver's LineRelay, "verbose": bool}."""
    logs.setup()
    runtime.quiet_ray(loop_config.get("verbose", False))
    Loop(loop_config["config"], loop_config["plan"], loop_config.get("relay")).run(loop_config.get("premade", False))
