"""Variants: named, registered combinations of architecture + weighting + sampler + overrides.

A variant is the unit users pick (``--variant``) and grids multiply by seeds.

Every registered task has its single-task baseline ``stl-<task>``: this module listens to the task
registry (``TASKS.on_register``), so a task a plugin registers later gets one too. A multi-task
variant that names no tasks trains ``tasks.default_tasks()`` (the core tasks flagged
``default_mtl``, in registration order: cifar10, imdb, conll2003), read when its config is built.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import DEFAULT_STEMS, RunConfig, apply_overrides
from .errors import ConfigError
from .registry import Registry
from .tasks import TASKS, TaskSpec, default_tasks

CLAIM_KINDS = ("claim", "literature")
"""``claim``: a figure the variant's design is said to reach (the articles'); ``literature``: a published
figure of the same setting, for scale. The report gives each kind its own section."""


@dataclass(frozen=True)
class Claim:
    """A published figure a variant is measured against; the report sets it beside what was measured.

    ``metric`` is the metric of this project that the figure *is* (which need not be the one its
    source names: see ``note``); ``beside`` lists other metrics of the task to show next to it."""

    task: str
    metric: str
    value: float                # in the metric's own [0, 1] units
    setting: str                # how the source got it (model, budget), in a few words
    source: str = ""
    note: str = ""              # one line: why ``metric`` is the figure's metric, when it is not obvious
    beside: tuple[str, ...] = ()
    url: str = ""               # where a reader checks the figure
    kind: str = "claim"         # one of CLAIM_KINDS
    checked_in: str = ""        # the grid that checks the figure in its own setting (at convergence, or with
                                # the encoder it was claimed with): other grids' reports point there

    def __post_init__(self):
        if self.kind not in CLAIM_KINDS:
            raise ConfigError(f"claim on {self.task}: kind must be one of {', '.join(CLAIM_KINDS)}, "
                              f"not {self.kind!r}")


@dataclass(frozen=True)
class Finding:
    """A published result in words (no single figure to compare), e.g. what earlier studies saw when
    an auxiliary task was added; the report lists it beside what its grid measured."""

    source: str                 # authors, year, title, venue
    text: str                   # the finding, quoted or closely paraphrased
    url: str = ""


@dataclass(frozen=True)
class Variant:
    name: str
    architecture: str
    weighting: str = "ew"
    sampler: str = "all"
    tasks: tuple[str, ...] = ()      # (): the default task set, tasks.default_tasks()
    overrides: dict[str, Any] = field(default_factory=dict)   # dotted config keys
    help: str = ""
    claims: tuple[Claim, ...] = ()   # published figures this variant is measured against (report)
    findings: tuple[Finding, ...] = ()   # published results in words about its setting (report)


VARIANTS: Registry[Variant] = Registry("variant")


def register_variant(v: Variant, derived: bool = False, credit: str | None = None) -> Variant:
    return VARIANTS.register(v.name, v, help=v.help, derived=derived, credit=credit)


# Single-task baselines, the yardstick of every other variant: one per task, registered with it.
def _register_stl(spec: TaskSpec) -> None:
    if f"stl-{spec.name}" not in VARIANTS:
        register_variant(Variant(f"stl-{spec.name}", "single", tasks=(spec.name,),
                                 help=f"single-task baseline (STL) on {spec.name}"))


TASKS.on_register(_register_stl)

# Hard sharing with every weighting: ``hard-<name>`` for each registered weighting, a plugin's too.
# The weighting registry needs torch, this module does not: it imports lepton_bench.methods before the
# variants are first listed or a name is missed, and derives one variant for each weighting registered
# then or later. The module that registered the weighting may register its own variant of that name instead.


def register_weighting_variant(weighting: str, help: str, credit: str | None = None) -> None:
    """``hard-<weighting>``: hard sharing with that weighting, everything else at its defaults; its
    help is the weighting's up to the first ': ' or '. ' outside parentheses."""
    name = f"hard-{weighting}"
    if name in VARIANTS:
        return
    depth, cut = 0, len(help)
    for i, ch in enumerate(help):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in ":." and help[i + 1:i + 2] in (" ", ""):
            cut = i
            break
    register_variant(Variant(name, "hard", weighting, help=f"hard sharing, {help[:cut] or weighting}"), derived=True,
                     credit=credit)


