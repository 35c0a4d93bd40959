"""The one config system: nested dataclasses, dotted overrides, a stable hash.

Units are in the comments (airbench style). Per-task settings live in ``TaskConfig``
so that a single-task baseline and a multi-task run read the very same numbers for
each task: the only thing that differs between them is how the trunk is shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints

from .errors import ConfigError

# ---------------------------------------------------------------- what each field is for
#
# Every field says, once, on itself (``setting(...)``), which of the derived facts it belongs to:
#   runtime  how a run executes, not what it trains: out of the config hash (device, precision, ...)
#   added    added after the first committed records: hashed only when set off its default, so the run
#            ids of those records (and the resume of their grids) still hold
#   data     changes the tensors a task's data becomes: part of the tensor cache key
#   sharing  read only by architectures that share (soft_l2, mmoe, adapters, ...): an STL model is the same
#            whatever it says, so it stays out of the design label the report matches STL runs by
# A plain field (no ``setting``) is hashed, is not data, and is part of the design when it is a model field.

ROLES = ("runtime", "added", "data", "sharing")


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
            runtime: bool = False, added: bool = False, data: bool = False, sharing: bool = False):
    """A dataclass field with its roles (see above) in ``metadata["lepton"]``."""
    roles = frozenset(r for r, on in zip(ROLES, (runtime, added, data, sharing), strict=True) if on)
    return field(default=default, default_factory=default_factory, metadata={"lepton": roles})


def roles_of(f: dataclasses.Field) -> frozenset[str]:
    return f.metadata.get("lepton", frozenset())


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def walk(obj: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(dotted path, field, value) of every leaf field of a config, at any depth: sections are
    walked into, and so are mappings of sections (``tasks.<t>.*``); a mapping of plain values
    (``model.stems``) is one leaf."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from walk(value, path + ".")
        elif isinstance(value, dict) and value and all(is_dataclass(v) for v in value.values()):
            for k, v in value.items():
                yield from walk(v, f"{path}.{k}.")
        else:
            yield path, f, value


def paths_with(obj: Any, role: str) -> list[str]:
    """Dotted paths of the leaf fields of ``obj`` that have ``role``."""
    return [p for p, f, _ in walk(obj) if role in roles_of(f)]


def data_settings(obj: Any) -> dict[str, Any]:
    """The ``data`` fields of a config section and their values (what a tensor cache key holds); an
    ``added`` one only when set off its default, so the tensors cached before it came keep their key."""
    return {p: v for p, f, v in walk(obj)
            if "data" in roles_of(f) and not ("added" in roles_of(f) and v == field_default(f))}


def _drop(d: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d[p]
    d.pop(last, None)


@dataclass
class TaskConfig:
    batch_size: int = 64          # examples of this task per optimizer step
    eval_batch_size: int = 256    # examples per forward pass at evaluation
    max_len: int = setting(0, data=True)          # tokens kept per text example (0: not a text task)
    truncate: str = setting("head", data=True)    # longer texts keep their first max_len tokens, or with
                                  # "head_tail" the first and last max_len/2 (Sun et al. 2019)
    vocab_size: int = setting(30000, data=True)   # word-level vocabulary cap, incl. <pad>/<unk>
    min_freq: int = setting(2, data=True)         # a word needs this many train occurrences to get an id
    holdout_frac: float = setting(0.1, data=True)  # share of train held out for validation (no val split)
    holdout_max: int = setting(5000, data=True)   # cap on that hold-out, in examples
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    # The label budget: the task trains on the labels of a subset of its train split (after the hold-out and
    # limit_train), the other tasks of its input group on theirs. The subset is the first k rows of one
    # permutation drawn by label_seed (not the run's seed): budgets of one seed are nested (the 5% subset lies
    # inside the 10% one), and the inputs (vocabulary included) stay the whole split's. data.label_budget.
    train_fraction: float = setting(1.0, data=True, added=True)  # share of the train split that is labelled,
                                  # in (0, 1]; k = round(fraction x rows)
    train_count: int = setting(0, data=True, added=True)   # or exactly this many labelled rows (0: by fraction)
    label_seed: int = setting(0, data=True, added=True)    # draws the labelled rows' permutation


LABEL_BUDGET = ("train_fraction", "train_count", "label_seed")   # the TaskConfig fields of a task's label budget
                                  # (the tasks of one input group may set them apart; every other data field is shared)
LABEL_BUDGET_SIZE = LABEL_BUDGET[:2]   # of those, the ones that say how many rows are labelled (label_seed: which)

DEFAULT_STEMS = {"image": "conv", "text": "embedding"}   # input type -> a task's stem unless model.stems names one


@dataclass
class ModelConfig:
    dim: int = 128                # trunk width d, in channels
    trunk: str = setting("transformer", added=True)  # the shared layer (list trunks): transformer, or mlp
    depth: int = 2                # blocks in the trunk
    heads: int = 4                # attention heads per block
    mlp_ratio: float = 4.0        # MLP hidden width / d
    dropout: float = 0.1          # on embeddings and block outputs
    drop_path: float = 0.0        # stochastic depth, max rate over the blocks
    image_widths: tuple[int, ...] = (32, 64, 128)  # conv stem stage widths; each stage halves H, W
    case_feature: bool = True     # text stems: add a word-shape embedding (Aa, AA, aa, 0, .)
    char_dim: int = setting(0, added=True)  # bilstm: width of a character-CNN word feature (0: none; tasks whose
                                  # words are given, i.e. conll2003)
    soft_l2: float = setting(1e-2, sharing=True)  # soft_l2: strength of the L2 pull of each task's trunk to their mean
    experts: int = setting(3, sharing=True)       # mmoe: shared expert trunks
    adapter_dim: int = setting(32, sharing=True)  # adapters: bottleneck width of the per-task adapters
    task_experts: int = setting(1, added=True, sharing=True)  # cgc, ple: task-specific expert trunks per task
                                  # (model.experts: the shared ones)
    dselect_k: int = setting(2, added=True, sharing=True)  # dselect_k: single-expert selectors per gate (at most
                                  # this many of the model.experts shared experts weigh on a token)
    dselect_gamma: float = setting(1.0, added=True, sharing=True)  # dselect_k: width of the smooth step's
                                  # polynomial region (gamma)
    dselect_entropy: float = setting(0.0, added=True, sharing=True)  # dselect_k: strength of the selectors'
                                  # entropy penalty (0: off), which speeds their convergence to one expert each
    stems: dict[str, str] = setting(default_factory=dict, added=True)  # task -> stem (list stems); unset: conv
                                  # for images, embedding for text
    pretrained: bool = setting(True, added=True)  # hf:/timm: stems load their trained weights (false: random init)
    freeze_pretrained: bool = setting(False, added=True)  # hf: stems keep their trained weights: no gradient, no
                                  # dropout, no graph; the trunk and heads train (the serving case: one encoder
                                  # pass feeds every head)
    image_size: int = setting(0, added=True)  # image stems resize to this many px first (0: as stored, 32 for
                                  # CIFAR-10); ImageNet-trained timm: stems want their own, e.g. 224


# ---------------------------------------------------------------- the methods' settings
#
# Each method declares its own hyper-parameters (``Args`` in lepton_bench/methods/<method>.py); a run holds
# the ones set (``weighting_args``), checked against the method's declaration when its config is made.
# Before that, one flat section held every method's fields, and the committed run ids hash it: the
# identity below rebuilds that shape, so an id stays what it was. Each old field, its type and default,
# and whether it was hashed always (a plain field) or only off its default (added later).
LEGACY_WEIGHTING_ARGS: dict[str, tuple[Any, Any, bool]] = {
    "static": (dict[str, float], {}, True),
    "dwa_temperature": (float, 2.0, True),
    "dwa_window": (int, 50, True),
    "famo_lr": (float, 0.025, True),
    "famo_decay": (float, 1e-3, True),
    "gradnorm_alpha": (float, 1.5, True),
    "gradnorm_lr": (float, 0.025, True),
    "cagrad_c": (float, 0.5, True),
    "temperature": (float, 2.0, True),   # the 'temperature' sampler's, now ``sampler_temperature``
    "jacobian": (str, "params", False),
    "gradvac_beta": (float, 0.5, False),
    "fairgrad_alpha": (float, 1.0, False),
    "excess_mtl_step": (float, 1.0, False),
    "crmogm_alpha": (float, 0.9, False),
    "task_grads": (str, "auto", False),
    "aligned_mtl_pref": (str, "sum", False),
    "graddrop_on": (str, "auto", False),
    "modo_gamma": (float, 0.1, False),
    "modo_rho": (float, 0.1, False),
    "sdmgrad_lambda": (float, 0.3, False),
    "stch_mu": (float, 1.0, False),
    "stch_preference": (dict[str, float], {}, False),
    "db_beta": (float, 0.9, False),
    "db_beta_sigma": (float, 0.0, False),
    "moco_beta": (float, 0.5, False),
    "moco_beta_sigma": (float, 0.5, False),
    "moco_gamma": (float, 0.1, False),
    "moco_gamma_sigma": (float, 0.5, False),
    "moco_rho": (float, 0.0, False),
    "autol_init": (float, 0.1, False),
    "autol_lr": (float, 1e-4, False),
}


def set_weighting_args(args: dict[str, Any]) -> dict[str, Any]:
    """The settings a run holds: those set, without an old field at its old default (old records hold
    every method's fields at their defaults; a run of today holds what was set)."""
    return {k: v for k, v in args.items()
            if not (k in LEGACY_WEIGHTING_ARGS and _same(v, LEGACY_WEIGHTING_ARGS[k][1]))}


def hashed_weighting_args(args: dict[str, Any]) -> dict[str, Any]:
    """``weighting_args`` as the run id hashes it: the old flat section's shape (its plain fields, at
    their values or old defaults), plus every other setting that is set. A setting a method declares
    today is hashed when set, even at its default (the config layer does not know the default)."""
    plain = {k: default for k, (_, default, always) in LEGACY_WEIGHTING_ARGS.items() if always}
    return {**plain, **set_weighting_args(args)}


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True, default=list)


