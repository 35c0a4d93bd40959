"""The plugin's own tests: the project's contract checks (``lepton_bench.testing``) and its own known
answers. Run them from this folder: ``python -m pytest tests`` (the real-data test needs LEPTON_BENCH_DATA,
a folder of the datasets' offline mirrors, e.g. lepton_bench's ../shared/data)."""

import os

import lepton_bench_example_plugin  # noqa: F401  (registers inverse_loss; installed, the entry point does too)
import pytest
import torch

from lepton_bench.errors import ConfigError
from lepton_bench.methods import WEIGHTINGS, resolve_args
from lepton_bench.testing import check_task, check_variant, check_weighting


def test_inverse_loss_keeps_the_method_contract():
    check_weighting("inverse_loss")


def test_weights_by_hand():
    """L = (1, 4), tau = 1: w ~ (1, 1/4), times T / sum = 2 / 1.25: (1.6, 0.4); each weighted loss 1.6."""
    w = WEIGHTINGS.get("inverse_loss")(["a", "b"], resolve_args("inverse_loss", {"tau": 1.0}))
    L = {"a": torch.tensor(1.0), "b": torch.tensor(4.0)}
    assert w.combine(L).item() == pytest.approx(1.6 + 1.6)
    flat = WEIGHTINGS.get("inverse_loss")(["a", "b"], resolve_args("inverse_loss", {"tau": 0}))
    assert flat.combine(L).item() == pytest.approx(5.0)   # tau = 0: the plain sum


def test_its_setting_is_declared_and_an_unknown_one_is_refused():
    assert resolve_args("inverse_loss", {"tau": "0.5"}).tau == 0.5
    with pytest.raises(ConfigError, match="its settings: tau"):
        resolve_args("inverse_loss", {"temp": 0.5})


@pytest.mark.skipif(not os.environ.get("LEPTON_BENCH_DATA"), reason="needs LEPTON_BENCH_DATA (offline mirrors)")
def test_hard_inverse_loss_trains_on_real_data_and_records_its_setting():
    rec = check_variant("hard-inverse_loss", os.environ["LEPTON_BENCH_DATA"], steps=2,
                        tasks=["imdb", "conll2003"], overrides=["weighting_args.tau=0.5"])
    assert rec["config"]["weighting_args"] == {"tau": 0.5}


def test_imdb_long_is_a_task_of_imdbs_input_group():
    from lepton_bench.tasks import input_group

    assert input_group("imdb_long") == input_group("imdb") == "imdb"
    check_task("imdb_long")


def test_the_computed_labels_by_hand():
    import pyarrow as pa
    from lepton_bench_example_plugin import longer_than_median, median_words

    train = pa.table({"text": ["a b c", "a", "a b c d e"], "label": [0, 1, 0]})
    stats = median_words(train)
    assert stats == {"median_words": 3.0}
    assert longer_than_median(pa.table({"text": ["a b c d", "a b c", "x"]}), stats).tolist() == [1, 0, 0]


@pytest.mark.skipif(not os.environ.get("LEPTON_BENCH_DATA"), reason="needs LEPTON_BENCH_DATA (offline mirrors)")
def test_imdb_with_review_length_trains_in_one_group_with_no_data_copy():
    rec = check_variant("imdb-long-aux", os.environ["LEPTON_BENCH_DATA"], steps=2)
    tasks = rec["cost"]["tasks"]
    assert tasks["imdb"]["group"] == tasks["imdb_long"]["group"] == "imdb"   # one encoder pass for both
    assert rec["data"]["imdb_long"]["label_stats"]["median_words"] > 0      # the training rows' median, recorded
    assert tuple(rec["config"]["auxiliary"]) == ("imdb_long",)
