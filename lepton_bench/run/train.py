"""One run, top to bottom: data -> model -> steps -> validation -> test -> record.

Read it like nanoGPT's train.py. The only host syncs inside the loop are the loss
reads every ``log_every`` steps (which also catch a non-finite loss) and evaluation.
On CUDA: bf16 autocast (``precision``), TF32 matmuls, optional ``torch.compile``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import RunConfig
from ..errors import TrainingError
from ..methods import Lookahead, optimizer_decay
from ..models.stems import weight_sources
from ..results import build_record, now_iso
from .diagnostics import diagnose, to_host
from .distributed import average, average_gradients, finish
from .evaluation import evaluate_group
from .groups import stream_seed
from .measure import (
    TrainingClock,
    environment,
    max_memory,
    peak_memory,
    peak_tflops,
    reset_peak_memory,
    rss_mb,
)
from .setup import (
    Progress,
    Setup,
    draw_batches,
    lr_lambda,
    make_optimizer,
    next_batches,
    prepare,
    task_losses,
    task_reads,
)

__all__ = ["Progress", "Setup", "TrainStep", "lr_lambda", "make_optimizer", "next_batches", "prepare", "run",
           "stream_seed", "task_losses", "task_reads", "train_step"]


class TrainStep:
    """The ``Step`` a method is handed (methods/base.py): this step's batches, whose losses, shared
    features, half-batch losses, look-ahead and after-update losses are computed when first asked for."""

    def __init__(self, s: Setup, batches: dict[str, dict[str, torch.Tensor]]):
        self.s, self.batches, self.model = s, batches, s.model
        self._losses: dict[str, torch.Tensor] | None = None
        self._features: list[torch.Tensor] = []
        self._extra: tuple[torch.Tensor | None] | None = None

    def losses(self) -> dict[str, torch.Tensor]:
        if self._losses is None:
            self._losses = task_losses(self.s, self.batches, self._features)
        return self._losses

    def extra(self) -> torch.Tensor | None:
        if self._extra is None:
            self.losses()   # a regulariser may read what the forward pass left (gates)
            self._extra = (self.model.extra_loss(),)
        return self._extra[0]

    def features(self) -> torch.Tensor:
        self.losses()
        return self._features[0]   # one tensor: checked before training (Needs.one_feature_tensor)

    def feature_tensors(self) -> list[torch.Tensor]:
        self.losses()
        return list(self._features)

    def half_losses(self):
        halves = [{n: {k: v[i * len(b["y"]) // 2:(i + 1) * len(b["y"]) // 2] for k, v in b.items()}
                   for n, b in self.batches.items()} for i in (0, 1)]
        first, second = (task_losses(self.s, h) for h in halves)
        if self._losses is None:   # the step's loss: the halves' mean (no third forward pass)
            self._losses = {n: (first[n] + second[n]) / 2 for n in self.batches}
        return first, second

    def lookahead(self) -> Lookahead:
        s = self.s
        meta = draw_batches(s, dict.fromkeys(s.group_of[n] for n in self.batches), s.meta_streams)
        return Lookahead(lambda b: task_losses(s, b), self.batches, meta, s.sched.get_last_lr()[0], s.main,
                         optimizer_decay(s.opt))

    def targets(self) -> dict[str, torch.Tensor]:
        return {n: b["y"] for n, b in self.batches.items()}

    def losses_after(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            # the same loss as before the update, label smoothing included: else FAMO sees a change that is not there
            return task_losses(self.s, self.batches)


def train_step(s: Setup, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One optimizer step on one batch per task; returns the (graph-free) task losses. The method asks
    the step for what it needs (``TrainStep``)."""
    step = TrainStep(s, batches)
    s.opt.zero_grad(set_to_none=True)
    total = s.weighting.backward(step)
    losses = step.losses()
    s.watch.update(losses, total)
    average_gradients(s.world, s.params)
    if s.cfg.train.clip_norm > 0:
        nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.train.clip_norm)
    s.opt.step()
    s.sched.step()
    s.weighting.after_step(step)
    return {n: v.detach() for n, v in losses.items()}