# The static-weight sweep: one task up-weighted at a time (Xin et al. 2022: the baseline that
# adaptive weightings must beat), together with hard-ew as the (1, 1, 1) point.
for _t in default_tasks():
    register_variant(Variant(f"hard-static-{_t}x2", "hard", "static",
                             overrides={"weighting_args.static": {_t: 2.0}},
                             help=f"hard sharing, static weights, {_t} x2 (weight sweep)"))

# Soft sharing architectures, each with equal weights and one adaptive weighting.
for _a, _w, _h in (("soft_l2", "ew", "per-task trunks tied by an L2 penalty"),
                   ("soft_l2", "uw", "per-task trunks tied by an L2 penalty"),
                   ("mmoe", "ew", "multi-gate mixture of 3 shared expert trunks"),
                   ("mmoe", "uw", "multi-gate mixture of 3 shared expert trunks"),
                   ("adapters", "ew", "shared trunk + per-task bottleneck adapters"),
                   ("adapters", "dwa", "shared trunk + per-task bottleneck adapters")):
    register_variant(Variant(f"{_a}-{_w}", _a, _w, help=f"{_h}, weighting {_w}"))

# Task samplers other than 'all' (one task per step, T x the steps).
for _s, _h in (("round_robin", "tasks in turn"), ("proportional", "p ~ train-set size"),
               ("temperature", "p ~ size^(1/2)"), ("annealed", "p ~ size^alpha, alpha 1 -> 0.2")):
    register_variant(Variant(f"hard-ew-{_s}", "hard", "ew", _s,
                             help=f"hard sharing, equal weights, one task per step: {_h}"))


# The design of the Lepton articles: modality encoders (a CNN for images, a BiLSTM for text) feeding
# one shared token-wise MLP layer, a head per task; with its own STL baselines (same stems and
# trunk), so its MTL runs are compared with the very same encoders trained alone.
LEPTON_MODEL = {"model.trunk": "mlp", "model.depth": 1,
                "model.stems": {"cifar10": "cnn", "imdb": "bilstm", "conll2003": "bilstm"}}
# The articles' figures. Their CoNLL-2003 "97.3 F1" is scikit-learn's classification_report micro
# average over every token tag, O included (its support, 46,435, is every test token): that is token
# accuracy. NER papers report seqeval's entity F1, which the report shows beside it.
LEPTON_CLAIMS = (
    Claim("cifar10", "accuracy", 0.92, "CNN image encoder → shared layer (budget not stated)",
          source="the Lepton articles", checked_in="standard"),
    Claim("imdb", "accuracy", 0.88, "recurrent text encoder → shared layer (budget not stated)",
          source="the Lepton articles", checked_in="standard"),
    Claim("conll2003", "token_accuracy", 0.973,
          "pretrained BERT, fine-tuned (AdamW, lr 2e-5, batch 16, 5 epochs)", source="the Lepton articles",
          checked_in="pretrained",
          note="the articles' '97.3 F1' is scikit-learn's micro average over every token tag including O "
               "(support 46,435 = every test token), i.e. token accuracy, not seqeval entity F1",
          beside=("entity_f1",)),
)
for _t in LEPTON_MODEL["model.stems"]:
    register_variant(Variant(f"lepton-stl-{_t}", "single", tasks=(_t,), overrides=LEPTON_MODEL,
                             help=f"the articles' design trained on {_t} alone (its STL baseline)",
                             claims=tuple(c for c in LEPTON_CLAIMS if c.task == _t)))
