"""Tasks: the dataset each reads, what its columns mean, its loss and its metrics.

A task knows datasets and metrics, never models. Here are two registries and a declaration:

* ``METRICS``: metric functions by name, each for one output kind (``class`` or ``tag``);
  computed by scikit-learn (accuracy, F1) and seqeval (entity F1, conlleval-compatible).
* ``TASKS``: ``TaskSpec`` by name. A spec is checked when it is declared: its metrics exist
  (close matches otherwise), score its output kind and apply to its labels.
* a task's ``Dataset``: the Hub id/config/revision and the ``--data-dir`` folder, named apart
  from the task, so several tasks (NER, POS, chunking of CoNLL-2003) can read one dataset.

Whoever registers a task with ``register_task`` (or ``TASKS.register``) gets its STL variant
``stl-<task>`` too: ``lepton_bench.variants`` listens to ``TASKS.on_register`` (whichever of
the two is imported first). The core tasks flagged ``default_mtl`` form, in registration order,
the task set of every multi-task variant that names none (``default_tasks()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import TaskConfig
from .errors import ConfigError
from .registry import Registry

IGNORE = -100  # label of padded positions: the loss and the metrics skip them
OUTPUTS = ("class", "tag")


# ---------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Metric:
    """A metric: ``fn(pred, gold, labels) -> float``, in [0, 1], higher is better.

    ``output`` "class": ``pred``/``gold`` are 1-D integer arrays of label ids, one per example.
    ``output`` "tag": lists (one per sentence) of lists of tag ids, of equal lengths.
    ``labels`` are the task's label names (ids index them). ``check(labels)`` says why the metric
    does not apply to a task with these labels (``None``: it does), at the task's declaration."""

    name: str
    output: str
    fn: Callable[[Sequence, Sequence, tuple[str, ...]], float]
    help: str = ""
    check: Callable[[tuple[str, ...]], str | None] | None = None


METRICS: Registry[Metric] = Registry("metric")


def register_metric(name: str, output: str, check: Callable[[tuple[str, ...]], str | None] | None = None):
    """Decorator: register ``fn(pred, gold, labels) -> float`` as metric ``name`` for ``output``
    ("class" or "tag"); its docstring's first paragraph is its help."""
    if output not in OUTPUTS:
        raise ConfigError(f"metric {name}: output must be one of {', '.join(OUTPUTS)}, not {output!r}")

    def add(fn):
        doc = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        METRICS.register(name, Metric(name, output, fn, doc, check), help=f"({output}) {doc}")
        return fn

    return add


def _binary(labels: tuple[str, ...]) -> str | None:
    return None if len(labels) == 2 else f"it needs 2 classes (label 1 positive), not {len(labels)}"


def _iob(labels: tuple[str, ...]) -> str | None:
    bad = [x for x in labels if x != "O" and x[:2] not in ("B-", "I-", "E-", "S-")]
    return f"its labels are not IOB tags (O, B-X, I-X): {', '.join(bad[:5])}" if bad else None


@register_metric("accuracy", "class")
def accuracy(pred, gold, labels) -> float:
    """Share of examples whose predicted class is the gold one."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(gold, pred))


@register_metric("macro_f1", "class")
def macro_f1(pred, gold, labels) -> float:
    """Mean of the per-class F1 over every class of the task (a class absent from gold and
    prediction counts as F1 0)."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(range(len(labels))), average="macro", zero_division=0))


