"""Where the methods were before ``lepton_bench.methods``: kept so that plugins written against it load."""

from .methods import WEIGHTINGS, Weighting

__all__ = ["WEIGHTINGS", "Weighting"]