register_variant(Variant("lepton-hard-ew", "hard", "ew", overrides=LEPTON_MODEL, claims=LEPTON_CLAIMS,
                         help="the articles' design: cnn/bilstm stems -> one shared MLP layer, equal weights"))
# The articles weight a sum of losses; CoNLL-2003 x2 is the quick sweep's best static point.
register_variant(Variant("lepton-hard-static", "hard", "static", claims=LEPTON_CLAIMS,
                         overrides={**LEPTON_MODEL, "weighting_args.static": {"conll2003": 2.0}},
                         help="the articles' design, weighted loss sum (conll2003 x2)"))
register_variant(Variant("lepton-soft_l2-ew", "soft_l2", "ew", overrides=LEPTON_MODEL, claims=LEPTON_CLAIMS,
                         help="the articles' design with one MLP layer per task tied by an L2 penalty"))
register_variant(Variant("lepton-hard-uw", "hard", "uw", overrides=LEPTON_MODEL, claims=LEPTON_CLAIMS,
                         help="the articles' design, uncertainty weighting (Kendall et al. 2018)"))


# Same-input multi-task learning: CoNLL-2003 NER, POS and chunking read one input (an input group),
# so a multi-task step runs the encoder once for the three (Collobert et al. 2011; Søgaard & Goldberg
# 2016). The encoder is the BiLSTM of the articles' design (82.0 entity F1 alone at 2,000 steps here),
# the same for every task of the group, STL baselines included.
TAGGING = ("conll2003", "conll2003_pos", "conll2003_chunk")
TAGGING_MODEL = {"model.trunk": "mlp", "model.depth": 1, "model.stems": dict.fromkeys(TAGGING, "bilstm")}
# What the literature reports for this setting (docs/tagging-literature.md: each figure read in the
# source's full text). NER from scratch: no pretrained word embeddings, test entity F1.
TAGGING_LITERATURE = (
    Claim("conll2003", "entity_f1", 0.8076, "BLSTM-CNN-CRF (character CNN), random 100-d word embeddings "
          "(Table 6; with GloVe 91.21)", source="Ma & Hovy 2016", url="https://arxiv.org/abs/1603.01354",
          kind="literature"),
    Claim("conll2003", "entity_f1", 0.8147, "sentence-level network (NN+SLL) without language-model embeddings "
          "(as quoted by Huang et al. 2015, Table 2; with them 88.67)", source="Collobert et al. 2011",
          url="https://arxiv.org/abs/1103.0398", kind="literature"),
    Claim("conll2003", "entity_f1", 0.8363, "LSTM-CRF with character BiLSTM, no pretrained embeddings: "
          "90.94 − 7.31, the gain the paper gives pretraining (derived)", source="Lample et al. 2016",
          url="https://arxiv.org/abs/1603.01360", kind="literature"),
    Claim("conll2003", "entity_f1", 0.8426, "BI-LSTM-CRF, random embeddings, with hand-made spelling and context "
          "features that include CoNLL-2003's POS and chunk columns", source="Huang, Xu & Yu 2015",
          url="https://arxiv.org/abs/1508.01991", kind="literature"),
)
TAGGING_FINDINGS = (
    Finding("Søgaard & Goldberg 2016, Deep multi-task learning with low level tasks supervised at lower layers, "
            "ACL", "it is \"consistently better to have POS supervision at the innermost rather than the "
            "outermost layer\" (for chunking and CCG supertagging); here every head reads the same top layer",
            url="https://aclanthology.org/P16-2038"),
    Finding("Hashimoto et al. 2017, A Joint Many-Task Model, EMNLP", "on WSJ (no NER), POS 97.45 → 97.55 and "
            "chunking 95.02 → 95.77 when trained jointly; using the same layers for all tasks \"hampers the "
            "effectiveness\"", url="https://aclanthology.org/D17-1206"),
    Finding("Changpinyo, Hu & Sha 2018, Multi-Task Learning for Sequence Tagging: An Empirical Study, COLING",
            "training all 11 tagging tasks jointly beats independent or pairwise training in about half of the "
            "cases; some tasks help others, some are hurt", url="https://arxiv.org/abs/1808.04151"),
    Finding("Martínez Alonso & Plank 2017, When is multitask learning effective?, EACL",
            "significant improvements \"only for 1 out of 5 tasks\"; auxiliary tasks with compact, more uniform "
            "label distributions work better", url="https://aclanthology.org/E17-1005"),
    Finding("Bingel & Søgaard 2017, Identifying beneficial task relations for multi-task learning in deep neural "
            "networks, EACL", "gains are likelier when the main task's learning curve plateaus early and the "
            "auxiliary task's does not", url="https://aclanthology.org/E17-2026"),
)
TAGGING_REFERENCES = {"claims": TAGGING_LITERATURE, "findings": TAGGING_FINDINGS}
for _t in TAGGING:
    register_variant(Variant(f"tagging-stl-{_t}", "single", tasks=(_t,), overrides=TAGGING_MODEL,
                             help=f"the BiLSTM tagger on {_t} alone (STL baseline of the tagging grid)",
                             **TAGGING_REFERENCES))