@register_metric("f1_pos", "class", check=_binary)
def f1_pos(pred, gold, labels) -> float:
    """F1 of the positive class (label id 1) of a 2-class task."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, pos_label=1, average="binary", zero_division=0))


@register_metric("entity_f1", "tag", check=_iob)
def entity_f1(pred, gold, labels) -> float:
    """Entity micro-F1 over IOB tags (seqeval's default mode: conlleval-compatible; an I- after O
    starts an entity)."""
    from seqeval.metrics import f1_score

    g = [[labels[i] for i in s] for s in gold]
    p = [[labels[i] for i in s] for s in pred]
    return float(f1_score(g, p, zero_division=0))


@register_metric("token_accuracy", "tag")
def token_accuracy(pred, gold, labels) -> float:
    """Share of tokens whose predicted tag is the gold one (O included)."""
    tokens = sum(len(s) for s in gold)
    correct = sum(a == b for ps, gs in zip(pred, gold, strict=True) for a, b in zip(ps, gs, strict=True))
    return correct / tokens if tokens else 0.0


# ---------------------------------------------------------------- datasets and tasks

@dataclass(frozen=True)
class Dataset:
    """Where a task's examples come from: a Hub dataset (``hub_id``, ``hub_config``,
    ``hub_revision``: what ``datasets.load_dataset`` takes), or under ``--data-dir DIR`` the folder
    ``DIR/<folder>/`` in the Hub's parquet layout. ``folder`` defaults to the last part of the Hub
    id (``eriktks/conll2003`` -> ``conll2003``). Tasks that share a ``Dataset`` share its folder
    and read their own columns of it; each task still has its own data cache entry."""

    hub_id: str
    hub_config: str | None = None
    hub_revision: str | None = None
    folder: str = ""

    def __post_init__(self):
        if not self.folder:
            object.__setattr__(self, "folder", self.hub_id.rstrip("/").rsplit("/", 1)[-1])


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task, checked when declared (``ConfigError`` on a bad field).

    ``dataset`` is where its examples come from; ``columns`` maps roles (``input``, ``label``) to
    columns of that dataset; ``labels`` names the label ids 0..n-1 in the dataset's order;
    ``metrics`` names ``METRICS`` entries for its ``output`` kind, primary first (the primary one
    selects checkpoints). ``default_mtl``: one of the default task set of multi-task variants."""

    name: str
    help: str
    dataset: Dataset
    input: str                      # "image" | "text" (a stem reads it: models.stems)
    output: str                     # "class" | "tag"
    columns: dict[str, str]         # {"input": ..., "label": ...}
    labels: tuple[str, ...]
    metrics: tuple[str, ...]        # primary first; all "higher is better", in [0, 1]
    defaults: TaskConfig = field(default_factory=TaskConfig)
    has_validation: bool = False    # False: hold a seeded slice of train out instead
    pretokenized: bool = False      # input column is a list of words
    default_mtl: bool = False       # in default_tasks(): the core's three tasks

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        where = f"task {self.name}"
        if self.output not in OUTPUTS:
            raise ConfigError(f"{where}: output must be one of {', '.join(OUTPUTS)}, not {self.output!r}")
        if not isinstance(self.dataset, Dataset):
            raise ConfigError(f"{where}: dataset must be a lepton_bench.tasks.Dataset, not {self.dataset!r}")
        missing = [r for r in ("input", "label") if r not in self.columns]
        if missing:
            raise ConfigError(f"{where}: columns name no {' or '.join(missing)} column")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"{where}: labels must be distinct names, at least one")
        if not self.metrics or len(set(self.metrics)) != len(self.metrics):
            raise ConfigError(f"{where}: metrics must be distinct metric names, at least one (primary first)")
        for name in self.metrics:
            try:
                m = METRICS.get(name)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            if m.output != self.output:
                fits = ", ".join(n for n, x in METRICS.items() if x.output == self.output)
                raise ConfigError(f"{where}: metric {name} scores {m.output} outputs, {self.name} has "
                                  f"{self.output} outputs (metrics for those: {fits})")
            why = m.check(self.labels) if m.check else None
            if why:
                raise ConfigError(f"{where}: metric {name} does not apply: {why}")

    @property
    def primary(self) -> str:
        return self.metrics[0]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def loss(self, logits, target, label_smoothing: float = 0.0):
        """Mean cross-entropy over examples (classification) or real tokens (tagging)."""
        import torch.nn.functional as F  # here, not at the top: the task registry stays torch-free

        if self.output == "tag":
            logits, target = logits.flatten(0, 1), target.flatten()
        return F.cross_entropy(logits, target, ignore_index=IGNORE,
                               label_smoothing=label_smoothing)

    def compute_metrics(self, pred: Sequence, gold: Sequence) -> dict[str, float]:
        """The task's metrics, in its order: ``pred``/``gold`` label ids per example, or per
        sentence lists of tag ids (``Metric``)."""
        if self.output == "class":
            pred, gold = np.asarray(pred), np.asarray(gold)
        return {m: float(METRICS.get(m).fn(pred, gold, self.labels)) for m in self.metrics}


