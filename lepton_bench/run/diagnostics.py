"""Why multi-task learning helps or hurts a run: gradient conflict and inter-task affinity.

Every ``train.diagnose_every`` steps ``run`` calls ``diagnose`` on the step's own batches, before its
update, with the training clock paused. On the parameters every task shares it measures

* each task's gradient norm ||g_t||;
* each pair's cosine cos(g_i, g_j) (negative: the tasks pull the shared parameters apart: conflict);
* inter-task affinity (TAG, Fifty et al., NeurIPS 2021, "Efficiently Identifying Task Groupings for
  Multi-Task Learning"): Z(i -> j) = 1 - L_j(theta_s - eta g_i) / L_j(theta_s), the relative change of
  task j's loss on its batch after a look-ahead SGD step on task i's gradient alone, eta the step's
  learning rate, as the paper's equation (positive: i's step helps j). With AdamW's small learning rate
  this is a first-order probe, Z(i -> j) ~ eta g_i . g_j / L_j: its sign is that of the pair's gradient
  inner product, its size weighs it by the gradients' norms and j's loss. (A step of AdamW's size on g_i
  alone, g_i over the root of the second moment, raised every task's loss, its own too: without the
  momentum's averaging it moves every coordinate by about the learning rate.)

Nothing of the run changes: the measurement restores the parameters, the normalisation buffers and
the random-number state (every forward pass of it draws the dropout masks the step itself will draw,
so the losses it compares differ by the look-ahead only), and never touches ``.grad``. The values stay
on the device until ``run`` reads them at its next loss log (no host sync of their own). A step with
fewer than two tasks (one-task samplers), or a model that shares no parameters, is not measured.
Under torchrun: rank 0's shard of the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .setup import Setup, task_losses


@contextmanager
def same_randomness(device: torch.device) -> Iterator[Callable[[], None]]:
    """Run the block, then put the random-number state back as it was (CPU and this CUDA device);
    the block gets a ``rewind()`` that puts it back on the spot."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def rewind() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    try:
        yield rewind
    finally:
        rewind()


def sgd_step(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The paper's look-ahead step eta g on each parameter, eta its optimizer group's current learning rate."""
    lr = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    return [lr[id(p)] * g for p, g in zip(params, grads, strict=True)]


def diagnose(s: Setup, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, Any] | None:
    """The measurements of the tasks in ``batches`` at the current parameters of ``s.model`` (see
    ``measure``), leaving the parameters, buffers and random-number state as they were; None where
    nothing can be measured."""
    shared = [p for p in s.model.parameter_split()[0] if p.requires_grad]
    if len(batches) < 2 or not shared:
        return None
    buffers = [b.detach().clone() for b in s.model.buffers()]
    with same_randomness(s.device) as rewind:
        def losses_of() -> dict[str, torch.Tensor]:
            rewind()   # every pass draws the dropout masks the step itself will draw
            return task_losses(s, batches)

        out = measure(losses_of, shared, lambda grads: sgd_step(s.opt, shared, grads))
        with torch.no_grad():
            for b, kept in zip(s.model.buffers(), buffers, strict=True):
                b.copy_(kept)
    return out


def measure(losses_of: Callable[[], dict[str, torch.Tensor]], shared: list[torch.Tensor],
            step_of: Callable[[list[torch.Tensor]], list[torch.Tensor]]) -> dict[str, Any]:
    """Gradient norms, pairwise cosines and TAG affinities on the ``shared`` parameters, as device
    tensors {"tasks", "grad_norm": [T], "cosine": [T, T], "affinity": [T, T] (row i: Z(i -> j))}.
    ``losses_of()`` gives every task's loss at the current parameters (a fresh graph each call);
    ``step_of(g)`` the look-ahead step of a task whose gradient is ``g``. The parameters end as they began."""
    with torch.enable_grad():
        losses = losses_of()
        tasks = list(losses)
        grads = []
        for k, t in enumerate(tasks):
            g = torch.autograd.grad(losses[t], shared, retain_graph=k < len(tasks) - 1, allow_unused=True)
            grads.append([torch.zeros_like(p) if x is None else x.detach().float()
                          for p, x in zip(shared, g, strict=True)])
    device = shared[0].device
    gram = torch.zeros(len(tasks), len(tasks), device=device)
    for pieces in zip(*grads, strict=True):   # one shared tensor at a time: no T x P concatenation
        flat = torch.stack([x.flatten() for x in pieces])
        gram += flat @ flat.T
    norm = gram.diagonal().sqrt()
    cosine = gram / (norm[:, None] * norm[None, :]).clamp_min(1e-20)
    before = torch.stack([losses[t].detach().float() for t in tasks])
    affinity = torch.zeros(len(tasks), len(tasks), device=device)
    theta = [p.detach().clone() for p in shared]
    with torch.no_grad():
        for i in range(len(tasks)):
            for p, t0, d in zip(shared, theta, step_of(grads[i]), strict=True):
                p.copy_(t0 - d.to(p.dtype))
            after = losses_of()
            affinity[i] = 1 - torch.stack([after[t].float() for t in tasks]) / before
        for p, t0 in zip(shared, theta, strict=True):
            p.copy_(t0)
    return {"tasks": tasks, "grad_norm": norm, "cosine": cosine, "affinity": affinity}


def to_host(d: dict[str, Any], step: int) -> dict[str, Any]:
    """A curve point from ``diagnose``'s tensors (the host read ``run`` makes at a loss log):
    {"step", "grad_norm": {t: v}, "cosine": {i: {j: v}} (i != j), "affinity": {i: {j: Z(i -> j)}}}."""
    tasks = d["tasks"]
    norm, cosine, affinity = (d[k].tolist() for k in ("grad_norm", "cosine", "affinity"))
    return {"step": step,
            "grad_norm": dict(zip(tasks, norm, strict=True)),
            "cosine": {a: {b: cosine[i][j] for j, b in enumerate(tasks) if j != i} for i, a in enumerate(tasks)},
            "affinity": {a: {b: affinity[i][j] for j, b in enumerate(tasks)} for i, a in enumerate(tasks)}}