for _w in ("ew", "uw", "rlw", "pcgrad", "mgda", "upgrad"):
    register_variant(Variant(f"tagging-hard-{_w}", "hard", _w, tasks=TAGGING, overrides=TAGGING_MODEL,
                             help=f"NER + POS + chunking through one BiLSTM encoder, weighting {_w}",
                             **TAGGING_REFERENCES))
# MGDA on the Jacobian w.r.t. the shared features instead of the shared parameters (MGDA-UB, Sener &
# Koltun 2018): possible here because the three tasks read one feature tensor.
register_variant(Variant("tagging-hard-mgda_ub", "hard", "mgda", tasks=TAGGING,
                         overrides={**TAGGING_MODEL, "weighting_args.jacobian": "features"},
                         help="NER + POS + chunking, one encoder, MGDA-UB (min-norm on the shared features)",
                         **TAGGING_REFERENCES))
# Aligned-MTL-UB (Senushkin et al. 2023; the authors' AlignedMTLUBBalancer): the alignment on the gradients
# w.r.t. the shared features, as MGDA-UB; the heads get their own task's gradient, as the authors' code.
# Not named tagging-hard-*: the tagging grid's pattern would take it in (its committed plan stays).
register_variant(Variant("tagging-aligned_mtl_ub", "hard", "aligned_mtl", tasks=TAGGING,
                         overrides={**TAGGING_MODEL, "weighting_args.jacobian": "features"},
                         help="NER + POS + chunking, one encoder, Aligned-MTL-UB (aligned on the shared features)",
                         **TAGGING_REFERENCES))
for _t in TAGGING:
    register_variant(Variant(f"tagging-hard-static-{_t}x2", "hard", "static", tasks=TAGGING,
                             overrides={**TAGGING_MODEL, "weighting_args.static": {_t: 2.0}},
                             help=f"NER + POS + chunking, one encoder, static weights, {_t} x2 (weight sweep)",
                             **TAGGING_REFERENCES))
# The static-weight front: no weights of its own; a grid with a static_front density runs it at every
# interior point of the simplex of task weights (without one it runs at equal weights, as EW).
register_variant(Variant("tagging-hard-static", "hard", "static", tasks=TAGGING, overrides=TAGGING_MODEL,
                         help="NER + POS + chunking, one encoder, static weights at each point of the grid's "
                              "simplex (the static front)", **TAGGING_REFERENCES))
