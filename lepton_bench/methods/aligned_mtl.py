"""Aligned-MTL (Senushkin et al., CVPR 2023): aligned principal components, a torchjd aggregator."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .base import WEIGHTINGS
from .gradient import GradientAggregation, GradientArgs, torchjd_aggregator


@dataclass
class AlignedMTLArgs(GradientArgs):
    aligned_mtl_pref: str = "sum"   # preference vector of ones ("sum", the paper) or 1/T ("mean", torchjd's
                                    # default: a T times smaller update)


@WEIGHTINGS.register("aligned_mtl")
class AlignedMTL(GradientAggregation):
    """Aligned-MTL (Senushkin et al., CVPR 2023): align the gradients' principal components.

    The update is the balanced gradients' sum, as Algorithm 1 (preference vector of ones;
    ``weighting_args.aligned_mtl_pref=mean``: torchjd's default 1/T, an update T times smaller)."""

    Args = AlignedMTLArgs

    def make(self):
        pref = self.args.aligned_mtl_pref
        if pref not in ("sum", "mean"):
            raise ConfigError(f"weighting_args.aligned_mtl_pref must be sum or mean, not {pref!r}")
        ones = torch.ones(len(self.tasks), device=self.device)
        return torchjd_aggregator("AlignedMTL", pref_vector=ones if pref == "sum" else ones / len(self.tasks))