@dataclass
class TrainConfig:
    steps: int = 2000             # optimizer steps; every task gets one batch a step (sampler 'all')
    lr: float = 2e-3              # AdamW peak learning rate
    weight_decay: float = 0.05    # AdamW decoupled decay, on matrices only
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_frac: float = 0.05     # share of steps with linear warm-up, then cosine to 0
    clip_norm: float = 1.0        # global gradient-norm clip (0: off)
    eval_every: int = 250         # steps between validation passes (and at the end)
    log_every: int = 25           # steps between loss reads (the only host syncs of the loop)
    timing_warmup: int = 5        # first steps left out of throughput figures
    diagnose_every: int = setting(100, runtime=True)   # steps between gradient-conflict and task-affinity
                                  # measurements (diagnostics.py; 0: off). They change nothing trained (out of
                                  # the hash) and stay out of the training time; 100 keeps their wall time
                                  # under 5% here (benchmarks/test_diagnostics.py)


@dataclass
class RunConfig:
    variant: str = "hard-ew"
    architecture: str = "hard"
    weighting: str = "ew"
    sampler: str = "all"
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    weighting_args: dict[str, Any] = field(default_factory=dict)   # the method's settings that are set (each
                                  # method declares its own: ``Args`` in methods/<method>.py; keys checked there)
    sampler_temperature: float = setting(2.0, added=True)   # 'temperature' sampler: p ~ n^(1/temperature)
    method_revision: int = setting(1, added=True)   # the method's ``revision`` (methods/base.py), set by
                                  # make_config: a method whose update changed by design counts up, so its
                                  # runs get new ids and an old record of it is not resumed as if current
    seed: int = 0
    limit_train: int | None = setting(None, data=True)   # cap on train examples per task (seeded subset)
    limit_eval: int | None = setting(None, data=True)    # cap on validation and test examples per task
    holdout_seed: int = setting(0, data=True)            # fixes the validation hold-out for every run and seed
    auxiliary: tuple[str, ...] = setting((), added=True)  # tasks trained and reported, but left out of checkpoint
                                                         # selection, Δm and the report's verdict
    # Where and how to run: the same training, executed differently; out of the hash.
    device: str = setting("auto", runtime=True)
    data_dir: str | None = setting(None, runtime=True)
    precision: str = setting("auto", runtime=True)   # auto (bf16 autocast on a CUDA GPU that has it, else fp32),
                                                     # bf16, fp32
    compile: bool = setting(False, runtime=True)     # torch.compile the model (CUDA only; eager on CPU)
    fused_adamw: bool = setting(False, runtime=True)  # torch's fused AdamW kernel: the same update up to float
                                  # rounding, ~4x faster a step on CPU for a 22 M-parameter encoder (off: torch's
                                  # default kernel, which the committed runs used)
    # The grid's search axes this run is a point of ({"axes": [dotted keys], "tune_seeds": k or None}): the
    # point itself is the config's values at those keys, already hashed; this only tells the report which
    # keys were tuned, so it stays out of the hash (a run made outside a sweep is the same run).
    sweep: dict[str, Any] = setting(default_factory=dict, runtime=True)
    # Experiment trackers the run also logs to (trackers.py: tensorboard, wandb, mlflow) and where they write:
    # where a run is watched, not what it trains; out of the hash.
    log: tuple[str, ...] = setting((), runtime=True)
    log_dir: str | None = setting(None, runtime=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What defines what is trained, as a dict: the config without its runtime fields, and
        without the ``added`` fields that are at their defaults."""
        d = self.to_dict()
        for path, f, value in walk(self):
            roles = roles_of(f)
            if "runtime" in roles or ("added" in roles and value == field_default(f)):
                _drop(d, path)
        d["weighting_args"] = hashed_weighting_args(self.weighting_args)
        return d

    def config_hash(self) -> str:
        """Hash of everything that defines what is trained (not where it runs)."""
        blob = json.dumps(self.identity(), sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


RUNTIME_FIELDS = tuple(paths_with(RunConfig(), "runtime"))   # device, data_dir, ..., sweep, log, log_dir


def coerce(value: Any, typ: Any, key: str) -> Any:
    """Turn a CLI string (parsed as JSON when it is JSON) into the field's type."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a bare string
    if typ is Any:
        return value   # a method's setting before the method's declaration is consulted (methods.resolve_args)
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (types.UnionType, typing.Union):  # X | None
        if value is None or value in ("none", "None"):
            return None
        typ = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(typ), typing.get_args(typ)
    try:
        if origin is tuple:
            seq = value if isinstance(value, (list, tuple)) else [value]
            return tuple(coerce(v, args[0], key) for v in seq)
        if typ is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            return str(value)
        if origin is dict and isinstance(value, dict):
            return {str(k): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"bad value {value!r} for {key} (expected {getattr(typ, '__name__', typ)})")


def set_dotted(cfg: RunConfig, key: str, value: Any) -> None:
    """Apply one override such as ``train.lr=1e-3``, ``tasks.imdb.max_len=128`` or one entry of a
    mapping, ``model.stems.imdb=bilstm``."""
    parts = key.split(".")
    obj: Any = cfg
    path = []
    dict_type: Any = None   # the declared type of the dict being walked, e.g. dict[str, str]
    for i, part in enumerate(parts):
        path.append(part)
        last = i == len(parts) - 1
        if isinstance(obj, dict):
            value_type = typing.get_args(dict_type)[1] if dict_type else None
            if path[0] == "weighting_args" and part in LEGACY_WEIGHTING_ARGS:
                value_type = LEGACY_WEIGHTING_ARGS[part][0]   # an old field keeps its type (and its hash)
            if last and value_type is not None and not is_dataclass(value_type):
                obj[part] = coerce(value, value_type, key)   # one entry of a plain mapping
                return
            if path[0] == "weighting_args" and not last and part not in obj:
                obj[part] = {}   # one entry of a method's mapping setting (weighting_args.static.imdb=2)
            if part not in obj:
                raise ConfigError(f"unknown config key {'.'.join(path)!r}: "
                                  f"known: {', '.join(sorted(obj)) or 'none'}")
            if last:
                raise ConfigError(f"{key!r} names a whole section; set one of its fields")
            obj, dict_type = obj[part], value_type if typing.get_origin(value_type) is dict else None
            continue
        names = [f.name for f in fields(obj)]
        if part not in names:
            import difflib
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown config key {'.'.join(path)!r}{hint}")
        typ = get_type_hints(type(obj))[part]
        if last:
            setattr(obj, part, coerce(value, typ, key))
        else:
            obj, dict_type = getattr(obj, part), typ
            if not (is_dataclass(obj) or isinstance(obj, dict)):
                raise ConfigError(f"{'.'.join(path)!r} is a value, not a section")


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any] | list[str]) -> RunConfig:
    """Apply ``{"a.b": v}`` or ``["a.b=v", ...]`` to a copy of ``cfg``."""
    cfg = dataclasses.replace(cfg)
    cfg = from_dict(cfg.to_dict())
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for k, v in items:
        set_dotted(cfg, k, v)
    return cfg


