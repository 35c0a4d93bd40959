"""Contract checks for what a plugin registers, for its own tests (as scikit-learn's ``check_estimator``).

The project's registry tests run these same checks on every registered entry, core or plugin::

    from lepton_bench.testing import check_variant, check_weighting

    def test_my_weighting():
        check_weighting("my_weighting")               # tiny synthetic model, no data

    def test_my_variant_trains(tmp_path):
        check_variant("hard-my_weighting", data_dir="path/to/data")   # a short real run

Each raises ``AssertionError`` (or the project's own error) naming what failed. The checks without data
run in about a second; the ones with ``data_dir`` train a few steps of a tiny model on ``limit_train`` rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from .config import ModelConfig
from .errors import ConfigError
from .methods import WEIGHTINGS, GivenStep, Lookahead, resolve_args
from .models import TaskIO, build_model
from .models.trunk import TRUNKS
from .run.sampling import SAMPLERS
from .tasks import TASKS

TINY_MODEL = ModelConfig(dim=16, depth=2, heads=2, mlp_ratio=2.0, dropout=0.0, image_widths=(8, 16))
TINY_RUN = ["model.dim=32", "model.depth=1", "model.heads=2", "model.image_widths=[8,16]",
            "train.eval_every=2", "train.log_every=1", "train.timing_warmup=1"]


# ---------------------------------------------------------------- methods

def _two_task_model(kind_a: str = "class"):
    """Task a classifies each sequence (``kind_a="tag"``: tags each token, for a method that needs tasks of
    one output type), task b tags each token; one input group."""
    ios = [TaskIO("a", "text", kind_a, 2, vocab_size=30, max_len=8, group="g"),
           TaskIO("b", "text", "tag", 3, vocab_size=30, max_len=8, group="g")]
    return build_model("hard", ios, TINY_MODEL)


def check_weighting(name: str, steps: int = 3, seed: int = 0) -> None:
    """A registered method, on a tiny two-task model (one input group, hard sharing) for ``steps`` steps:

    * its ``Args`` is a dataclass whose defaults build it, and an unknown setting is refused by name;
    * every step fills finite, non-zero gradients of the shared and of each task's own parameters;
    * ``weights()`` gives a host float per task;
    * a non-finite task loss raises nothing inside the method and reaches the gradients or the combined
      loss (so the run's check names the task, whatever solver the method uses).
    """
    cls = WEIGHTINGS.get(name)
    assert dataclasses.is_dataclass(cls.Args), f"{name}: Args must be a dataclass (its declared settings)"
    try:
        resolve_args(name, {"no_such_setting_of_any_method": 1})
    except ConfigError as e:
        assert "no_such_setting_of_any_method" in str(e), f"{name}: the unknown-setting error names no key: {e}"
    else:
        raise AssertionError(f"{name}: an unknown weighting_args key was accepted")
    torch.manual_seed(seed)
    weighting = cls(["a", "b"], resolve_args(name, {}), seed=seed).to(torch.device("cpu"))
    kind_a = "tag" if weighting.needs.one_output_kind else "class"
    model = _two_task_model(kind_a)
    weighting.check(model)
    for _ in range(steps):   # stateful ones (DWA's windows, FAMO's logits) take a few steps
        for p in model.parameters():
            p.grad = None
        step = _synthetic_step(model, kind_a)
        weighting.backward(step)
        weighting.after_step(step)
    w = weighting.weights()
    assert set(w) == {"a", "b"} and all(isinstance(v, float) for v in w.values()), \
        f"{name}: weights() must give a float per task, not {w!r}"
    shared, own = model.parameter_split()
    for group, params in {"shared": shared, **own}.items():
        grads = [p.grad for p in params if p.grad is not None]
        assert grads, f"{name}: no gradient reached the {group} parameters"
        assert all(torch.isfinite(g).all() for g in grads), f"{name}: a non-finite gradient of the {group} parameters"
        dropped = group in w and w[group] == 0   # a method may weigh a task out (MoDo's simplex projection)
        assert dropped or any(g.abs().sum() > 0 for g in grads), f"{name}: zero gradient on the {group} parameters"

    for p in model.parameters():   # a non-finite loss passes through
        p.grad = None
    step = _synthetic_step(model, kind_a, poison="a")
    total = weighting.backward(step)
    grads = [p.grad for p in shared if p.grad is not None]
    assert (total is not None and not torch.isfinite(total).all()) or \
        any(not torch.isfinite(g).all() for g in grads), \
        f"{name}: a non-finite loss of task a reached neither the combined loss nor the shared gradients"


def _synthetic_step(model, kind_a: str = "class", poison: str | None = None) -> GivenStep:
    """One step of random batches of the two-task model: its losses (computed when the method first asks,
    inside its backward, as a run's step), shared features, half-batch losses, labels, a look-ahead (a
    second batch: the first half of the same one) and the losses after."""
    ids = torch.randint(2, 30, (4, 8))
    x = {"ids": ids, "lengths": torch.full((4,), 8), "host_lengths": torch.full((4,), 8)}
    ya = torch.tensor([0, 1, 0, 1]) if kind_a == "class" else torch.randint(0, 2, (4, 8))
    y = {"a": ya, "b": torch.randint(0, 3, (4, 8))}
    kept: dict[str, torch.Tensor] = {}

    def losses_of(rows, keep=None):
        xs = {k: v[rows] for k, v in x.items()}
        out = model.forward_group(["a", "b"], xs, keep)
        L = {t: torch.nn.functional.cross_entropy(out[t].flatten(0, -2), y[t][rows].flatten()) for t in ("a", "b")}
        if poison:
            L[poison] = L[poison] * float("nan")
        return L

    with torch.no_grad():
        after = losses_of(slice(None))
    return GivenStep(lambda: losses_of(slice(None), kept), model, model.extra_loss, lambda: next(iter(kept.values())),
                     (losses_of(slice(0, 2)), losses_of(slice(2, 4))),
                     Lookahead(losses_of, slice(None), slice(0, 2), 0.1, ["a", "b"]), after, y)


# ---------------------------------------------------------------- model parts and samplers

def check_trunk(name: str) -> None:
    """A registered trunk keeps the token shape, gives finite outputs, changes its input, and keeps
    what sits at padded positions out of every real token's output."""
    torch.manual_seed(0)
    cfg = TINY_MODEL
    trunk = TRUNKS.get(name)(cfg).eval()
    x = torch.randn(2, 7, cfg.dim)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False                                   # three padded positions in row 1
    noisy = x.clone()
    noisy[1, 4:] = 100 * torch.randn(3, cfg.dim)          # whatever sits at padded positions...
    with torch.no_grad():
        a, b = trunk(x, mask), trunk(noisy, mask)
    assert a.shape == x.shape and torch.isfinite(a).all(), f"trunk {name}: shape {tuple(a.shape)} or non-finite"
    torch.testing.assert_close(a[1, :4], b[1, :4], msg=lambda m: f"trunk {name}: padding reached a token: {m}")
    torch.testing.assert_close(a[0], b[0])
    assert not torch.allclose(a, x), f"trunk {name} returns its input"


def check_sampler(name: str, steps: int = 300) -> None:
    """A registered sampler draws known groups, the same ones again for the same seed, every group over
    ``steps`` steps, with probabilities that sum to 1."""
    sizes = {"small": 100, "mid": 400, "big": 1600}
    a, b = (SAMPLERS.get(name)(list(sizes), sizes, steps, seed=3) for _ in range(2))
    draws = [a.tasks_at(step) for step in range(1, steps + 1)]
    assert draws == [b.tasks_at(step) for step in range(1, steps + 1)], f"sampler {name}: not reproducible"
    assert all(d and set(d) <= set(sizes) for d in draws), f"sampler {name}: drew an unknown or no group"
    assert {t for d in draws for t in d} == set(sizes), f"sampler {name}: a group is starved over {steps} steps"
    for step in (1, steps // 2, steps):
        p = a.probabilities(step)
        assert p.shape == (3,) and abs(p.sum() - 1) < 1e-9 and (p >= 0).all(), f"sampler {name}: probabilities {p}"


def task_ios(tasks: Sequence[str] | None = None, group: str | None = None) -> list[TaskIO]:
    """What registered tasks feed a model, with a tiny vocabulary (``group``: all in one input group)."""
    ios = []
    for name in tasks or TASKS.list():
        spec = TASKS.get(name)
        text = spec.input == "text"
        ios.append(TaskIO(name, spec.input, spec.output, spec.num_labels, vocab_size=40 if text else 0,
                          max_len=16 if text else 0, num_shapes=6 if spec.pretokenized else 0,
                          group=group or ""))
    return ios


def batch_for(io: TaskIO, B: int = 3, L: int = 11) -> dict[str, torch.Tensor]:
    """A random batch of ``io``'s input; text: example 0 padded after 7 tokens."""
    if io.input == "image":
        return {"x": torch.randint(0, 256, (B, 3, 32, 32), dtype=torch.uint8)}
    ids = torch.randint(2, io.vocab_size, (B, L))
    ids[0, 7:] = 0
    lengths = (ids != 0).sum(1)
    return {"ids": ids, "shape": torch.randint(1, 6, (B, L)) * (ids != 0), "lengths": lengths,
            "host_lengths": lengths.clone()}


def check_architecture(name: str, ios: Sequence[TaskIO] | None = None, cfg: ModelConfig = TINY_MODEL) -> None:
    """A registered architecture, on ``ios`` (default: a text class and a text tag task of one input
    group, and an image task unless the architecture needs one input; ``single``: one text task):

    * every task's output has its shape and is finite;
    * the parameter counts add up (an STL model shares none);
    * each task's ``task_modules`` hold every parameter its output reaches, and only those;
    * an example padded inside a longer batch gets the outputs it gets alone.
    """
    from .models.architectures import needs_one_input

    if ios is None:
        group = [TaskIO("a", "text", "class", 2, vocab_size=40, max_len=16, group="g"),
                 TaskIO("b", "text", "tag", 3, vocab_size=40, max_len=16, group="g")]
        ios = group[:1] if name == "single" else group + ([] if needs_one_input(name) else
                                                            [TaskIO("img", "image", "class", 3)])
    torch.manual_seed(0)
    model = build_model(name, list(ios), cfg)
    tasks = [io.name for io in ios]
    for io in ios:
        out = model(io.name, batch_for(io))
        expected = (3, 11, io.num_outputs) if io.output == "tag" else (3, io.num_outputs)
        assert out.shape == expected, f"{name} {io.name}: output {tuple(out.shape)}, expected {expected}"
        assert torch.isfinite(out).all(), f"{name} {io.name}: non-finite output"
    c = model.parameter_counts()
    assert c["total"] == c["shared"] + sum(c[f"task.{t}"] for t in tasks), f"{name}: parameter counts {c}"
    assert len(tasks) > 1 or c["shared"] == 0, f"{name}: a one-task model shares {c['shared']} parameters"
    model.eval()
    for io in ios:   # task_modules, by gradients
        model.zero_grad(set_to_none=True)
        model(io.name, batch_for(io)).float().sum().backward()
        # reached: a non-zero gradient; touched: in the graph (a zero-initialised layer, e.g. an
        # adapter's up-projection, leaves the layers before it a zero gradient at first)
        reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        touched = {n for n, p in model.named_parameters() if p.grad is not None}
        listed = {id(p) for m in model.task_modules(io.name) for p in m.parameters()}
        named = {n for n, p in model.named_parameters() if id(p) in listed}
        assert reached <= named, f"{name} {io.name}: reached but not its task_modules: {sorted(reached - named)}"
        stray = {n for n in named - touched if "stems" not in n}   # an input column a batch leaves out reaches nothing
        assert not stray, f"{name} {io.name}: task_modules its output never reaches: {sorted(stray)}"
    n = 7   # padding: example 0 has 7 real tokens
    for io in ios:
        together = [o.name for o in ios if o.input_group == io.input_group]
        batch = batch_for(io)
        alone = {k: v[:1, :n] if v.dim() == 2 else v[:1] for k, v in batch.items()}
        with torch.no_grad():
            full, own = model.forward_group(together, batch), model.forward_group(together, alone)
        for t in together:
            tag = next(o for o in ios if o.name == t).output == "tag"
            f = full[t][:1, :n] if tag else full[t][:1]
            torch.testing.assert_close(f, own[t], rtol=1e-4, atol=1e-5,
                                       msg=lambda m, t=t: f"{name} {t}: padding changed the output: {m}")


# ---------------------------------------------------------------- variants and tasks, on real data

def check_variant(name: str, data_dir: str | Path, steps: int = 4, tasks: Sequence[str] | None = None,
                  overrides: Sequence[str] = ()) -> dict:
    """A registered variant trains ``steps`` steps of a tiny model on real data under ``data_dir`` and
    writes a complete record: a finite positive loss per task at every log point, metrics in [0, 1],
    every group of its parameters moved, parameter and FLOP accounting, its config's hash. Returns the
    record."""
    from .results import RECORD_KEYS, SCHEMA_VERSION
    from .run.train import run
    from .variants import make_config

    cfg = make_config(name, list(tasks) if tasks else None, overrides=[*TINY_RUN, f"train.steps={steps}", *overrides],
                      device="cpu", data_dir=str(data_dir), limit_train=160, limit_eval=24)
    seen: dict = {}

    def snapshot(event, info):
        if event == "start":
            model = info["model"]
            shared, own = model.parameter_split()
            seen["before"] = {id(p): p.detach().clone() for p in model.parameters()}
            seen["groups"] = {"shared": shared, **own}

    rec = run(cfg, snapshot)
    all_tasks = SAMPLERS.get(cfg.sampler).every_task_every_step
    assert set(RECORD_KEYS) <= set(rec) and rec["schema_version"] == SCHEMA_VERSION, f"{name}: incomplete record"
    assert rec["tasks"] == list(cfg.tasks)
    assert rec["selection"]["best_step"] in [v["step"] for v in rec["curves"]["val"]]
    total, every = rec["cost"]["steps"], cfg.train.log_every
    curve = rec["curves"]["train_loss"]
    assert [p["step"] for p in curve] == [s for s in range(1, total + 1) if s % every == 0 or s == total]
    for task in cfg.tasks:
        spec = TASKS.get(task)
        m = rec["metrics"][task]
        assert m["primary"] == spec.primary
        for split in ("val", "test"):
            assert set(spec.metrics) <= set(m[split]), f"{name} {task}: {split} metrics {sorted(m[split])}"
            assert all(0.0 <= v <= 1.0 for v in m[split].values()), f"{name} {task}: {split} metrics {m[split]}"
        cost = rec["cost"]["tasks"][task]
        logged = [p[task] for p in curve if task in p]
        assert all(v > 0 for v in logged), f"{name} {task}: cross-entropy losses must be positive: {logged}"
        if every == 1:   # a task's loss is logged at exactly the steps that trained it
            batch = min(cfg.tasks[task].batch_size, cost["train_examples"])
            assert len(logged) * batch == cost["examples_seen"]
        if all_tasks:
            assert cost["examples_seen"] == steps * cfg.tasks[task].batch_size   # the budget, exactly
        assert cost["flops_per_step"] > 0 and cost["infer_samples_per_s"] > 0
    assert rec["cost"]["steps"] == steps * (1 if all_tasks else len(cfg.tasks))
    for group, params in seen["groups"].items():   # the shared parameters and every task's own moved
        if params and (all_tasks or group == "shared"):
            moved = any(not torch.equal(seen["before"][id(p)], p.detach()) for p in params)
            assert moved, f"{group} parameters of {name} did not change"
    c = rec["cost"]
    assert c["params"]["total"] == c["params"]["shared"] + sum(c["params"][f"task.{t}"] for t in cfg.tasks)
    assert len(cfg.tasks) > 1 or c["params"]["shared"] == 0
    assert c["memory"]["peak_rss_mb"] > 0 and c["train_seconds"] > 0
    assert rec["config_hash"] == cfg.config_hash()
    return rec


def check_task(name: str, data_dir: str | Path | None = None) -> None:
    """A registered task: its spec is whole (primary metric first, labels named, a loss that is finite and
    positive on random logits); with ``data_dir``, its data loads (every split non-empty, labels in range)
    and its single-task baseline trains (``check_variant("stl-<task>")``)."""
    from .data import load_task

    spec = TASKS.get(name)
    assert spec.primary == spec.metrics[0] and spec.num_labels == len(spec.labels) >= 1
    logits = torch.randn(4, 5, spec.num_labels) if spec.output == "tag" else torch.randn(4, spec.num_labels)
    y = torch.randint(0, spec.num_labels, logits.shape[:-1])
    loss = spec.loss(logits, y, 0.0)
    assert torch.isfinite(loss) and loss > 0, f"task {name}: loss {loss} on random logits"
    if data_dir is None:
        return
    data = load_task(spec, spec.defaults, str(data_dir), limit_train=160, limit_eval=24)
    for split, part in data.splits.items():
        labels = part.tensors["y"]
        real = labels[labels >= 0]   # IGNORE: padding, unlabelled rows
        assert len(labels) > 0, f"task {name}: split {split} is empty"
        assert real.numel() and int(real.max()) < spec.num_labels, f"task {name}: {split} labels out of range"
    check_variant(f"stl-{name}", data_dir)
