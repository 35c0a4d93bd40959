"""Tasks: the dataset each reads, what its columns mean, its loss and its metrics.

A task knows datasets and metrics, never models. Here are two registries and a declaration:

* ``METRICS``: metric functions by name, each for one output kind (``class`` or ``tag``);
  computed by scikit-learn (accuracy, F1) and seqeval (entity F1, conlleval-compatible).
* ``TASKS``: ``TaskSpec`` by name. A spec is checked when it is declared: its metrics exist
  (close matches otherwise), score its output kind and apply to its labels.
* a task's ``Dataset``: the Hub id/config/revision and the ``--data-dir`` folder, named apart
  from the task, so several tasks (NER, POS, chunking of CoNLL-2003) can read one dataset.

Input groups: tasks that read the same ``Dataset`` and the same input column (CoNLL-2003's NER,
POS, chunking and untyped-span tasks; CIFAR-10's 10 classes and its vehicle/animal task) see the
same examples, so a model can run its encoder once for all of them. ``input_group(name)`` names a
task's group after its first registered task (``conll2003_pos`` -> ``conll2003``, ``imdb`` ->
``imdb``); ``group_tasks(name)`` lists the registered tasks of that group in registration order.
The core tasks of one group share one ``TaskConfig`` of defaults (``CONLL2003_DEFAULTS``,
``CIFAR10_DEFAULTS``): a shared batch needs equal data settings, and one declaration keeps them so.

Derived-label tasks ("label transfer"): a ``TaskSpec`` with ``derived_from="<task>"`` and a
``label_map`` (source label id -> own label id, one entry per source label) reads its source's
dataset and label column and maps each label (per token for tagging). Its dataset, input, output,
columns, ``pretokenized`` and ``has_validation`` must be the source's, so its splits hold the same
rows in the same order (``data.load_task`` checks the column against the source's labels, then maps).

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


def _span_f1(pred, gold, labels) -> float:
    """Micro-F1 of the spans of IOB tags, seqeval's default mode (conlleval-compatible: an I- after
    O, or after another type, starts a span; a span counts only with its exact bounds and type)."""
    from seqeval.metrics import f1_score

    g = [[labels[i] for i in s] for s in gold]
    p = [[labels[i] for i in s] for s in pred]
    return float(f1_score(g, p, zero_division=0))


@register_metric("entity_f1", "tag", check=_iob)
def entity_f1(pred, gold, labels) -> float:
    """Entity micro-F1 over IOB tags (seqeval's default mode: conlleval-compatible; an I- after O
    starts an entity)."""
    return _span_f1(pred, gold, labels)


@register_metric("chunk_f1", "tag", check=_iob)
def chunk_f1(pred, gold, labels) -> float:
    """Chunk micro-F1 over IOB chunk tags (NP, VP, PP, ...), CoNLL-2000 style: ``entity_f1``'s
    computation (seqeval, conlleval-compatible) named for chunks."""
    return _span_f1(pred, gold, labels)


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
    selects checkpoints). ``default_mtl``: one of the default task set of multi-task variants.

    ``derived_from``/``label_map``: a derived-label task (module docstring): the name of a task
    registered before it, and one own label id per source label id (``label_map[i]`` is the label
    of an example, or token, whose source label is ``i``). Checked here: the source exists and is
    not derived itself, the map has one entry per source label, its entries are own label ids and
    each own label is some source label's image, and dataset, input, output, columns,
    ``pretokenized`` and ``has_validation`` are the source's.

    ``derived_from``/``compute_label``: computed labels (the field comments below), e.g. "the review is
    longer than the training median" for IMDB: a task of the source's input group with no data copy."""

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
    derived_from: str | None = None  # a derived-label task: the registered task whose labels it maps
    label_map: tuple[int, ...] = ()  # source label id -> own label id, one entry per source label
    label_note: str = ""            # where the labels come from when not hand-annotated (the report says it)
    # or computed labels: a function of each example (and of statistics of the training split), instead of a
    # label_map; classification only. ``label_stats(train_table) -> dict`` runs once on the training rows (after
    # the hold-out and limits), ``compute_label(table, stats) -> label ids`` on every split; both run when the
    # data is tensorized, so the labels (and the stats, in the record) are cached with it. The functions'
    # qualified names key the cache: rename one (or bump ``label_version``) when what it computes changes.
    compute_label: Callable | None = None
    label_stats: Callable | None = None
    label_version: int = 1

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "label_map", tuple(self.label_map))
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
        if self.derived_from is not None or self.label_map or self.computed:
            self._check_derived(where)

    def _check_derived(self, where: str) -> None:
        if self.derived_from is None:
            raise ConfigError(f"{where}: a label_map (or compute_label) needs derived_from, the task whose labels "
                              f"it maps (whose examples it reads)")
        if not isinstance(self.derived_from, str):
            raise ConfigError(f"{where}: derived_from must name a task, not {self.derived_from!r}")
        if self.derived_from not in TASKS:
            raise ConfigError(f"{where}: derived_from: {TASKS.unknown_message(self.derived_from)}; "
                              f"register the source task before the task derived from it")
        src = TASKS.get(self.derived_from)
        if src.derived_from is not None:
            raise ConfigError(f"{where}: derived_from {src.name}, itself derived from {src.derived_from}: "
                              f"derive from {src.derived_from} with the composed label_map")
        same = {"dataset": (self.dataset, src.dataset), "input": (self.input, src.input),
                "output": (self.output, src.output),
                "columns['input']": (self.columns["input"], src.columns["input"]),
                "columns['label']": (self.columns["label"], src.columns["label"]),
                "pretokenized": (self.pretokenized, src.pretokenized),
                "has_validation": (self.has_validation, src.has_validation)}
        for what, (own, theirs) in same.items():
            if own != theirs:
                raise ConfigError(f"{where}: {what} is {own!r}, {src.name}'s is {theirs!r}: a task derived from "
                                  f"{src.name} reads its examples and label column, so they must agree")
        if self.computed or self.label_stats is not None:
            self._check_computed(where)
            return
        n = src.num_labels
        if len(self.label_map) != n:
            raise ConfigError(f"{where}: label_map has {len(self.label_map)} entries, {src.name} has {n} "
                              f"labels: give one own label id per source label ({', '.join(src.labels[:5])}"
                              f"{', ...' if n > 5 else ''})")
        for i, x in enumerate(self.label_map):
            if isinstance(x, bool) or not isinstance(x, int | np.integer) or not 0 <= x < self.num_labels:
                raise ConfigError(f"{where}: label_map[{i}] (for {src.name}'s {src.labels[i]!r}) is {x!r}, "
                                  f"not a label id 0..{self.num_labels - 1} of {self.name}")
        object.__setattr__(self, "label_map", tuple(int(x) for x in self.label_map))
        unused = [lab for j, lab in enumerate(self.labels) if j not in self.label_map]
        if unused:
            raise ConfigError(f"{where}: no {src.name} label maps to {', '.join(unused)}: such a label "
                              f"could never be gold")

    def _check_computed(self, where: str) -> None:
        if self.label_map:
            raise ConfigError(f"{where}: give a label_map or a compute_label, not both")
        if not callable(self.compute_label):
            raise ConfigError(f"{where}: label_stats needs compute_label, the function that labels each example")
        if self.label_stats is not None and not callable(self.label_stats):
            raise ConfigError(f"{where}: label_stats must be a function of the training table, not "
                              f"{self.label_stats!r}")
        if self.output != "class":
            raise ConfigError(f"{where}: computed labels are for classification tasks (one label per example); "
                              f"a tagging task maps its source's tags with a label_map")

    @property
    def computed(self) -> bool:
        """Whether the labels are computed from the examples (``compute_label``)."""
        return self.compute_label is not None

    @property
    def derived(self) -> bool:
        """Whether the labels are mapped from another task's (``derived_from``)."""
        return self.derived_from is not None

    @property
    def source(self) -> TaskSpec:
        """The task whose label column this one reads and whose label ids that column holds: the
        ``derived_from`` task, else this one."""
        return TASKS.get(self.derived_from) if self.derived_from is not None else self

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