def _split(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"bad override {text!r}: expected KEY=VALUE, e.g. train.lr=1e-3")
    k, v = text.split("=", 1)
    return k.strip(), v.strip()


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a ``RunConfig`` from ``to_dict`` output (e.g. a results record)."""
    d = dict(d)
    d["tasks"] = {k: TaskConfig(**v) for k, v in d.get("tasks", {}).items()}
    model = dict(d.get("model", {}))
    if "image_widths" in model:   # JSON gives lists; the dataclass holds tuples (and hashes them)
        model["image_widths"] = tuple(model["image_widths"])
    d["model"] = ModelConfig(**model)
    train = dict(d.get("train", {}))
    if "betas" in train:
        train["betas"] = tuple(train["betas"])
    d["train"] = TrainConfig(**train)
    args = set_weighting_args(d.get("weighting_args") or {})
    if "temperature" in args:   # a record from before sampler_temperature
        d["sampler_temperature"] = float(args.pop("temperature"))
    d["weighting_args"] = args
    for key in ("auxiliary", "log"):
        if key in d:
            d[key] = tuple(d[key])
    return RunConfig(**d)


# ---------------------------------------------------------------- configs as records hold them

# These look the section classes up when called, so a field declared on them is seen everywhere
# (and a test can stand a subclass with a dummy field in for one).

def sharing_fields() -> frozenset[str]:
    """Model fields read only by sharing architectures: left out of the design label."""
    return frozenset(f.name for f in fields(ModelConfig) if "sharing" in roles_of(f))


def task_data_fields() -> tuple[str, ...]:
    """The ``TaskConfig`` fields that change a task's data (its label budget among them)."""
    return tuple(f.name for f in fields(TaskConfig) if "data" in roles_of(f))