# Auxiliary tasks (the articles' auxiliary losses): NER is the task; POS and/or chunking are trained
# at a fixed weight w for what they teach the shared encoder, and left out of selection and Δm.
AUXILIARY = {"pos": ("conll2003_pos",), "chunk": ("conll2003_chunk",), "both": ("conll2003_pos", "conll2003_chunk")}
for _aux, _ts in AUXILIARY.items():
    for _wt in (1.0, 0.5, 0.1):
        register_variant(Variant(
            f"tagging-ner-aux-{_aux}-w{_wt:g}", "hard", "static", tasks=("conll2003", *_ts),
            overrides={**TAGGING_MODEL, "auxiliary": list(_ts), "weighting_args.static": dict.fromkeys(_ts, _wt)},
            help=f"NER with {' and '.join(_ts)} as auxiliary task{'s' if len(_ts) > 1 else ''} at weight {_wt:g}",
            **TAGGING_REFERENCES))
# Auto-Lambda's auxiliary-learning mode (Liu et al. 2022): NER primary, the weights of POS and chunking
# (and NER's own) meta-learned to lower NER's loss after a step.
register_variant(Variant(
    "tagging-ner-aux-auto_lambda", "hard", "auto_lambda", tasks=TAGGING,
    overrides={**TAGGING_MODEL, "auxiliary": list(AUXILIARY["both"])},
    help="NER with POS and chunking as auxiliary tasks, weights meta-learned for NER (Auto-Lambda)",
    **TAGGING_REFERENCES))
# BayesAgg-MTL needs tasks of one output type reading one representation: its hard-<weighting> variant
# trains the tagging group (registered before the derived one, which then leaves the name to it)
register_variant(Variant("hard-bayesagg_mtl", "hard", "bayesagg_mtl", tasks=TAGGING, overrides=TAGGING_MODEL,
                         help="hard sharing, BayesAgg-MTL (a posterior over each head's last layer) on NER + POS + "
                              "chunking through one BiLSTM encoder", **TAGGING_REFERENCES))
# PCD (TMLR 2026): NER's gradient followed, POS and chunking each guaranteed a share of their progress.
# Not named tagging-ner-aux-*: the tagging grid's pattern would take it in.
register_variant(Variant(
    "tagging-ner-primary-pcd", "hard", "pcd", tasks=TAGGING,
    overrides={**TAGGING_MODEL, "auxiliary": list(AUXILIARY["both"])},
    help="NER primary, POS and chunking secondary: priority-constrained descent (PCD)",
    **TAGGING_REFERENCES))


# A pretrained encoder shared by the heads (MT-DNN, Liu et al. 2019: the setting most multi-task learning is
# practised in): all-MiniLM-L6-v2, an uncased 6-layer, 384-wide BERT (22.7 M parameters), from the Hub or
# offline from its packaged copy (extra [minilm]); each word tagged on its first sub-word. Fine-tuned under
# every head, or frozen (model.freeze_pretrained: the serving case, only the small trunk and the heads train,
# one encoder pass feeds every head). Batch 32 (BERT's fine-tuning batches), the tagging grid's trunk.
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
PRETRAINED_MODEL = {"model.trunk": "mlp", "model.depth": 1, "model.dim": 384,
                    "model.stems": dict.fromkeys(TAGGING, f"hf:{MINILM}"),
                    **{f"tasks.{t}.batch_size": 32 for t in TAGGING},
                    "fused_adamw": True}   # AdamW's step over 22.7 M parameters: 59 -> 14 ms on this CPU
