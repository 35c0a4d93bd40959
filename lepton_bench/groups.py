"""Input groups: the tasks of a run that read one input (one dataset, one input column), trained on
shared batches through one encoder pass.

CoNLL-2003 NER, POS and chunking read the same sentences: a batch of their group carries every
label set of the group (``y:<task>``), the sampler draws groups, and the model's ``forward_group``
runs the group's stem (and a hard-shared trunk) once for all its tasks. A group is named after its
first registered task (``tasks.input_group``): ``conll2003`` for the CoNLL-2003 tasks. Its data
order depends on (seed, group name) only, so an STL run of ``conll2003_pos`` sees exactly the
sentences, in the same order, that NER alone and the NER + POS + chunk run see — and a task alone
in its group keeps the order it always had.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .config import RunConfig
from .data import Split, TaskData
from .errors import ConfigError
from .models.stems import stem_of
from .tasks import TaskSpec, input_group

LABEL = "y:"   # group batches carry each task's labels under "y:<task>"


def run_groups(cfg: RunConfig, specs: dict[str, TaskSpec]) -> dict[str, list[str]]:
    """group name -> the run's tasks of that group, in the run's task order; refuses a group whose
    tasks would not share their batches (another stem, another batch size)."""
    groups: dict[str, list[str]] = {}
    for name in specs:
        groups.setdefault(input_group(name), []).append(name)
    for g, tasks in groups.items():
        if len(tasks) < 2:
            continue
        for what, value in (("stem", lambda t: stem_of(t, specs[t].input, cfg.model)),
                            ("batch_size", lambda t: cfg.tasks[t].batch_size)):
            seen = {t: value(t) for t in tasks}
            if len(set(seen.values())) > 1:
                got = ", ".join(f"{t}: {v}" for t, v in seen.items())
                key = "model.stems.<task>" if what == "stem" else "tasks.<task>.batch_size"
                raise ConfigError(f"tasks of input group {g} share each batch and their encoder, so they need "
                                  f"one {what} ({got}); set {key} alike for all of them")
    return groups


@dataclass
class GroupData:
    """The splits of a group: the shared inputs once, each task's labels as ``y:<task>``, and each
    tagging task's full gold tags per split (``golds[task][split]``)."""

    name: str
    tasks: list[str]
    splits: dict[str, Split]
    golds: dict[str, dict[str, list[list[int]] | None]] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def merge_group(name: str, tasks: list[str], data: dict[str, TaskData]) -> GroupData:
    """One group's data from its tasks' own (cached) data, which must hold the same rows and
    inputs: the same dataset, hold-out and limits, and equal data settings."""
    first = data[tasks[0]]
    splits, golds = {}, {t: {} for t in tasks}
    for split, s in first.splits.items():
        shared = {k: v for k, v in s.tensors.items() if k != "y"}
        labels = {}
        for t in tasks:
            other = data[t].splits[split]
            if t != tasks[0] and (len(other) != len(s) or any(
                    k not in other.tensors or not torch.equal(other.tensors[k], v) for k, v in shared.items())):
                raise ConfigError(f"tasks {tasks[0]} and {t} of input group {name} read different {split} rows or "
                                  f"inputs: their data settings (tasks.<task>.max_len, vocab_size, min_freq, "
                                  f"holdout_*) must be equal")
            labels[LABEL + t] = other.tensors["y"]
            golds[t][split] = other.gold
        splits[split] = Split({**shared, **labels})
    return GroupData(name, list(tasks), splits, golds)


def task_views(batch: dict[str, torch.Tensor], tasks: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """A group batch as one batch per task: the same input tensors, that task's labels as ``y``."""
    inputs = {k: v for k, v in batch.items() if not k.startswith(LABEL)}
    return {t: {**inputs, "y": batch[LABEL + t]} for t in tasks}
