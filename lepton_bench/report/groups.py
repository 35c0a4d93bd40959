"""Grouping runs: one group per configuration, never per name, and each group's STL baselines.

A group is the ok runs whose configs are the same but for ``seed`` and the runtime fields (device,
data_dir, precision, compile): the seeds of one configuration, the unit of every table row. A run made
with ``--set train.lr=1e-3`` or ``--set weighting=uw`` is therefore its own group, never averaged with
the variant's other runs. A variant with one group is labelled by its name; one with several gets, after
its name, the dotted keys that vary between its groups and are off the variant's defaults, e.g.
``hard-ew (train.lr=0.001)``.

A group's *design* on a task (``design_of``: stem → trunk×depth + other model settings off default) is
what it is matched with its single-task (STL) baseline by: an STL group (architecture ``single``) of the
same task and design that reads the task's data alike (its ``data`` fields equal: at a label budget, the STL
of that budget), the one that agrees with it on the most ``train.*``, ``tasks.<task>.*`` and ``limit_*``
settings (then the one with most runs, then by name).

A group's ``auxiliary`` tasks (its config's ``auxiliary``; none in older records) are trained and
reported like any, and matched with their STL baselines too, but only its ``main`` tasks enter Δm,
the verdict and the claims. The list is part of the config: groups that differ by it are apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import (
    LABEL_BUDGET_SIZE,
    RUNTIME_FIELDS,
    complete,
    flatten,
    model_defaults,
    sharing_fields,
    task_data_fields,
)
from ..errors import LeptonError
from .records import get, run_cost
from .stats import finite

IGNORED = ("seed", *RUNTIME_FIELDS)   # what does not make a configuration: a group holds its seeds
_IGNORED_SECTIONS = tuple(f"{k}." for k in RUNTIME_FIELDS)   # a runtime mapping (sweep) flattens to sweep.*
MATCHED = ("train.", "limit_")         # + tasks.<task>.: what an STL baseline should agree on
_UNSET = object()                      # a key a config does not have (e.g. another task's settings)


@dataclass
class Group:
    """The ok runs of one configuration (all but seed and runtime fields equal): one table row."""

    name: str                      # the label every table and plot shows
    variant: str
    tasks: tuple[str, ...]
    architecture: str
    weighting: str
    runs: list[dict]
    designs: dict[str, str] = field(default_factory=dict)    # task -> design label (see ``design_of``)
    config: dict[str, Any] = field(default_factory=dict)     # dotted key -> value, minus seed and runtime
    defaults: dict[str, Any] = field(default_factory=dict)   # the same for the variant's own defaults

    @property
    def stl(self) -> bool:
        return self.architecture == "single"

    @property
    def auxiliary(self) -> tuple[str, ...]:
        """The tasks its config marks auxiliary (trained and reported, but out of Δm and the verdict)."""
        aux = self.config.get("auxiliary") or ()
        aux = (aux,) if isinstance(aux, str) else aux   # a hand-written record's single name
        return tuple(t for t in self.tasks if t in aux)

    @property
    def main(self) -> tuple[str, ...]:
        """The tasks Δm and the verdict read: all but the auxiliary ones."""
        return tuple(t for t in self.tasks if t not in self.auxiliary)

    def values(self, task: str, metric: str, split: str = "test") -> np.ndarray:
        """One value per seed of a task's metric (missing ones dropped)."""
        return finite(get(r, "metrics", task, split, metric) for r in self.runs)

    def cost(self, key: str) -> np.ndarray:
        return finite(run_cost(r)[key] for r in self.runs)


# --------------------------------------------------------------------------- configurations


def _freeze(v: Any) -> Any:
    """A hashable copy of a config value (lists and mappings inside values become tuples)."""
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    return v