FROZEN_MODEL = {**PRETRAINED_MODEL, "model.freeze_pretrained": True}
# Fine-tuned BERT-family encoders on CoNLL-2003 NER (test entity F1), for scale: cased models, which see the
# capitalisation this uncased MiniLM loses.
PRETRAINED_LITERATURE = (
    Claim("conll2003", "entity_f1", 0.924, "BERT-base (cased, 110 M), fine-tuned, test split (Table 3)",
          source="Devlin et al. 2019", url="https://arxiv.org/abs/1810.04805", kind="literature",
          note="cased, with document context (the paper's final version); this MiniLM is uncased, sentence by "
               "sentence"),
    Claim("conll2003", "entity_f1", 0.928, "BERT-large (cased, 340 M), fine-tuned, test split (Table 3)",
          source="Devlin et al. 2019", url="https://arxiv.org/abs/1810.04805", kind="literature"),
)
PRETRAINED_REFERENCES = {"claims": (*(c for c in LEPTON_CLAIMS if c.task == "conll2003"), *PRETRAINED_LITERATURE)}
for _t in TAGGING:
    register_variant(Variant(f"pretrained-stl-{_t}", "single", tasks=(_t,), overrides=PRETRAINED_MODEL,
                             help=f"all-MiniLM-L6-v2 fine-tuned on {_t} alone (STL baseline of the pretrained grid)",
                             **PRETRAINED_REFERENCES))
    register_variant(Variant(f"pretrained-frozen-stl-{_t}", "single", tasks=(_t,), overrides=FROZEN_MODEL,
                             help=f"frozen all-MiniLM-L6-v2, trunk and head trained on {_t} alone",
                             **PRETRAINED_REFERENCES))
for _w in ("ew", "uw"):
    register_variant(Variant(f"pretrained-hard-{_w}", "hard", _w, tasks=TAGGING, overrides=PRETRAINED_MODEL,
                             help=f"NER + POS + chunking, one fine-tuned all-MiniLM-L6-v2, weighting {_w}",
                             **PRETRAINED_REFERENCES))
# UPGrad's Gramian from torchjd's autogram: on this encoder 3x cheaper than a backward per task (0.52 s
# against 1.58 s a step on the 2-core CPU: benchmarks/test_pretrained.py), the same update
register_variant(Variant("pretrained-hard-upgrad", "hard", "upgrad", tasks=TAGGING,
                         overrides={**PRETRAINED_MODEL, "weighting_args.autogram": True},
                         help="NER + POS + chunking, one fine-tuned all-MiniLM-L6-v2, UPGrad (Gramian by autogram)",
                         **PRETRAINED_REFERENCES))
# The tagging grid's best static point (its static front: NER at 3x the others' weight, Δm +0.18%)
register_variant(Variant("pretrained-hard-static-conll2003x3", "hard", "static", tasks=TAGGING,
                         overrides={**PRETRAINED_MODEL, "weighting_args.static": {
                             "conll2003": 1.8, "conll2003_pos": 0.6, "conll2003_chunk": 0.6}},
                         help="NER + POS + chunking, one fine-tuned all-MiniLM-L6-v2, static weights 1.8/0.6/0.6 "
                              "(the tagging grid's best static point)", **PRETRAINED_REFERENCES))
register_variant(Variant("pretrained-frozen-hard-ew", "hard", "ew", tasks=TAGGING, overrides=FROZEN_MODEL,
                         help="NER + POS + chunking, one frozen all-MiniLM-L6-v2, a shared trunk, equal weights",
                         **PRETRAINED_REFERENCES))
register_variant(Variant(
    "pretrained-ner-aux-pos-w0.5", "hard", "static", tasks=("conll2003", "conll2003_pos"),
    overrides={**PRETRAINED_MODEL, "auxiliary": ["conll2003_pos"], "weighting_args.static": {"conll2003_pos": 0.5}},
    help="NER with POS as an auxiliary task at weight 0.5, one fine-tuned all-MiniLM-L6-v2", **PRETRAINED_REFERENCES))

# More sharing architectures, with equal weights (beside the soft-sharing ones above; here because the
# same-input ones need TAGGING): the expert mixtures CGC, PLE and DSelect-k on the default mixed tasks,
# and cross-stitch and MTAN, which mix the tasks' activations on one input, on the CoNLL-2003 group.
for _a, _h in (("cgc", "customized gate control: 3 shared + 1 task-specific expert trunk per task (Tang 2020)"),
               ("ple", "progressive layered extraction: model.depth CGC levels of one-block experts (Tang 2020)"),
               ("dselect_k", "3 shared expert trunks, a differentiable top-2 DSelect-k gate per task (Hazimeh 2021)")):
    register_variant(Variant(f"{_a}-ew", _a, "ew", help=f"{_h}, equal loss weights"))
