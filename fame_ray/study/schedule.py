"""Which stages of a study run at once, and the share of the cluster each one plans for.

    wanted = want(stage, cluster)                      # {"CPU": n, "GPU": m}
    started = admit(ready, running, cluster, limit)    # [(stage, budget), ...]
    waves(stages, cluster, limit)                      # the dry run's plan: what starts together

A stage's want is the smallest cluster it runs well on: a pretraining wants the whole cluster
(it sizes its workers and data tasks to it); a finetune or linear-probe sweep wants one CPU
footprint of its smallest trial (workers + Ray Data) for every trial it would run at once; a
retrieval wants its workers' and data tasks' minimum; building manifests wants one CPU. A
stage is ready when every stage it needs is done. In the study's order, each ready stage whose
want fits in what the running stages leave starts now (a stage larger than the cluster starts
alone, when nothing else runs); those started together split what is free in proportion to
their wants, so a stage that runs alone still gets the whole cluster, as its command would.
`limit` > 0 caps how many run at once (1: one after another).
"""

from __future__ import annotations

from fame_ray import runtime
from fame_ray.downstream.finetune import sweep_plan
from fame_ray.downstream.search_space import normalise_space
from fame_ray.study.plan import Stage

RESOURCES = ("CPU", "GPU")


def want(stage: Stage, cluster: dict) -> dict:
    """The CPUs and GPUs `stage` asks for on a cluster of `cluster` ({"CPU": n, "GPU": m})."""
    total = {name: float(cluster.get(name, 0.0)) for name in RESOURCES}
    if stage.kind == "manifests":
        return {"CPU": min(1.0, total["CPU"]), "GPU": 0.0}
    if stage.kind == "pretrain":
        return dict(total)
    cfg = stage.config
    if stage.kind == "retrieval":
        need = runtime.job_minimum(cfg.train, cfg.data)
        return {"CPU": need["CPU"], "GPU": float(need.get("GPU", 0.0))}
    sweep = sweep_plan(cfg, normalise_space(cfg.search_space), total["CPU"], total["GPU"])
    at_once = sweep["max_concurrent"]
    return {
        "CPU": min(total["CPU"], at_once * sweep["smallest_trial_cpus"]),
        "GPU": min(total["GPU"], float(at_once * sweep["trial_gpus"])),
    }


def ready(stages: list[Stage], done) -> list[Stage]:
    """The stages (in their order) whose needs are all in `done` (keys of finished stages)."""
    return [stage for stage in stages if all(need in done for need in stage.needs)]


def admit(ready: list[Stage], running: dict[str, dict], cluster: dict, limit: int = 0) -> list[tuple[Stage, dict]]:
    """The ready stages to start now, each with its budget, given the budgets of the stages
    running (key -> {"CPU", "GPU"}); in `ready`'s order, as many as fit (module doc)."""
    free = {name: float(cluster.get(name, 0.0)) - sum(b.get(name, 0.0) for b in running.values()) for name in RESOURCES}
    left, chosen = dict(free), []
    for stage in ready:
        if limit and len(running) + len(chosen) >= limit:
            break
        wanted = want(stage, cluster)
        alone = not running and not chosen
        if not alone and any(wanted[name] > left[name] + 1e-9 for name in RESOURCES):
            continue
        chosen.append((stage, wanted))
        left = {name: max(left[name] - wanted[name], 0.0) for name in RESOURCES}
    if not chosen:
        return []
    asked = {name: sum(w[name] for _, w in chosen) for name in RESOURCES}
    out = []
    for stage, wanted in chosen:
        budget = {}
        for name in RESOURCES:
            share = wanted[name] / asked[name] if asked[name] else 1.0 / len(chosen)
            budget[name] = max(wanted[name], free[name] * share) if len(chosen) > 1 else max(free[name], 0.0)
        out.append((stage, budget))
    return out


def waves(stages: list[Stage], cluster: dict, limit: int = 0, done: tuple[str, ...] = ()) -> list[list[str]]:
    """The stages in groups that start together when every stage of a group ends before the next
    starts (the dry run's picture of the schedule; a real run starts a stage as soon as it fits)."""
    finished, left, out = set(done), [s for s in stages if s.key not in done], []
    while left:
        group = [stage.key for stage, _ in admit(ready(left, finished), {}, cluster, limit)]
        if not group:
            raise ValueError(f"stages wait on stages that never run: {[s.key for s in left]}")
        out.append(group)
        finished.update(group)
        left = [s for s in left if s.key not in finished]
    return out
