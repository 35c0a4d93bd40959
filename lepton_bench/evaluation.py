"""Evaluation of one task on one split, and the autocast context every forward pass runs in."""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from .data import TaskData, eval_batches
from .measure import now
from .models import MultiTaskModel
from .tasks import IGNORE, TaskSpec


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast for forward passes and losses (backward runs outside it); fp32: a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate(model: MultiTaskModel, spec: TaskSpec, data: TaskData, split: str, batch_size: int,
             device: torch.device, precision: str = "fp32") -> tuple[dict[str, float], dict[str, float]]:
    """(metrics, timing) of one task on one split. Padding never counts."""
    model.eval()
    s = data.splits[split]
    preds, golds = [], []
    t0, tokens = now(device), 0
    for idx, batch in eval_batches(s, batch_size, device):
        with autocast(device, precision):
            logits = model(spec.name, batch)
        p = logits.argmax(-1).cpu()
        if "host_lengths" in batch:
            tokens += int(batch["host_lengths"].sum())
        if spec.output == "tag":
            # a row's labelled positions are its words in order (a word's first sub-token for
            # sub-word stems); words cut at max_len are predicted "O"
            words = batch["y"].cpu() != IGNORE
            for i, row in enumerate(idx.tolist()):
                gold = s.gold[row]
                pred = p[i][words[i]].tolist()[: len(gold)]
                preds.append(pred + [0] * (len(gold) - len(pred)))
                golds.append(gold)
        else:
            preds.append(p)
            golds.append(batch["y"].cpu())
    seconds = now(device) - t0
    if spec.output != "tag":
        preds, golds = torch.cat(preds).tolist(), torch.cat(golds).tolist()
    timing = {"seconds": seconds, "samples_per_s": len(s) / seconds}
    if tokens:
        timing["tokens_per_s"] = tokens / seconds
    model.train()
    return spec.compute_metrics(preds, golds), timing
