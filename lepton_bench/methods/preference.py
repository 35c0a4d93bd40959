"""A preference vector over the tasks, shared by the scalarizations that take one (STCH, COSMOS, PBI)."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def preference_vector(name: str, tasks: list[str], given: dict[str, float]) -> torch.Tensor:
    """``weighting_args.<name>`` (task -> preference, missing 1) normalised onto the simplex; unset: equal."""
    unknown = set(given) - set(tasks)
    if unknown:
        raise ConfigError(f"weighting_args.{name} names tasks not in this run: {', '.join(sorted(unknown))}")
    pref = [float(given.get(t, 1.0)) for t in tasks]
    if min(pref) < 0 or sum(pref) <= 0:
        raise ConfigError(f"weighting_args.{name} must be non-negative with a positive sum, not {pref}")
    return torch.tensor(pref) / sum(pref)