def model_defaults() -> dict[str, Any]:
    """Every model field's default, as a record's config holds it."""
    return asdict(ModelConfig())


def complete(d: dict[str, Any] | None) -> dict[str, Any]:
    """A record's config dict with every field its version lacked filled in with today's default,
    so that configs of old and new records compare key by key. Unknown keys (a newer version, a
    plugin) are kept as they are; a task section is completed with ``TaskConfig``'s defaults."""
    def merge(default: Any, given: Any) -> Any:
        if isinstance(default, dict) and isinstance(given, dict) and default:
            return {**default, **{k: merge(default.get(k), v) for k, v in given.items()}}
        return given

    d = dict(d or {})
    out = merge({**asdict(RunConfig()), "model": model_defaults()}, d)
    args = set_weighting_args(out.get("weighting_args") or {})   # old and new records: the settings set
    if "temperature" in args and "sampler_temperature" not in d:
        out["sampler_temperature"] = args.pop("temperature")
    out["weighting_args"] = args
    task_default = asdict(TaskConfig())
    out["tasks"] = {t: merge(task_default, v) if isinstance(v, dict) else v
                    for t, v in (d.get("tasks") or {}).items()}
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; mappings of plain values (``model.stems``)
    one key per entry, an empty one none; lists become tuples (hashable, as the dataclasses hold them)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tuple(d) if isinstance(d, list) else d}