def _same_input(a: TaskSpec, b: TaskSpec) -> bool:
    return a.dataset == b.dataset and a.columns["input"] == b.columns["input"]


def input_group(name: str) -> str:
    """The input group of task ``name``: the first registered task with the same ``Dataset`` and
    the same input column (``conll2003_pos`` -> ``conll2003``; a task alone in its group: itself)."""
    return group_tasks(name)[0]


def group_tasks(name: str) -> tuple[str, ...]:
    """The registered tasks of the input group of task ``name`` (any of them, e.g. the group's own
    name), in registration order, the group's first."""
    spec = TASKS.get(name)
    return tuple(s.name for s in TASKS.in_order() if _same_input(s, spec))


def default_tasks() -> tuple[str, ...]:
    """The task set of multi-task variants that name none: the ``default_mtl`` tasks, in
    registration order (cifar10, imdb, conll2003)."""
    return tuple(s.name for s in TASKS.in_order() if s.default_mtl)


CIFAR10_DEFAULTS = TaskConfig(batch_size=128, eval_batch_size=500, holdout_frac=0.1, holdout_max=5000)
"""Defaults of every core task of CIFAR-10 (one input group: equal data settings, the same hold-out)."""

CIFAR10 = register_task(TaskSpec(
    name="cifar10", help="CIFAR-10: 32x32 RGB images, 10 classes",
    dataset=Dataset("uoft-cs/cifar10", "plain_text"), input="image", output="class",
    columns={"input": "img", "label": "label"},
    labels=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
            "ship", "truck"),
    metrics=("accuracy", "macro_f1"), default_mtl=True, defaults=CIFAR10_DEFAULTS))

