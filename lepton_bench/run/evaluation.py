"""Evaluation of one task, or of the tasks of one input group in one pass, on one split; and the
autocast context every forward pass runs in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch

from ..data import Split, TaskData, eval_batches
from ..models import MultiTaskModel
from ..tasks import IGNORE, TaskSpec
from .groups import LABEL, GroupData
from .measure import now


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast for forward passes and losses (backward runs outside it); fp32: a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate(model: MultiTaskModel, spec: TaskSpec, data: TaskData, split: str, batch_size: int,
             device: torch.device, precision: str = "fp32") -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, timing) of one task on one split. Padding never counts."""
    s = data.splits[split]
    metrics, timing = _evaluate(lambda b: {spec.name: model(spec.name, b)}, model, [spec], s,
                                {spec.name: s.gold}, {spec.name: "y"}, batch_size, device, precision)
    return metrics[spec.name], timing


@torch.no_grad()
def evaluate_group(model: MultiTaskModel, specs: Sequence[TaskSpec], group: GroupData, split: str,
                   batch_size: int, device: torch.device, precision: str = "fp32",
                   ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """({task: metrics}, timing) of the tasks of one input group, all from one pass over the split
    (one encoder pass per batch serves every task of the group)."""
    names = [sp.name for sp in specs]
    return _evaluate(lambda b: model.forward_group(names, b), model, specs, group.splits[split],
                     {t: group.golds[t][split] for t in names}, {t: LABEL + t for t in names}, batch_size,
                     device, precision)


def _evaluate(forward: Callable[[dict], dict[str, torch.Tensor]], model: torch.nn.Module,
              specs: Sequence[TaskSpec], s: Split, golds: dict[str, list | None], label: dict[str, str],
              batch_size: int, device: torch.device, precision: str):
    model.eval()
    preds: dict[str, list] = {sp.name: [] for sp in specs}
    gold_out: dict[str, list] = {sp.name: [] for sp in specs}
    t0, tokens = now(device), 0
    for idx, batch in eval_batches(s, batch_size, device):
        with autocast(device, precision):
            logits = forward(batch)
        if "host_lengths" in batch:
            tokens += int(batch["host_lengths"].sum())
        for spec in specs:
            n, y = spec.name, batch[label[spec.name]]
            p = logits[n].argmax(-1).cpu()
            if spec.output == "tag":
                # a row's labelled positions are its words in order (a word's first sub-token for
                # sub-word stems); words cut at max_len are predicted "O"
                words = y.cpu() != IGNORE
                for i, row in enumerate(idx.tolist()):
                    gold = golds[n][row]
                    pred = p[i][words[i]].tolist()[: len(gold)]
                    preds[n].append(pred + [0] * (len(gold) - len(pred)))
                    gold_out[n].append(gold)
            else:
                preds[n].append(p)
                gold_out[n].append(y.cpu())
    seconds = now(device) - t0
    metrics = {}
    for spec in specs:
        n = spec.name
        if spec.output != "tag":
            preds[n], gold_out[n] = torch.cat(preds[n]).tolist(), torch.cat(gold_out[n]).tolist()
        metrics[n] = spec.compute_metrics(preds[n], gold_out[n])
    timing = {"seconds": seconds, "samples_per_s": len(s) / seconds}
    if tokens:
        timing["tokens_per_s"] = tokens / seconds
    model.train()
    return metrics, timing