def run(cfg: RunConfig, progress: Progress | None = None) -> dict | None:
    """Train and evaluate one configuration; return its results record (under torchrun: on rank
    0; the other ranks train their shards and return None)."""
    say = progress or (lambda event, info: None)
    started = now_iso()
    rss_at_start = rss_mb()   # the process's resident base (a warm worker's is larger): the peak's floor
    s = prepare(cfg, say)
    device, names, specs, data, streams = s.device, s.names, s.specs, s.data, s.streams
    model, sched, weighting = s.model, s.sched, s.weighting
    eval_data, total_steps, t = s.eval_data, s.total_steps, cfg.train
    flops, precision, world = s.flops, s.runtime["precision"], s.world
    say("start", {"model": model, "steps": total_steps})

    # ---- train
    reset_peak_memory(device)
    loss_sum = {n: torch.zeros((), device=device) for n in names}
    loss_count = dict.fromkeys(names, 0)
    seen = dict.fromkeys(names, 0)          # examples and real tokens trained, counted on the host
    token_count = dict.fromkeys(names, 0)   # from host-side lengths: no device sync
    train_curve, val_curve, diagnostics = [], [], []
    pending = []   # diagnostics still on the device: read at the next loss log
    best = {"score": -math.inf, "step": 0, "state": None, "metrics": {}}
    timed_flops = 0   # model FLOPs of the steps that count for throughput (one-task samplers: that task's)
    clock = TrainingClock(device, timed_from_start=t.timing_warmup == 0)
    memory: dict[str, float] = {}   # peaks of the training outside diagnostics (CUDA; CPU's RSS cannot reset)
    model.train()
    try:
        for step in range(1, total_steps + 1):
            batches = next_batches(s, step)
            if world.main and t.diagnose_every and step % t.diagnose_every == 0:
                with clock.pause("diagnose"):
                    memory = max_memory(memory, peak_memory(device))
                    measured = diagnose(s, batches)
                    if measured is not None:
                        pending.append((step, measured))
                    reset_peak_memory(device)
            losses = train_step(s, batches)
            if step > t.timing_warmup:   # flops are of a global batch; examples: this shard x world
                timed_flops += sum(flops[g] for g in dict.fromkeys(s.group_of[n] for n in batches))
                for n, batch in batches.items():
                    own = batch.get("own")   # under a label budget: the task's rows of the group's batch
                    seen[n] += (len(batch["y"]) if own is None else int(own.sum())) * world.size
                    if "host_lengths" in batch:
                        lengths = batch["host_lengths"] if own is None else batch["host_lengths"][own]
                        token_count[n] += int(lengths.sum()) * world.size
            for n, v in losses.items():
                loss_sum[n] += v
                loss_count[n] += 1

            if step == t.timing_warmup:  # throughput counts from here on
                clock.start_timing()
            if step % t.log_every == 0 or step == total_steps:
                # a non-finite loss since the last log point, in any process (host syncs: here only)
                if float(average(world, {"bad": s.watch.step.float()})["bad"]):
                    raise s.watch.error(cfg) or TrainingError(
                        f"non-finite loss in another torchrun process by step {step} of {cfg.variant}")
                point = {"step": step, "lr": sched.get_last_lr()[0], "weights": weighting.weights()}
                mean_loss = average(world, {n: loss_sum[n] for n in names if loss_count[n]})
                for n in names:
                    if loss_count[n]:
                        point[n] = float(mean_loss[n]) / loss_count[n]   # host sync, every log_every steps
                        loss_sum[n].zero_()
                        loss_count[n] = 0
                train_curve.append(point)
                points = [to_host(d, at) for at, d in pending]   # the log's host read covers these too
                diagnostics += points
                pending.clear()
                logged = {n: point[n] for n in names if n in point}
                s.sampler.observe(step, logged)   # the host floats just read: no extra sync
                say("step", {"step": step, "losses": logged, "lr": point["lr"], "weights": point["weights"],
                             "diagnostics": points})
            if world.main and (step % t.eval_every == 0 or step == total_steps):
                with clock.pause("eval"):
                    val = {}
                    for gd in eval_data.values():
                        val.update(evaluate_group(model, [specs[n] for n in gd.tasks], gd, "validation",
                                                  cfg.tasks[gd.tasks[0]].eval_batch_size, device, precision)[0])
                    val = {n: val[n] for n in names}
                    # one checkpoint serves every task: select on the mean primary metric of the main tasks
                    score = sum(val[n][specs[n].primary] for n in s.main) / len(s.main)
                    val_curve.append({"step": step, **val})
                    if score > best["score"]:
                        best = {"score": score, "step": step, "metrics": val,
                                "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    say("eval", {"step": step, "score": score, "val": val})
    except torch.OutOfMemoryError as e:
        raise TrainingError(f"out of memory on {device} in {cfg.variant} "
                            f"({str(e).splitlines()[0]}); lower tasks.<task>.batch_size") from None
    except MemoryError:
        raise TrainingError(f"out of host memory in {cfg.variant}; lower tasks.<task>.batch_size "
                            f"or --limit-train") from None
    memory = max_memory(memory, peak_memory(device))
    if not world.main:
        finish(world)
        return None

    # ---- test once, with the best validation checkpoint
    model.load_state_dict(best["state"])
    test, inference = {}, {}
    for gd in eval_data.values():
        metrics, timing = evaluate_group(model, [specs[n] for n in gd.tasks], gd, "test",
                                         cfg.tasks[gd.tasks[0]].eval_batch_size, device, precision)
        for n in gd.tasks:   # one pass served every task of the group: its time is split between them
            test[n] = metrics[n]
            inference[n] = {**timing, "seconds": timing["seconds"] / len(gd.tasks)}
            say("test", {"task": n, "test": test[n]})
    test = {n: test[n] for n in names}

    timed_steps = max(total_steps - t.timing_warmup, 0)
    timed_seconds = clock.timed
    steps_per_s = timed_steps / timed_seconds if timed_seconds > 0 else None
    flops_per_s = timed_flops / timed_seconds if timed_seconds > 0 and timed_flops else None
    env = environment(device)
    peak = peak_tflops(env["device_name"], precision) if device.type == "cuda" else None
    peak = peak * world.size if peak else None   # the whole world's peak: flops count global batches
    per_task = {}
    for n in names:
        per_task[n] = {
            "samples_per_s": seen[n] / timed_seconds if timed_seconds > 0 else None,
            "tokens_per_s": token_count[n] / timed_seconds if timed_seconds > 0 and token_count[n] else None,
            "train_examples": data[n].splits["train"].labelled_count(),   # the labelled ones, under a budget
            "examples_seen": streams[s.group_of[n]].examples_of(n),
            "epochs": streams[s.group_of[n]].examples_of(n) / max(1, data[n].splits["train"].labelled_count()),
            "group": s.group_of[n],                  # its input group: the flops are the group's, all its tasks
            "flops_per_step": flops[s.group_of[n]],
            "flops_per_sample": flops[s.group_of[n]] / cfg.tasks[n].batch_size,
            "infer_samples_per_s": inference[n]["samples_per_s"],
            "infer_tokens_per_s": inference[n].get("tokens_per_s"),
            "infer_seconds": inference[n]["seconds"],
        }
    record = build_record(
        cfg, status="ok", started_at=started, env={**env, **s.runtime, "world_size": world.size,
                                                    **({"weights": w} if (w := weight_sources(cfg.model)) else {})},
        metrics={n: {"test": test[n], "val": best["metrics"][n], "primary": specs[n].primary} for n in names},
        selection={"rule": "best mean validation primary metric over tasks" if not cfg.auxiliary else
                   f"best mean validation primary metric over the main tasks ({', '.join(s.main)})",
                   "best_step": best["step"], "best_val_score": best["score"]},
        curves={"train_loss": train_curve, "val": val_curve, **({"diagnostics": diagnostics} if diagnostics else {})},
        cost={"train_seconds": clock.train, "eval_seconds": clock.paused.get("eval", 0.0),
              "diagnose_seconds": clock.paused.get("diagnose", 0.0),
              "data_seconds": s.data_seconds, "steps": total_steps, "steps_per_s": steps_per_s,
              "flops_per_step": timed_flops / timed_steps if timed_steps else sum(flops.values()),
              "model_tflops_per_s": flops_per_s / 1e12 if flops_per_s else None,
              "peak_tflops": peak, "mfu": flops_per_s / (peak * 1e12) if flops_per_s and peak else None,
              "params": model.parameter_counts(), "tasks": per_task,
              "memory": {**memory, **({"rss_at_start_mb": rss_at_start} if rss_at_start is not None else {})}},
        data={n: {"source": data[n].source, "sizes": data[n].sizes(), "vocab_size": data[n].vocab_size,
                  "truncated": data[n].truncated,
                  **({"labelled_train": data[n].splits["train"].labelled_count()}
                     if data[n].splits["train"].labelled is not None else {}),
                  **({"label_stats": data[n].label_stats} if data[n].label_stats else {})} for n in names})
    finish(world)
    return record
