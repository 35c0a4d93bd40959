"""The data layer's types: a tensorized split, a task's data, a raw split of rows, and its constants."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import torch

PAD, UNK = 0, 1           # word ids of <pad> and <unk>
NUM_SHAPES = 6            # word shapes: pad, lower, Title, UPPER, has-digit, other
MAX_WORD_CHARS = 16      # characters kept per word for character features (longer words: their first 16)
SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    """One tensorized split. ``tensors`` share their first dimension (examples)."""

    tensors: dict[str, torch.Tensor]
    gold: list[list[int]] | None = None   # tagging: full gold tags per sentence (no truncation)
    labelled: torch.Tensor | None = None  # train under a label budget: the rows (sorted) whose labels the
                                          # task trains on; the others' labels are IGNORE. None: every row

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def to(self, device: torch.device) -> Split:
        return Split({k: v.to(device) for k, v in self.tensors.items()}, self.gold, self.labelled)

    def labelled_count(self) -> int:
        return len(self) if self.labelled is None else len(self.labelled)


@dataclass
class TaskData:
    name: str
    splits: dict[str, Split]
    source: str                    # where it came from, for records and errors
    vocab_size: int = 0
    num_shapes: int = 0
    truncated: dict[str, int] = field(default_factory=dict)  # split -> examples cut at max_len
    num_chars: int = 0             # character ids incl. <pad>/<unk> (0: no character tensor)
    label_stats: dict = field(default_factory=dict)   # computed labels: the training rows' statistics they used

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


@dataclass
class RawSplit:
    table: pa.Table
    origin: str          # file path or "hub-id[split]" for error messages
    rows: np.ndarray     # row numbers in ``origin`` (kept through hold-out and limits)
