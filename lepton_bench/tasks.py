"""The three tasks: where their data lives, what the columns mean, their losses and metrics.

A task knows datasets and metrics, never models. Metrics are computed by
scikit-learn (accuracy, F1) and seqeval (entity F1, conlleval-compatible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import TaskConfig
from .registry import Registry

IGNORE = -100  # label of padded positions: the loss and the metrics skip them


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task. ``columns`` maps roles (input/label) to dataset columns."""

    name: str
    help: str
    hub_id: str
    input: str                      # "image" | "text"
    output: str                     # "class" | "tag"
    columns: dict[str, str]         # {"input": ..., "label": ...}
    labels: tuple[str, ...]
    metrics: tuple[str, ...]        # primary first; all "higher is better", in [0, 1]
    defaults: TaskConfig = field(default_factory=TaskConfig)
    hub_config: str | None = None
    hub_revision: str | None = None
    has_validation: bool = False    # False: hold a seeded slice of train out instead
    pretokenized: bool = False      # input column is a list of words

    @property
    def primary(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def loss(self, logits, target, label_smoothing: float = 0.0):
        """Mean cross-entropy over examples (classification) or real tokens (tagging)."""
        import torch.nn.functional as F   # here, not at the top: the task registry stays torch-free

        if self.output == "tag":
            logits, target = logits.flatten(0, 1), target.flatten()
        return F.cross_entropy(logits, target, ignore_index=IGNORE,
                               label_smoothing=label_smoothing)

    def compute_metrics(self, pred: Sequence, gold: Sequence) -> dict[str, float]:
        """``pred``/``gold``: label ids per example, or per sentence lists of tag ids."""
        if self.output == "tag":
            return tagging_metrics(pred, gold, self.labels)
        return classification_metrics(np.asarray(pred), np.asarray(gold), self.num_labels)


def classification_metrics(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(range(num_classes))
    out = {"accuracy": float(accuracy_score(gold, pred)),
           "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))}
    if num_classes == 2:
        out["f1_pos"] = float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0))
    return out


def tagging_metrics(pred: Sequence[Sequence[int]], gold: Sequence[Sequence[int]],
                    names: Sequence[str]) -> dict[str, float]:
    """Entity micro-F1 (seqeval's default mode = conlleval) and token accuracy."""
    from seqeval.metrics import f1_score

    p = [[names[i] for i in s] for s in pred]
    g = [[names[i] for i in s] for s in gold]
    tokens = sum(len(s) for s in g)
    correct = sum(a == b for ps, gs in zip(p, g, strict=True) for a, b in zip(ps, gs, strict=True))
    return {"entity_f1": float(f1_score(g, p, zero_division=0)),
            "token_accuracy": correct / tokens if tokens else 0.0}


TASKS: Registry[TaskSpec] = Registry("task")

CIFAR10 = TASKS.register("cifar10", TaskSpec(
    name="cifar10", help="CIFAR-10: 32x32 RGB images, 10 classes",
    hub_id="uoft-cs/cifar10", hub_config="plain_text", input="image", output="class",
    columns={"input": "img", "label": "label"},
    labels=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
            "ship", "truck"),
    metrics=("accuracy", "macro_f1"),
    defaults=TaskConfig(batch_size=128, eval_batch_size=500, holdout_frac=0.1, holdout_max=5000)))

IMDB = TASKS.register("imdb", TaskSpec(
    name="imdb", help="IMDB movie reviews: sentiment, 2 classes",
    hub_id="stanfordnlp/imdb", hub_config="plain_text", input="text", output="class",
    columns={"input": "text", "label": "label"}, labels=("neg", "pos"),
    metrics=("accuracy", "f1_pos", "macro_f1"),
    defaults=TaskConfig(batch_size=32, eval_batch_size=128, max_len=256, truncate="head_tail", vocab_size=30000,
                        min_freq=2, holdout_frac=0.1, holdout_max=2500)))

CONLL2003 = TASKS.register("conll2003", TaskSpec(
    name="conll2003", help="CoNLL-2003 English NER: 9 IOB2 tags per word",
    hub_id="eriktks/conll2003", hub_config="conll2003", hub_revision="refs/convert/parquet",
    input="text", output="tag", columns={"input": "tokens", "label": "ner_tags"},
    labels=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"),
    metrics=("entity_f1", "token_accuracy"), has_validation=True, pretokenized=True,
    defaults=TaskConfig(batch_size=64, eval_batch_size=256, max_len=128, vocab_size=30000,
                        min_freq=1)))
