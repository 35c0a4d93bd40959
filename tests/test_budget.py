"""The label budget: a task trains on a nested, seeded subset of its train labels while the other tasks of its
input group keep theirs; STL and group runs at a budget train on the same rows; bad budgets are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lepton_bench.run.setup as run_setup
from lepton_bench.config import RunConfig, TaskConfig
from lepton_bench.data import cache_key, labelled_rows
from lepton_bench.errors import ConfigError
from lepton_bench.run.setup import next_batches, prepare, task_losses
from lepton_bench.run.train import run
from lepton_bench.tasks import IGNORE, TASKS

from .test_groups import Calls, tiny

NER, POS, CHUNK = "conll2003", "conll2003_pos", "conll2003_chunk"
BATCH = [f"tasks.{t}.batch_size=8" for t in (NER, POS, CHUNK)]


def budget(variant, data_dir, tasks=None, ner=None, extra=(), **kw):
    """A tiny config with NER at ``ner`` (a ``tasks.conll2003.*`` assignment) and batches of 8."""
    task_list = tasks or ([NER] if variant.startswith("stl") else [NER, POS])
    sets = [f"tasks.{t}.batch_size=8" for t in task_list]
    return tiny(variant, data_dir, task_list, extra=[*sets, *([f"tasks.{NER}.{ner}"] if ner else []), *extra], **kw)


def test_subsets_are_nested_across_budgets_and_drawn_by_their_own_seed():
    n = 1000
    rows = {f: labelled_rows(NER, TaskConfig(batch_size=8, train_fraction=f), n) for f in (0.02, 0.05, 0.1, 0.25)}
    assert [len(rows[f]) for f in rows] == [20, 50, 100, 250]
    for small, large in zip(list(rows.values()), list(rows.values())[1:], strict=False):
        assert set(small.tolist()) < set(large.tolist())
    assert labelled_rows(NER, TaskConfig(train_fraction=1.0), n) is None                 # every row
    assert labelled_rows(NER, TaskConfig(batch_size=8, train_count=50), n).tolist() == rows[0.05].tolist()
    other = labelled_rows(NER, TaskConfig(batch_size=8, train_fraction=0.05, label_seed=1), n)
    assert other.tolist() != rows[0.05].tolist()


def test_stl_and_group_runs_at_a_budget_train_on_the_same_labelled_rows(data_dir):
    """STL NER at 25% draws, step by step, exactly the rows the NER + POS group gives NER at 25%; POS in the
    group draws what STL POS draws on every row; the rows are those of the budget."""
    stl = prepare(budget("stl-conll2003", data_dir, ner="train_fraction=0.25"))
    group = prepare(budget("hard-ew", data_dir, ner="train_fraction=0.25"))
    pos = prepare(budget("stl-conll2003_pos", data_dir, tasks=[POS]))
    subset = set(stl.data[NER].splits["train"].labelled.tolist())
    assert len(subset) == round(0.25 * len(stl.data[NER].splits["train"]))
    assert group.data[NER].splits["train"].labelled.tolist() == sorted(subset)
    g = group.group_of[NER]
    for step in range(1, 13):   # past one epoch of the 40 labelled rows (5 batches)
        next_batches(stl, step), next_batches(group, step), next_batches(pos, step)
        ner_rows = stl.streams[g].drawn[NER]
        assert torch.equal(group.streams[g].drawn[NER], ner_rows)
        assert set(ner_rows.tolist()) <= subset and len(ner_rows) == 8
        assert torch.equal(group.streams[g].drawn[POS], pos.streams[g].drawn[POS])
    assert stl.streams[g].examples_of(NER) == group.streams[g].examples_of(NER) == 12 * 8


def test_each_head_loss_covers_only_its_own_labelled_rows_and_the_encoder_runs_once(data_dir):
    s = prepare(budget("hard-ew", data_dir, ner="train_fraction=0.25"))
    g = s.group_of[NER]
    batches = next_batches(s, 1)
    rows = s.streams[g].drawn
    union = torch.unique(torch.cat([rows[NER], rows[POS]]))
    assert len(batches[NER]["y"]) == len(union) > 8   # one batch over the rows both tasks' batches use
    for t in (NER, POS):
        own = batches[t]["own"]
        assert own.sum() == 8 and torch.equal(union[own], rows[t].sort().values)
        labelled_rows_of_y = (batches[t]["y"] != IGNORE).any(dim=1)
        assert not labelled_rows_of_y[~own].any()     # no label outside the task's own rows
    # the task's loss is its loss on its own rows alone (the same inputs, the other rows cut away)
    s.model.eval()
    losses = task_losses(s, batches)
    for t in (NER, POS):
        own = batches[t]["own"]
        alone = {k: v[own] for k, v in batches[t].items() if k not in ("own", "host_lengths")}
        alone["host_lengths"] = batches[t]["host_lengths"][own]
        L = int(alone["host_lengths"].max())
        alone = {k: (v[:, :L] if v.dim() >= 2 and k != "host_lengths" else v) for k, v in alone.items()}
        assert torch.allclose(losses[t], task_losses(s, {t: alone})[t], atol=1e-5), t
    calls = Calls()
    rec = run(budget("hard-ew", data_dir, ner="train_fraction=0.25"), calls)
    assert calls.calls == {f"stems.{g}": 4, "trunks.shared": 4}   # one encoder pass per step for both tasks
    assert rec["status"] == "ok"
    n_train = rec["data"][NER]["sizes"]["train"]
    assert rec["data"][NER]["labelled_train"] == rec["cost"]["tasks"][NER]["train_examples"] == round(0.25 * n_train)
    assert "labelled_train" not in rec["data"][POS] and rec["cost"]["tasks"][POS]["train_examples"] == n_train
    assert rec["cost"]["tasks"][NER]["examples_seen"] == rec["cost"]["tasks"][POS]["examples_seen"] == 4 * 8


def test_validation_and_test_stay_complete(data_dir):
    full, scarce = (prepare(budget("stl-conll2003", data_dir, ner=b)) for b in (None, "train_fraction=0.25"))
    for split in ("validation", "test"):
        a, b = full.eval_data[NER].splits[split], scarce.eval_data[NER].splits[split]
        assert len(a) == len(b) and all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


@pytest.mark.parametrize("setting, said", [
    ("train_fraction=0", "tasks.conll2003.train_fraction must be in (0, 1], not 0"),
    ("train_fraction=1.5", "tasks.conll2003.train_fraction must be in (0, 1], not 1.5"),
    ("train_count=100000", "tasks.conll2003.train_count=100000 is more than the 160 rows of its train split"),
    ("train_count=5", "tasks.conll2003.train_count=5 leaves 5 labelled train rows of 160, fewer than one batch of 8"),
    ("train_fraction=0.01", "tasks.conll2003.train_fraction=0.01 leaves 2 labelled train rows of 160, fewer than "
                            "one batch of 8"),
    ("train_count=-1", "tasks.conll2003.train_count must be a number of rows"),
])
def test_bad_budgets_are_refused_in_one_line_before_any_data_loads(data_dir, monkeypatch, setting, said):
    def no_load(*a, **k):
        raise AssertionError("data loaded before the budget was checked")

    monkeypatch.setattr(run_setup, "load_task", no_load)
    with pytest.raises(ConfigError) as e:
        prepare(budget("hard-ew", data_dir, ner=setting))
    assert said in str(e.value) and "\n" not in str(e.value)


def test_fraction_and_count_together_are_refused(data_dir):
    with pytest.raises(ConfigError, match="set train_fraction or train_count, not both"):
        prepare(budget("stl-conll2003", data_dir, ner="train_fraction=0.5", extra=[f"tasks.{NER}.train_count=40"]))


def test_a_budget_enters_the_run_id_and_cache_key_but_the_defaults_leave_both_as_they_were(data_dir):
    cfg = budget("stl-conll2003", data_dir)
    scarce = budget("stl-conll2003", data_dir, ner="train_fraction=0.25")
    assert "train_fraction" not in cfg.identity()["tasks"][NER]   # committed records' run ids stay
    assert cfg.config_hash() != scarce.config_hash()
    spec = TASKS.get(NER)
    keys = {c.tasks[NER].train_fraction: cache_key(spec, c.tasks[NER], str(data_dir), 0, None, 24)
            for c in (cfg, scarce)}
    assert len(set(keys.values())) == 2
    # the key of an unbudgeted task is the one it had before the budget fields existed
    plain = {**{k: v for k, v in vars(cfg.tasks[NER]).items()
                if k not in ("train_fraction", "train_count", "label_seed")}}
    from lepton_bench.config import data_settings
    assert set(data_settings(cfg.tasks[NER])) == {k for k in plain if k in (
        "max_len", "truncate", "vocab_size", "min_freq", "holdout_frac", "holdout_max")}


def test_every_task_of_a_group_at_one_budget_shares_one_stream(data_dir):
    sets = [f"tasks.{t}.train_fraction=0.5" for t in (NER, POS)]
    s = prepare(budget("hard-ew", data_dir, extra=sets))
    g = s.group_of[NER]
    assert len(s.streams[g].sets) == 1
    batches = next_batches(s, 1)
    assert len(batches[NER]["y"]) == 8 and "own" not in batches[NER]
    assert torch.equal(s.streams[g].drawn[NER], s.streams[g].drawn[POS])


def test_run_config_defaults_have_no_budget():
    cfg = RunConfig(tasks={NER: TaskConfig()})
    assert np.isclose(cfg.tasks[NER].train_fraction, 1.0) and cfg.tasks[NER].train_count == 0


def test_without_a_budget_a_split_smaller_than_a_batch_is_still_one_batch():
    assert labelled_rows(NER, TaskConfig(batch_size=64), 24) is None
    assert labelled_rows(NER, TaskConfig(batch_size=64, train_count=24), 24) is None   # every row: no budget
