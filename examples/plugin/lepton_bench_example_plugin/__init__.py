"""Example lepton_bench plugin: registers

* the ``inverse_loss`` weighting, with a setting of its own (``weighting_args.tau``), and with it, derived
  from the registry, the ``hard-inverse_loss`` variant;
* the ``imdb_long`` task, whose labels are computed (a review longer than the training median), in the
  input group of ``imdb``, and the ``imdb-long-aux`` variant that trains it beside ``imdb`` as an auxiliary.

Install it with ``pip install -e examples/plugin``; its own tests (``tests/``) use ``lepton_bench.testing``."""

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lepton_bench.methods import WEIGHTINGS, Weighting
from lepton_bench.tasks import TASKS, TaskSpec, register_task
from lepton_bench.variants import Variant, register_variant


@dataclass
class InverseLossArgs:
    tau: float = 1.0   # exponent of the weights, w_t ~ L_t^-tau: 1 makes every weighted loss equal, 0 is EW


@WEIGHTINGS.register("inverse_loss")
class InverseLoss(Weighting):
    """Weights proportional to 1 / L_t^tau (detached), summing to T: at tau = 1 every task's weighted loss
    is equal, so no task dominates by the scale of its loss; tau = 0 is equal weighting."""

    Args = InverseLossArgs

    def combine(self, losses):
        L = torch.stack(list(losses.values()))
        inv = L.detach().clamp_min(1e-8) ** -self.args.tau
        return (len(L) * inv / inv.sum() * L).sum()


# A task with computed labels, in the input group of the core's imdb (the same reviews, no data copy):
# is a review longer than the median review of the training rows? The median comes from the rows the
# model trains on (after the validation hold-out), once, when the data is tensorized (and is cached with it).

def review_words(table: pa.Table) -> np.ndarray:
    """Words per review (split on whitespace)."""
    return pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))).to_numpy(zero_copy_only=False)


def median_words(train: pa.Table) -> dict:
    return {"median_words": float(np.median(review_words(train)))}


def longer_than_median(table: pa.Table, stats: dict) -> np.ndarray:
    return (review_words(table) > stats["median_words"]).astype(np.int64)


_IMDB = TASKS.get("imdb")
IMDB_LONG = register_task(TaskSpec(
    name="imdb_long", help="IMDB reviews: longer than the training median, 2 classes (computed labels)",
    dataset=_IMDB.dataset, input="text", output="class", columns=dict(_IMDB.columns), labels=("short", "long"),
    metrics=("accuracy", "macro_f1"), defaults=_IMDB.defaults, derived_from="imdb",
    compute_label=longer_than_median, label_stats=median_words,
    label_note="computed: whether the review has more words than the median review of the training rows"))

register_variant(Variant(
    "imdb-long-aux", "hard", "ew", tasks=("imdb", "imdb_long"), overrides={"auxiliary": ["imdb_long"]},
    help="IMDB sentiment with review length (computed labels) as an auxiliary task, one encoder pass"))
