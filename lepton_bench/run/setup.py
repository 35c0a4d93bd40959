"""Everything a run trains with, built once: data per input group, model, weighting, sampler,
optimizer, schedule, FLOP counts, fast paths — ``prepare`` returns it as a ``Setup`` (which the
benchmarks use too); ``next_batches`` draws a step's batches.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import RunConfig
from ..data import TaskData, budget_fields, labelled_count, load_task, train_rows
from ..errors import ConfigError, TrainingError
from ..methods import WEIGHTINGS, Weighting, check_needs, resolve_args
from ..models import MultiTaskModel, TaskIO, build_model
from ..models.stems import resolve_stem, stem_of
from ..tasks import TASKS, TaskSpec
from .distributed import (
    World,
    broadcast_parameters,
    check_batch_sizes,
    shard,
    world_from_env,
)
from .distributed import init as init_distributed
from .evaluation import autocast
from .groups import LABEL, GroupData, GroupStream, merge_group, run_groups, task_views
from .measure import (
    count_flops,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from .sampling import SAMPLERS, Sampler

Progress = Callable[[str, dict], None]   # (event, info): "data", "start", "step", "eval", "test"
# "step" (every train.log_every steps): step, losses {task}, lr, weights {task}, diagnostics [points read at this
# log]; "eval": step, score, val {task: {metric}}; "test": task, test {metric}


def task_reads(cfg: RunConfig, spec: TaskSpec) -> dict[str, object]:
    """What the task's stem reads beyond word ids, as ``load_task`` keywords (``Stem.reads``)."""
    stem, argument = resolve_stem(stem_of(spec.name, spec.input, cfg.model), spec.input, spec.name)
    return stem.reads(argument, cfg.model) if stem.reads else {}


def task_io(spec: TaskSpec, data: TaskData, max_len: int, group: str = "") -> TaskIO:
    return TaskIO(spec.name, spec.input, spec.output, spec.num_labels, vocab_size=data.vocab_size,
                  max_len=max_len, num_shapes=data.num_shapes, num_chars=data.num_chars, group=group)