IMDB = register_task(TaskSpec(
    name="imdb", help="IMDB movie reviews: sentiment, 2 classes",
    dataset=Dataset("stanfordnlp/imdb", "plain_text"), input="text", output="class",
    columns={"input": "text", "label": "label"}, labels=("neg", "pos"),
    metrics=("accuracy", "macro_f1", "f1_pos"), default_mtl=True,   # the records' order of them
    defaults=TaskConfig(batch_size=32, eval_batch_size=128, max_len=256, truncate="head_tail", vocab_size=30000,
                        min_freq=2, holdout_frac=0.1, holdout_max=2500)))

CONLL2003_DATA = Dataset("eriktks/conll2003", "conll2003", "refs/convert/parquet")
"""CoNLL-2003 (English): tokens with NER, POS and chunk tags; a Dataset for every task of it."""

CONLL2003_DEFAULTS = TaskConfig(batch_size=64, eval_batch_size=256, max_len=128, vocab_size=30000, min_freq=1)
"""Defaults of every core task of CoNLL-2003 (one input group: they share every batch, so their data
settings are equal)."""

# Tag names in the dataset's order, as its parquet files' embedded HF features list them
# (``pos_tags``/``chunk_tags``: ``List(ClassLabel(names=[...]))``): label id i is the i-th name.
POS_TAGS = ('"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ",
            "JJR", "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$",
            "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT",
            "WP", "WP$", "WRB")
"""The 47 Penn Treebank part-of-speech tags of CoNLL-2003 (silver: a tagger's), in dataset order."""

CHUNK_TAGS = ("O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ",
              "B-LST", "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR",
              "B-UCP", "I-UCP", "B-VP", "I-VP")
"""The 23 IOB2 syntactic chunk tags of CoNLL-2003 (silver: a chunker's), in dataset order."""

SILVER_NOTE = ("silver labels: CoNLL-2003's POS and chunk columns are the output of the MBT tagger "
               "(Tjong Kim Sang & De Meulder 2003), not hand annotation, so a score measures agreement with "
               "that tagger and is not comparable with WSJ POS or CoNLL-2000 chunking results")
"""How CoNLL-2003's POS and chunk labels were made (docs/tagging-literature.md)."""

CONLL2003 = register_task(TaskSpec(
    name="conll2003", help="CoNLL-2003 English NER: 9 IOB2 tags per word",
    dataset=CONLL2003_DATA, input="text", output="tag", columns={"input": "tokens", "label": "ner_tags"},
    labels=("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"),
    metrics=("entity_f1", "token_accuracy"), has_validation=True, pretokenized=True, default_mtl=True,
    defaults=CONLL2003_DEFAULTS))

CONLL2003_POS = register_task(TaskSpec(
    name="conll2003_pos", help="CoNLL-2003 part-of-speech tagging: 47 Penn Treebank tags per word",
    dataset=CONLL2003_DATA, input="text", output="tag", columns={"input": "tokens", "label": "pos_tags"},
    labels=POS_TAGS, metrics=("token_accuracy",), has_validation=True, pretokenized=True,
    defaults=CONLL2003_DEFAULTS, label_note=SILVER_NOTE))

CONLL2003_CHUNK = register_task(TaskSpec(
    name="conll2003_chunk", help="CoNLL-2003 chunking: 23 IOB2 phrase tags per word (NP, VP, PP, ...)",
    dataset=CONLL2003_DATA, input="text", output="tag", columns={"input": "tokens", "label": "chunk_tags"},
    labels=CHUNK_TAGS, metrics=("chunk_f1", "token_accuracy"), has_validation=True, pretokenized=True,
    defaults=CONLL2003_DEFAULTS, label_note=SILVER_NOTE))

# Derived-label tasks: registered after their sources.

CIFAR10_COARSE = register_task(TaskSpec(
    name="cifar10_coarse", help="CIFAR-10 vehicle vs animal, derived from the 10 classes",
    dataset=CIFAR10.dataset, input="image", output="class", columns=dict(CIFAR10.columns),
    labels=("animal", "vehicle"),    # vehicle is label 1: airplane, automobile, ship, truck
    label_map=tuple(int(c in ("airplane", "automobile", "ship", "truck")) for c in CIFAR10.labels),
    derived_from="cifar10", metrics=("accuracy", "macro_f1"), defaults=CIFAR10_DEFAULTS))

CONLL2003_SPANS = register_task(TaskSpec(
    name="conll2003_spans", help="CoNLL-2003 untyped entity spans: O, B-ENT, I-ENT, derived from the NER tags",
    dataset=CONLL2003_DATA, input="text", output="tag", columns=dict(CONLL2003.columns),
    labels=("O", "B-ENT", "I-ENT"),  # O -> O, B-X -> B-ENT, I-X -> I-ENT
    label_map=tuple({"O": 0, "B-": 1, "I-": 2}[t[:2]] for t in CONLL2003.labels),
    derived_from="conll2003", metrics=("entity_f1", "token_accuracy"), has_validation=True, pretokenized=True,
    defaults=CONLL2003_DEFAULTS))
