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

import zlib
from dataclasses import dataclass, field

import torch

from ..config import LABEL_BUDGET, RunConfig, task_data_fields
from ..data import Split, TaskData, TrainStream
from ..errors import ConfigError
from ..models.stems import stem_of
from ..tasks import IGNORE, TaskSpec, input_group

LABEL = "y:"   # group batches carry each task's labels under "y:<task>"
OWN = "own:"   # under a label budget, each task's rows of a group batch: a host mask under "own:<task>"


def stream_seed(seed: int, group: str) -> int:
    """A task's data order depends on (seed, its input group) only: STL and MTL see the same batches
    (a task alone in its group: the group is named after it, so its order is what it always was)."""
    return seed * 1_000_003 + zlib.crc32(group.encode())


def run_groups(cfg: RunConfig, specs: dict[str, TaskSpec]) -> dict[str, list[str]]:
    """group name -> the run's tasks of that group, in the run's task order; refuses a group whose
    tasks would not share their batches (another stem, another batch size)."""
    groups: dict[str, list[str]] = {}
    for name in specs:
        groups.setdefault(input_group(name), []).append(name)
    shared_data = [f for f in task_data_fields() if f not in LABEL_BUDGET]   # a budget may differ by design
    for g, tasks in groups.items():
        if len(tasks) < 2:
            continue
        checks = [("stem", "model.stems.<task>", lambda t: stem_of(t, specs[t].input, cfg.model)),
                  ("batch_size", "tasks.<task>.batch_size", lambda t: cfg.tasks[t].batch_size),
                  *((f, f"tasks.<task>.{f}", lambda t, f=f: getattr(cfg.tasks[t], f)) for f in shared_data)]
        for what, key, value in checks:
            seen = {t: value(t) for t in tasks}
            if len(set(seen.values())) > 1:
                got = ", ".join(f"{t}: {v}" for t, v in seen.items())
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
    labelled: dict[str, torch.Tensor | None] = field(default_factory=dict)   # task -> its train rows under a
                                        # label budget (None: every row)

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
    labelled = {t: data[t].splits["train"].labelled for t in tasks}
    return GroupData(name, list(tasks), splits, golds, labelled)


def task_views(batch: dict[str, torch.Tensor], tasks: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """A group batch as one batch per task: the same input tensors, that task's labels as ``y`` (and,
    under a label budget, the host mask of its own rows as ``own``)."""
    inputs = {k: v for k, v in batch.items() if not k.startswith((LABEL, OWN))}
    return {t: {**inputs, "y": batch[LABEL + t], **({"own": batch[OWN + t]} if OWN + t in batch else {})}
            for t in tasks}


class GroupStream:
    """Endless, seeded train batches of one input group, on the device.

    The tasks that train on the same rows (every row, or one label budget) share one ``TrainStream``.
    Without a budget that is the whole group: each step is that stream's batch, as it always was. Under
    one (say NER on 5% of the sentences, POS and chunking on all), each set of tasks draws a full batch
    of its own labelled rows every step; the step's batch is their union, each row once, so the encoder
    runs once over the rows the step uses; and each task's labels are IGNORE outside its own rows, so its
    loss covers exactly them. A set's order depends on (seed, group, its row count) only: the STL run of
    a task at a budget draws the very rows the group run gives that task."""

    def __init__(self, data: GroupData, train: Split, batch_size: int, seed: int, device: torch.device,
                 augment: bool = False, suffix: str = "", raw_seed: bool = False):
        """``suffix`` names another order of the same data (a look-ahead's second batches); ``raw_seed``
        seeds every stream with ``seed`` itself (the FLOP count's probe batch)."""
        sets: dict[object, list[str]] = {}
        rows: dict[object, torch.Tensor | None] = {}
        for t in data.tasks:
            r = data.labelled.get(t)
            key = None if r is None else (len(r), r.numpy().tobytes())
            sets.setdefault(key, []).append(t)
            rows[key] = r
        name = data.name + suffix
        def seed_of(key) -> int:
            return seed if raw_seed else stream_seed(seed, name if key is None else f"{name}#labelled{key[0]}")

        self.sets = [(TrainStream(train, batch_size, seed_of(key), device, augment, rows=rows[key]), tasks)
                     for key, tasks in sets.items()]
        self.device = device
        self.drawn: dict[str, torch.Tensor] = {}   # task -> its rows of the last batch (host), for checks

    @property
    def examples(self) -> int:
        """Examples drawn so far by the stream of the group's first task."""
        return self.sets[0][0].examples

    def examples_of(self, task: str) -> int:
        """Labelled examples of ``task`` drawn so far."""
        return next(s.examples for s, tasks in self.sets if task in tasks)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        drawn = [s.next_rows() for s, _ in self.sets]
        self.drawn = {t: d for d, (_, tasks) in zip(drawn, self.sets, strict=True) for t in tasks}
        if len(self.sets) == 1:
            return self.sets[0][0].batch_of(drawn[0])
        union = torch.unique(torch.cat(drawn))   # sorted, each row once
        batch = self.sets[0][0].batch_of(union)
        for d, (_, tasks) in zip(drawn, self.sets, strict=True):
            own = torch.zeros(len(union), dtype=torch.bool)
            own[torch.searchsorted(union, d)] = True
            own_dev = own.to(self.device, non_blocking=True)
            for t in tasks:
                y = batch[LABEL + t]
                batch[LABEL + t] = y.masked_fill(~own_dev.view(-1, *[1] * (y.dim() - 1)), IGNORE)
                batch[OWN + t] = own
        return batch