def identity(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """What makes a run's configuration: its config completed with today's defaults (fields an old
    record lacks), as dotted keys, without seed and the runtime fields."""
    return {k: _freeze(v) for k, v in flatten(complete(dict(cfg or {}))).items()
            if k not in IGNORED and not k.startswith(_IGNORED_SECTIONS)}


def variant_defaults(variant: str, tasks: Sequence[str], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``identity`` of the variant's own config on these tasks, with the run's limits (so that limits
    do not label a group unless they vary); the config dataclasses' defaults for a variant that is not
    registered (a plugin not loaded)."""
    from ..variants import compose  # here: the report's import stays light

    limits = {"limit_train": cfg.get("limit_train"), "limit_eval": cfg.get("limit_eval")}
    try:
        return identity(compose(variant, list(tasks), **limits).to_dict())
    except LeptonError:   # the run's own kind (a hard-<weighting> the report's torch-free import has not derived)
        kind = {k: cfg[k] for k in ("architecture", "weighting", "sampler") if k in cfg}
        return identity({"variant": variant, "tasks": {t: {} for t in tasks}, **kind, **limits})


def fmt_value(v: Any) -> str:
    """A config value as ``--set`` takes it: ``0.001``, ``true``, ``none``, ``[8,16]``."""
    if v is _UNSET:
        return "unset"
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "[" + ",".join(fmt_value(x) for x in v) + "]"
    return str(v)


def varying(groups: Sequence[Group]) -> list[str]:
    """The dotted keys whose value (or presence) differs between groups, sorted."""
    keys = sorted({k for g in groups for k in g.config})
    return [k for k in keys if len({g.config.get(k, _UNSET) for g in groups}) > 1]


def _label(variant: str, parts: Sequence[str]) -> str:
    return f"{variant} ({', '.join(parts)})" if parts else variant


STATIC_KEY = "weighting_args.static."


def _parts(g: Group, keys: Sequence[str], task_set: bool) -> list[str]:
    """What a label shows after the variant's name: the task set (when that varies), then ``key=value``;
    static task weights as one ``w=a/b/c`` in the group's task order (missing: 1), a point of the front."""
    parts = [_part(g, k) for k in keys if not k.startswith(STATIC_KEY)]
    if any(k.startswith(STATIC_KEY) for k in keys):
        parts.insert(0, "w=" + "/".join(fmt_value(g.config.get(STATIC_KEY + t, 1.0)) for t in g.tasks))
    return (["+".join(g.tasks)] if task_set else []) + parts


def _part(g: Group, key: str) -> str:
    """``key=value``; a task's label budget as ``conll2003 labels 5%`` (or ``... labels 700``)."""
    value = g.config.get(key, _UNSET)
    section, _, name = key.rpartition(".")
    if section.startswith("tasks.") and name in LABEL_BUDGET_SIZE and isinstance(value, (int, float)):
        shown = f"{value * 100:.3g}%" if name == "train_fraction" else f"{value:g}"
        return f"{section.split('.', 1)[1]} labels {shown}"
    return f"{key}={fmt_value(value)}"


def name_groups(groups: Sequence[Group]) -> None:
    """Label each group: the variant's name when it has one group; otherwise its name + the keys that
    vary between its groups and are off the variant's defaults (+ the task set, when that varies). Two
    groups that would share a label show every key that tells them apart."""
    by_variant: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        by_variant[g.variant].append(g)
    for variant, gs in by_variant.items():
        task_set = len({g.tasks for g in gs}) > 1
        keys = varying(gs)
        for g in gs:
            off = [k for k in keys if g.config.get(k, _UNSET) != g.defaults.get(k, _UNSET)]
            g.name = _label(variant, _parts(g, off, task_set))
        by_label: dict[str, list[Group]] = defaultdict(list)
        for g in gs:
            by_label[g.name].append(g)
        for same in (s for s in by_label.values() if len(s) > 1):
            apart = varying(same)
            for g in same:
                g.name = _label(variant, _parts(g, apart, task_set))
    # a label that another variant's name happens to spell: number the later ones
    seen: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: (g.name, g.variant, repr(sorted(g.config.items())))):
        n = seen[g.name] = seen.get(g.name, 0) + 1
        if n > 1:
            g.name = f"{g.name} #{n}"


def make_groups(ok: Sequence[dict]) -> list[Group]:
    """Group ok runs by their configuration (see ``identity``), labelled by ``name_groups``, by name."""
    by_key: dict[tuple, list[dict]] = {}
    for r in ok:
        cfg = identity(r.get("config"))
        by_key.setdefault((r["variant"], tuple(r["tasks"]), tuple(sorted(cfg.items()))), []).append(r)
    groups = []
    for (variant, tasks, items), runs in by_key.items():
        full = complete(runs[0].get("config"))
        runs = sorted(runs, key=lambda r: (r["seed"], r["run_id"]))
        groups.append(Group("", variant, tasks, full.get("architecture") or "?", full.get("weighting") or "?",
                            runs, {t: design_of(full, t) for t in tasks}, dict(items),
                            variant_defaults(variant, tasks, full)))
    name_groups(groups)
    return sorted(groups, key=lambda g: g.name)


# --------------------------------------------------------------------------- designs and STL baselines


def design_of(cfg: Mapping[str, Any], task: str) -> str:
    """What a task is encoded and transformed with, e.g. ``cnn → mlp×1``: its stem and the trunk,
    plus any other model setting off its default (but those only sharing architectures read: an STL
    model is the same whatever they say). An MTL run is compared with the STL run of the same design
    on each task (same stems, same trunk), never with another encoder's."""
    defaults = model_defaults()   # looked up now: every declared model field counts
    model = {**defaults, **(cfg.get("model") or {})}
    stem = (model.pop("stems") or {}).get(task) or "default stem"
    trunk, depth = model.pop("trunk"), model.pop("depth")
    sharing = sharing_fields()
    other = [f"{k}={_short(v)}" for k, v in sorted(model.items())
             if k not in sharing and _short(v) != _short(defaults.get(k))]
    return f"{stem} → {trunk}×{depth}" + (f" ({', '.join(other)})" if other else "")


def _short(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def agreement(g: Group, stl: Group, task: str) -> int:
    """On how many ``train.*``, ``tasks.<task>.*`` and ``limit_*`` settings two groups agree."""
    matched = (*MATCHED, f"tasks.{task}.")
    keys = {k for k in (*g.config, *stl.config) if k.startswith(matched)}
    return sum(g.config.get(k, _UNSET) == stl.config.get(k, _UNSET) for k in keys)


def same_data(g: Group, stl: Group, task: str) -> bool:
    """Whether two groups read the task's data alike: every ``data`` field of its section (the label budget,
    max_len, vocabulary, hold-out...) equal. An STL model trained on other data, or on other labels, is no
    baseline: at a label budget, the STL of that budget."""
    keys = [f"tasks.{task}.{k}" for k in task_data_fields()]
    return all(g.config.get(k, _UNSET) == stl.config.get(k, _UNSET) for k in keys)


def stl_references(groups: Sequence[Group]) -> dict[tuple[str, str], Group]:
    """(group name, task) -> the STL group it is compared with on that task: an STL group is its own;
    an MTL group gets the single-task group of that task and design that agrees with it on the most
    matched settings (``agreement``), then the one with most runs, then the first by name — among those that
    read the task's data alike (``same_data``: at a label budget, the STL of that budget)."""
    stl = [g for g in groups if g.stl and len(g.tasks) == 1]
    refs: dict[tuple[str, str], Group] = {}
    for g in groups:
        for t in g.tasks:
            if g.stl:
                if len(g.tasks) == 1:
                    refs[(g.name, t)] = g
                continue
            cands = [s for s in stl if s.tasks[0] == t and s.designs[t] == g.designs[t] and same_data(g, s, t)]
            if cands:
                refs[(g.name, t)] = min(cands, key=lambda s, g=g, t=t: (-agreement(g, s, t), -len(s.runs), s.name))
    return refs