for _a, _h in (("cross_stitch", "a BiLSTM-fed trunk column per task, mixed by cross-stitch units (Misra 2016)"),
               ("mtan", "one BiLSTM-fed trunk, per-task attention masks at every block (MTAN, Liu 2019)")):
    register_variant(Variant(f"tagging-{_a}-ew", _a, "ew", tasks=TAGGING, overrides=TAGGING_MODEL,
                             help=f"NER + POS + chunking, {_h}, equal loss weights", **TAGGING_REFERENCES))


def make_config(variant: str, tasks: Sequence[str] | None = None, *, seed: int = 0,
                overrides: dict[str, Any] | list[str] | None = None, **fields: Any) -> RunConfig:
    """The full ``RunConfig`` of a variant: task defaults < variant overrides < user overrides, with
    its stem and trunk names and its method's settings checked (a bad one fails here, before any data loads).

    ``fields`` sets top-level ``RunConfig`` fields (device, data_dir, limits).
    """
    cfg = compose(variant, tasks, seed=seed, overrides=overrides, **fields)
    from .methods import WEIGHTINGS, resolve_args  # here: the registry itself stays torch-free
    from .models.stems import resolve_stem
    from .models.trunk import TRUNKS

    for t, n in cfg.model.stems.items():
        resolve_stem(n, TASKS.get(t).input, t)
    TRUNKS.get(cfg.model.trunk)
    try:
        args = resolve_args(cfg.weighting, cfg.weighting_args)   # each setting one the method declares
    except ConfigError as e:   # a grid's --set reaches every variant: say which one refused it
        raise ConfigError(f"variant {variant}: {e}") from None
    cfg.weighting_args = {k: getattr(args, k) for k in cfg.weighting_args}   # in its declared type
    cfg.method_revision = WEIGHTINGS.get(cfg.weighting).revision
    return cfg


def compose(variant: str, tasks: Sequence[str] | None = None, *, seed: int = 0,
            overrides: dict[str, Any] | list[str] | None = None, **fields: Any) -> RunConfig:
    """``make_config`` without the stem and trunk checks (no torch): e.g. a variant's defaults for
    the report."""
    v = VARIANTS.get(variant)
    names = list(tasks or v.tasks or default_tasks())
    for t in names:
        TASKS.get(t)  # unknown task -> error with close matches
    if len(set(names)) != len(names):
        raise ConfigError(f"a task is named twice in {', '.join(names)}")
    if v.architecture == "single" and len(names) != 1:
        raise ConfigError(f"variant {variant} is single-task; give one task, not {', '.join(names)}")
    cfg = RunConfig(variant=v.name, architecture=v.architecture, weighting=v.weighting,
                    sampler=v.sampler, seed=seed,
                    tasks={t: copy.deepcopy(TASKS.get(t).defaults) for t in names}, **fields)
    cfg = apply_overrides(cfg, {k: val for k, val in v.overrides.items()
                                if not k.startswith("tasks.") or k.split(".")[1] in names})
    cfg = apply_overrides(cfg, overrides or {})
    # a stem named for a task this run does not train, or a task's default stem, changes nothing,
    # so it stays out of the hash (and the report sees one design, not two)
    cfg.model.stems = {t: n for t, n in cfg.model.stems.items()
                       if t in cfg.tasks and n != DEFAULT_STEMS.get(TASKS.get(t).input)}
    return cfg


def _derive_weighting_variants() -> None:
    methods = importlib.import_module("lepton_bench.methods")   # by name: torch, and only when needed
    weightings = methods.WEIGHTINGS
    weightings.when_registered(lambda name, cls: register_weighting_variant(name, weightings.help(name),
                                                                            weightings.module(name)))


VARIANTS.load_with(_derive_weighting_variants)