def make_optimizer(model: nn.Module, cfg: RunConfig, extra: list[torch.Tensor] = ()) -> torch.optim.Optimizer:
    """AdamW; decay on weight matrices only (not biases, norms, embeddings, positions, nor the
    weighting's own parameters such as UW's log-variances)."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:   # a frozen encoder's (model.freeze_pretrained)
            continue
        if p.ndim >= 2 and id(p) not in embeddings and not name.endswith("pos"):
            decay.append(p)
        else:
            no_decay.append(p)
    t = cfg.train
    groups = [{"params": decay, "weight_decay": t.weight_decay},
              {"params": no_decay + list(extra), "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=t.betas, **({"fused": True} if cfg.fused_adamw else {}))


def lr_lambda(steps: int, warmup_frac: float) -> Callable[[int], float]:
    warm = max(1, round(warmup_frac * steps))

    def f(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))

    return f


class NonFiniteWatch:
    """The first step at which a task loss or the weighting's combined loss was not finite, and
    the losses of that step: kept on the device by ``torch.where`` (no host sync per step), read
    at ``run``'s log points. So the error names the first bad step even between log points, and a
    non-finite combined loss whose task losses were finite is named the weighting's, not a task's."""

    def __init__(self, tasks: list[str], device: torch.device):
        self.tasks = tasks
        self.steps = 0                                                   # steps watched
        self.step = torch.zeros((), dtype=torch.long, device=device)    # first bad step; 0: none yet
        self.values = torch.zeros(len(tasks) + 1, device=device)        # its task losses + combined loss
        self._zero = torch.zeros((), device=device)                     # a task that did not run

    def update(self, losses: dict[str, torch.Tensor], total: torch.Tensor | None) -> None:
        self.steps += 1
        v = torch.stack([losses[n].detach().float() if n in losses else self._zero for n in self.tasks]
                        + [self._zero if total is None else total.detach().float()])
        new = (self.step == 0) & ~torch.isfinite(v).all()
        self.step = torch.where(new, self.steps, self.step)
        self.values = torch.where(new, v, self.values)

    def error(self, cfg: RunConfig) -> TrainingError | None:
        """The error for the first bad step, or None (a host sync: call it at log points only)."""
        step = int(self.step)
        if not step:
            return None
        *task_values, total = self.values.tolist()
        for n, v in zip(self.tasks, task_values, strict=True):
            if not math.isfinite(v):   # a task's own loss first: the task is named
                return TrainingError(f"non-finite loss ({v}) for task {n} at step {step} of {cfg.variant}; "
                                     f"lower the learning rate (--set train.lr=...)")
        return TrainingError(f"non-finite combined loss ({total}) of weighting {cfg.weighting} at step {step} "
                             f"of {cfg.variant}; the task losses were finite, so the weighting made it "
                             f"(or lower the learning rate: --set train.lr=...)")


@dataclass
class Setup:
    """Everything a run trains with, built by ``prepare`` (also used by the benchmarks)."""

    cfg: RunConfig
    device: torch.device
    specs: dict[str, TaskSpec]
    data: dict[str, TaskData]
    streams: dict[str, GroupStream]     # one per input group, by group name
    eval_data: dict[str, GroupData]     # validation and test splits of each group, on the device
    sampler: Sampler
    weighting: Weighting
    model: MultiTaskModel
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    data_seconds: float
    flops: dict[str, int]       # forward + backward FLOPs of one batch of each group (all its tasks)
    runtime: dict[str, object]  # how it runs: precision, compiled, tf32, and why a request was not met
    world: World                # torchrun processes (a world of one without torchrun)
    params: list[torch.Tensor]  # everything the optimizer trains (gradients averaged over the world)
    groups: dict[str, list[str]] = field(default_factory=dict)   # input group -> its tasks (the sampler's units)
    meta_streams: dict[str, GroupStream] = field(default_factory=dict)   # a second, independent order of each
                                        # group's training data, for a look-ahead weighting (Auto-Lambda)
    watch: NonFiniteWatch = field(init=False, repr=False)   # non-finite losses, seen by train_step

    def __post_init__(self) -> None:
        self.watch = NonFiniteWatch(self.names, self.device)
        self.group_of = {t: g for g, ts in self.groups.items() for t in ts}

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def main(self) -> list[str]:
        """The tasks checkpoint selection reads: all but the auxiliary ones."""
        return [n for n in self.names if n not in self.cfg.auxiliary]


def prepare(cfg: RunConfig, progress: Progress | None = None) -> Setup:
    """Check the config, load the data, build model, weighting, sampler, optimizer, schedule."""
    say = progress or (lambda event, info: None)
    world = world_from_env()
    device = init_distributed(world, resolve_device(cfg.device))
    names = list(cfg.tasks)
    if not names:
        raise ConfigError("no tasks to train")
    specs = {t: TASKS.get(t) for t in names}
    unknown = [t for t in cfg.auxiliary if t not in specs]
    if unknown or len(set(cfg.auxiliary)) >= len(names):
        raise ConfigError(f"auxiliary tasks {', '.join(unknown)} are not trained by this run" if unknown else
                          f"every task of {cfg.variant} is auxiliary: leave at least one main task")
    groups = run_groups(cfg, specs)
    sampler_cls = SAMPLERS.get(cfg.sampler)
    weighting = WEIGHTINGS.get(cfg.weighting)(names, resolve_args(cfg.weighting, cfg.weighting_args),
                                              seed=cfg.seed).to(device)
    weighting.world = world
    weighting.main = [n for n in names if n not in cfg.auxiliary]
    facts = dict(weighting=cfg.weighting, every_task_every_step=sampler_cls.every_task_every_step,
                 sampler=cfg.sampler, world=world)
    check_needs(needs=weighting.needs, **facts)   # before any data loads; the feature tensor once the model is built
    check_batch_sizes(world, {n: cfg.tasks[n].batch_size for n in names})
    t = cfg.train
    if t.steps < 1:
        raise ConfigError(f"train.steps must be at least 1, got {t.steps}")
    # one-group-per-step samplers take G x the steps, so as many batches are trained as with 'all'
    total_steps = t.steps if sampler_cls.every_task_every_step else t.steps * len(groups)

    # a label budget no split could meet is refused before any data loads (and one over its split's size,
    # where the split's size is known from a local file's metadata)
    for n in names:
        budget_fields(n, cfg.tasks[n])
        rows = train_rows(specs[n], cfg.tasks[n], cfg.data_dir, cfg.limit_train)
        if rows is not None:
            labelled_count(n, cfg.tasks[n], rows)

    # data: cached tensors, moved to the device once
    t0 = time.perf_counter()
    data = {}
    for n in names:
        say("data", {"task": n})
        data[n] = load_task(specs[n], cfg.tasks[n], cfg.data_dir, cfg.holdout_seed, cfg.limit_train,
                            cfg.limit_eval, **task_reads(cfg, specs[n]))
    merged = {g: merge_group(g, ts, data) for g, ts in groups.items()}
    data_seconds = time.perf_counter() - t0
    train = {g: gd.splits["train"].to(device) for g, gd in merged.items()}

    def make_streams(suffix: str = "") -> dict[str, GroupStream]:
        return {g: GroupStream(gd, train[g], cfg.tasks[gd.tasks[0]].batch_size, cfg.seed, device,
                               augment=specs[gd.tasks[0]].input == "image", suffix=suffix)
                for g, gd in merged.items()}

    streams = make_streams()
    meta_streams = make_streams("#meta") if weighting.needs.second_stream else {}
    sampler = sampler_cls(list(groups), {g: gd.sizes()["train"] for g, gd in merged.items()}, total_steps,
                          cfg.seed, cfg.sampler_temperature)
    eval_data = {g: GroupData(g, gd.tasks, {k: v.to(device) for k, v in gd.splits.items() if k != "train"},
                              gd.golds) for g, gd in merged.items()}

    # model, optimizer, schedule
    seed_everything(cfg.seed)
    group_of = {t: g for g, ts in groups.items() for t in ts}
    ios = [task_io(specs[n], data[n], cfg.tasks[n].max_len, group_of[n]) for n in names]
    model = build_model(cfg.architecture, ios, cfg.model).to(device)
    weighting.check(model)
    bodies = len({model.body_key(n) for n in names})
    check_needs(needs=weighting.needs, **facts, one_tensor=len(groups) == 1 and bodies == 1 and not world.active,
                why_not_one=f"{len(groups)} input group{'s' if len(groups) > 1 else ''}, architecture "
                            f"{cfg.architecture}{', torchrun' if world.active else ''}")
    broadcast_parameters(world, [*model.parameters(), *model.buffers(), *weighting.parameters()])
    opt = make_optimizer(model, cfg, weighting.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, t.warmup_frac))

    # FLOPs of one batch per group, all its tasks (counted eagerly: a compiled graph hides its ops)
    flops = {}
    for g, gd in merged.items():
        probe = next(GroupStream(gd, train[g], cfg.tasks[gd.tasks[0]].batch_size, 0, device, raw_seed=True))
        flops[g] = count_flops(lambda ts=gd.tasks, b=probe: sum(
            specs[n].loss(z, b[LABEL + n]) for n, z in model.forward_group(ts, b).items()).backward())
    opt.zero_grad(set_to_none=True)
    seed_everything(cfg.seed)
    return Setup(cfg, device, specs, data, streams, eval_data, sampler, weighting, model, opt, sched,
                 total_steps, data_seconds, flops, fast_paths(cfg, model, device), world,
                 [p for g in opt.param_groups for p in g["params"]], groups, meta_streams)


def next_batches(s: Setup, step: int) -> dict[str, dict[str, torch.Tensor]]:
    """The batches of ``step``, by task: one batch of each input group the sampler picks."""
    return draw_batches(s, s.sampler.tasks_at(step))


def draw_batches(s: Setup, groups: Iterable[str], streams: dict[str, GroupStream] | None = None
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """The next batch of each of ``groups`` (this process's shard of it), seen by each task of the
    group with its own labels as ``y``; from ``streams`` (default: the training streams;
    ``s.meta_streams`` for a look-ahead's second batch)."""
    out = {}
    for g in groups:
        out.update(task_views(shard(next((streams or s.streams)[g]), s.world), s.groups[g]))
    return out


def task_logits(s: Setup, batches: dict[str, dict[str, torch.Tensor]],
                features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Every task's logits on its batch: one forward pass per input group (its tasks share inputs);
    ``features`` receives the features the heads read (one tensor per group and trunk)."""
    by_group: dict[str, list[str]] = {}
    for n in batches:
        by_group.setdefault(s.group_of[n], []).append(n)
    logits = {}
    for tasks in by_group.values():
        kept: dict[str, torch.Tensor] = {}
        logits.update(s.model.forward_group(tasks, batches[tasks[0]], kept))
        if features is not None:
            features += kept.values()
    return {n: logits[n] for n in batches}


def task_losses(s: Setup, batches: dict[str, dict[str, torch.Tensor]],
                features: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Every task's training loss on its batch (label smoothing included), under the run's autocast."""
    with autocast(s.device, s.runtime["precision"]):
        logits = task_logits(s, batches, features)
        return {n: s.specs[n].loss(logits[n], b["y"], s.cfg.tasks[n].label_smoothing) for n, b in batches.items()}


def fast_paths(cfg: RunConfig, model: nn.Module, device: torch.device) -> dict[str, object]:
    """Turn on what the device supports (bf16 autocast, TF32, torch.compile); say what was not."""
    precision, note = resolve_precision(cfg.precision, device)
    notes = [note] if note else []
    tf32 = device.type == "cuda" and precision == "fp32"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    compiled = False
    if cfg.compile:
        if device.type == "cuda":
            model.compile()   # in place: state_dict keys (checkpoints) stay as they are
            compiled = True
        else:
            notes.append(f"torch.compile is used on CUDA only; ran eager on {device.type}")
    for n in notes:
        warnings.warn(n, stacklevel=3)
    return {"precision": precision, "compiled": compiled, "tf32": tf32, "notes": notes}
