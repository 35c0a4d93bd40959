"""Variants: named, registered combinations of architecture + weighting + sampler + overrides.

A variant is the unit users pick (``--variant``) and grids multiply by seeds.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import RunConfig, apply_overrides
from .errors import ConfigError
from .registry import Registry
from .tasks import TASKS

ALL_TASKS = ("cifar10", "imdb", "conll2003")


@dataclass(frozen=True)
class Variant:
    name: str
    architecture: str
    weighting: str = "ew"
    sampler: str = "all"
    tasks: tuple[str, ...] = ALL_TASKS
    overrides: dict[str, Any] = field(default_factory=dict)   # dotted config keys
    help: str = ""


VARIANTS: Registry[Variant] = Registry("variant")


def register_variant(v: Variant) -> Variant:
    return VARIANTS.register(v.name, v, help=v.help)


for _t in ALL_TASKS:
    register_variant(Variant(f"stl-{_t}", "single", tasks=(_t,),
                             help=f"single-task baseline (STL) on {_t}"))
register_variant(Variant("hard-ew", "hard", "ew",
                         help="hard sharing: one trunk for all tasks, equal loss weights"))


def make_config(variant: str, tasks: Sequence[str] | None = None, *, seed: int = 0,
                overrides: dict[str, Any] | list[str] | None = None, **fields: Any) -> RunConfig:
    """The full ``RunConfig`` of a variant: task defaults < variant overrides < user overrides.

    ``fields`` sets top-level ``RunConfig`` fields (device, data_dir, limits).
    """
    v = VARIANTS.get(variant)
    names = list(tasks) if tasks else list(v.tasks)
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
    return apply_overrides(cfg, overrides or {})