class TaskRegistry(Registry[TaskSpec]):
    """The ``Registry`` of tasks, which also keeps their registration order (``in_order``) and
    tells listeners of each new task (``on_register``: how every task gets its STL variant)."""

    def __init__(self):
        super().__init__("task")
        self._listeners: list[Callable[[TaskSpec], None]] = []

    def register(self, name: str, obj: TaskSpec | None = None, *, help: str | None = None):
        def add(spec: TaskSpec) -> TaskSpec:
            if not isinstance(spec, TaskSpec) or spec.name != name:
                raise ConfigError(f"task {name!r}: register a TaskSpec under its own name, "
                                  f"not {getattr(spec, 'name', spec)!r}")
            new = name not in self
            Registry.register(self, name, spec, help=help)
            if new:
                for listen in self._listeners:
                    listen(spec)
            return spec

        return add(obj) if obj is not None else add

    def on_register(self, listen: Callable[[TaskSpec], None]) -> None:
        """Call ``listen(spec)`` for each task registered so far, in order, and for each later one."""
        self._listeners.append(listen)
        for spec in self.in_order():
            listen(spec)

    def in_order(self) -> list[TaskSpec]:
        """The tasks in registration order (``list`` and iteration are sorted by name)."""
        return list(self._items.values())


TASKS = TaskRegistry()


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register a task under its name; ``stl-<name>`` appears in the variant registry with it."""
    return TASKS.register(spec.name, spec)


def default_tasks() -> tuple[str, ...]:
    """The task set of multi-task variants that name none: the ``default_mtl`` tasks, in
    registration order (cifar10, imdb, conll2003)."""
    return tuple(s.name for s in TASKS.in_order() if s.default_mtl)


CIFAR10 = register_task(TaskSpec(
    name="cifar10", help="CIFAR-10: 32x32 RGB images, 10 classes",
    dataset=Dataset("uoft-cs/cifar10", "plain_text"), input="image", output="class",
    columns={"input": "img", "label": "label"},
    labels=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
            "ship", "truck"),
    metrics=("accuracy", "macro_f1"), default_mtl=True,
    defaults=TaskConfig(batch_size=128, eval_batch_size=500, holdout_frac=0.1, holdout_max=5000)))

IMDB = register_task(TaskSpec(
    name="imdb", help="IMDB movie reviews: sentiment, 2 classes",
    dataset=Dataset("stanfordnlp/imdb", "plain_text"), input="text", output="class",
    columns={"input": "text", "label": "label"}, labels=("neg", "pos"),
    metrics=("accuracy", "macro_f1", "f1_pos"), default_mtl=True,   # the records' order of them
    defaults=TaskConfig(batch_size=32, eval_batch_size=128, max_len=256, truncate="head_tail", vocab_size=30000,
                        min_freq=2, holdout_frac=0.1, holdout_max=2500)))

CONLL2003_DATA = Dataset("eriktks/conll2003", "conll2003", "refs/convert/parquet")
"""CoNLL-2003 (English): tokens with NER, POS and chunk tags; a Dataset for every task of it."""

CONLL2003 = register_task(TaskSpec(
    name="conll2003", help="CoNLL-2003 English NER: 9 IOB2 tags per word",
    dataset=CONLL2003_DATA, input="text", output="tag", columns={"input": "tokens", "label": "ner_tags"},
    labels=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"),
    metrics=("entity_f1", "token_accuracy"), has_validation=True, pretokenized=True, default_mtl=True,
    defaults=TaskConfig(batch_size=64, eval_batch_size=256, max_len=128, vocab_size=30000,
                        min_freq=1)))
