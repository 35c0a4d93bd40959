"""Same-input tasks: input groups, derived-label tasks (their declaration checks and their labels on
real rows), and the tensors that the tasks of one group must share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lepton_bench import data as D
from lepton_bench.errors import ConfigError, DataError
from lepton_bench.tasks import IGNORE, TASKS, Dataset, group_tasks, input_group

from .conftest import SLICE_ROWS

CIFAR10, COARSE = TASKS.get("cifar10"), TASKS.get("cifar10_coarse")
CONLL, SPANS = TASKS.get("conll2003"), TASKS.get("conll2003_spans")
VEHICLES = {"airplane", "automobile", "ship", "truck"}


def load(task, root, **kw):
    spec = TASKS.get(task)
    return D.load_task(spec, spec.defaults, str(root), **kw)


def split_file(root, split):
    return next((root / "data").glob(f"{split}-*.parquet"))


# ---------------------------------------------------------------- groups

def test_input_groups_are_named_after_their_first_registered_task():
    for name in ("conll2003", "conll2003_pos", "conll2003_chunk", "conll2003_spans", "conll2003_pos_demo"):
        assert input_group(name) == "conll2003", name
    assert input_group("cifar10_coarse") == input_group("cifar10") == "cifar10"
    assert input_group("imdb") == "imdb"
    core = ("conll2003", "conll2003_pos", "conll2003_chunk", "conll2003_spans")
    assert group_tasks("conll2003")[:4] == core and "conll2003_pos_demo" in group_tasks("conll2003")
    assert group_tasks("conll2003_chunk") == group_tasks("conll2003")   # any member names its group
    assert group_tasks("cifar10_coarse") == ("cifar10", "cifar10_coarse")
    assert group_tasks("imdb")[0] == "imdb"   # the example plugin adds imdb_long to it
    with pytest.raises(ConfigError, match="unknown task 'conll2003_po'; did you mean"):
        input_group("conll2003_po")


def test_the_core_tasks_of_a_group_share_one_declared_default_and_split_the_same_way():
    for group in ("cifar10", "conll2003"):
        specs = [TASKS.get(t) for t in group_tasks(group) if TASKS.module(t) == "lepton_bench.tasks"]
        assert len(specs) > 1 and all(s.defaults is specs[0].defaults for s in specs), group
        assert len({(s.input, s.pretokenized, s.has_validation) for s in specs}) == 1
    new = ("conll2003_pos", "conll2003_chunk", "cifar10_coarse", "conll2003_spans")
    assert not any(TASKS.get(t).default_mtl for t in new)   # the default multi-task set stays the three


# ---------------------------------------------------------------- derived labels on real rows

def test_cifar10_coarse_labels_are_vehicle_or_animal_of_the_real_rows(data_dir):
    assert COARSE.labels == ("animal", "vehicle") and COARSE.derived_from == "cifar10"
    fine, coarse = load("cifar10", data_dir), load("cifar10_coarse", data_dir)
    test = pq.read_table(split_file(data_dir / "cifar10", "test")).column("label").to_pylist()
    expect = ["vehicle" if CIFAR10.labels[i] in VEHICLES else "animal" for i in test]   # no limit: file order
    assert [COARSE.labels[i] for i in coarse.splits["test"].tensors["y"].tolist()] == expect
    assert {"vehicle", "animal"} == set(expect)
    for split in ("train", "validation", "test"):   # the same rows: the fine label decides the coarse one
        y_fine, y_coarse = fine.splits[split].tensors["y"].tolist(), coarse.splits[split].tensors["y"].tolist()
        assert [COARSE.labels[c] for c in y_coarse] == \
            ["vehicle" if CIFAR10.labels[f] in VEHICLES else "animal" for f in y_fine]


def test_conll2003_spans_are_the_untyped_entities_of_the_real_rows(data_dir):
    from seqeval.metrics.sequence_labeling import get_entities

    assert SPANS.labels == ("O", "B-ENT", "I-ENT") and SPANS.derived_from == "conll2003"
    d = load("conll2003_spans", data_dir)
    ner = pq.read_table(split_file(data_dir / "conll2003", "test")).column("ner_tags").to_pylist()
    names = [[CONLL.labels[i] for i in s] for s in ner]
    expect = [["O" if t == "O" else t[:2] + "ENT" for t in s] for s in names]
    gold = d.splits["test"].gold
    assert [[SPANS.labels[i] for i in s] for s in gold] == expect
    assert any("B-ENT" in s for s in expect) and any("I-ENT" in s for s in expect)
    # IOB2 marks every entity's start, so untyping keeps each entity and its bounds
    assert [(a, b) for _, a, b in get_entities(expect)] == [(a, b) for _, a, b in get_entities(names)]
    y, lengths = d.splits["test"].tensors["y"], d.splits["test"].tensors["lengths"]
    assert [y[i, :n].tolist() for i, n in enumerate(lengths.tolist())] == gold   # nothing cut at 128
    assert set(y[y != IGNORE].tolist()) == {0, 1, 2}


def test_derive_labels_maps_every_token_and_keeps_rows():
    raw = D.RawSplit(pa.table({"tokens": [["a", "b", "c"], [], ["d"]], "ner_tags": [[3, 4, 0], [], [7]]}),
                     "mem", np.array([5, 6, 9]))
    out = D.derive_labels(SPANS, raw)
    assert out.table.column("ner_tags").to_pylist() == [[1, 2, 0], [], [1]]
    assert out.table.column("tokens").to_pylist() == raw.table.column("tokens").to_pylist()
    assert list(out.rows) == [5, 6, 9] and out.origin == "mem"
    assert D.derive_labels(CONLL, raw) is raw   # not derived: as it is
    sliced = D.RawSplit(raw.table.slice(1), "mem", raw.rows[1:])   # list offsets not starting at 0
    assert D.derive_labels(SPANS, sliced).table.column("ner_tags").to_pylist() == [[], [1]]
    classes = D.RawSplit(pa.table({"img": [b""] * 3, "label": [0, 9, 3]}), "mem", np.arange(3))
    assert D.derive_labels(COARSE, classes).table.column("label").to_pylist() == [1, 1, 0]


# ---------------------------------------------------------------- the tensors a group shares

@pytest.mark.parametrize("task", ["conll2003_pos", "conll2003_chunk", "conll2003_spans"])
def test_conll_group_tasks_share_inputs_with_conll2003(data_dir, task):
    a, b = load("conll2003", data_dir), load(task, data_dir)
    assert a.sizes() == b.sizes() == SLICE_ROWS and a.vocab_size == b.vocab_size
    for split in ("train", "validation", "test"):
        for k in ("ids", "lengths", "shape"):
            assert torch.equal(a.splits[split].tensors[k], b.splits[split].tensors[k]), (split, k)
        ya, yb = a.splits[split].tensors["y"], b.splits[split].tensors["y"]
        assert torch.equal(ya == IGNORE, yb == IGNORE)   # labels on the same positions


def test_cifar10_coarse_holds_out_the_same_rows_as_cifar10(data_dir):
    a, b = load("cifar10", data_dir, limit_train=100, limit_eval=12), load("cifar10_coarse", data_dir,
                                                                           limit_train=100, limit_eval=12)
    assert a.sizes() == b.sizes() == {"train": 100, "validation": 12, "test": 12}
    for split in ("train", "validation", "test"):
        assert torch.equal(a.splits[split].tensors["x"], b.splits[split].tensors["x"]), split


def test_a_derived_task_has_its_own_cache_entry_and_key(data_dir, tmp_path):
    keys = {t.name: D.cache_key(t, t.defaults, str(data_dir), 0, None, None) for t in (CONLL, SPANS)}
    assert keys["conll2003"] != keys["conll2003_spans"]
    other = dataclasses.replace(SPANS, label_map=(0, 1, 2, 1, 2, 1, 2, 0, 0))   # MISC left out: another key
    assert D.cache_key(other, other.defaults, str(data_dir), 0, None, None) != keys["conll2003_spans"]
    D.load_task(CONLL, CONLL.defaults, str(data_dir), cache_dir=tmp_path)
    spans = D.load_task(SPANS, SPANS.defaults, str(data_dir), cache_dir=tmp_path)
    again = D.load_task(SPANS, SPANS.defaults, str(data_dir), cache_dir=tmp_path)   # from the cache
    assert sorted(f.name.rsplit("-", 1)[0] for f in tmp_path.glob("*.pt")) == ["conll2003", "conll2003_spans"]
    assert again.splits["test"].gold == spans.splits["test"].gold
    assert max(max(s) for s in spans.splits["test"].gold) == 2


def test_a_derived_tasks_source_labels_are_checked_against_the_source(copy_task):
    root = copy_task("cifar10_coarse")
    path = split_file(root / "cifar10", "test")
    t = pq.read_table(path)
    labels = t.column("label").to_pylist()
    labels[4] = 10   # checked against cifar10's 10 labels, not against cifar10_coarse's 2
    i = t.schema.get_field_index("label")
    pq.write_table(t.set_column(i, t.schema.field(i), pa.array(labels, t.schema.field(i).type)), path)
    with pytest.raises(DataError) as e:
        load("cifar10_coarse", root)
    assert str(e.value) == (f"{path}: row 4: label value 10 out of range 0..9 "
                            f"(cifar10 has 10 labels, which cifar10_coarse maps)")
    labels[4] = 1   # in range for cifar10_coarse's own 2 labels too: passes, and maps to vehicle
    pq.write_table(t.set_column(i, t.schema.field(i), pa.array(labels, t.schema.field(i).type)), path)
    assert load("cifar10_coarse", root).splits["test"].tensors["y"][4].item() == 1


# ---------------------------------------------------------------- declaration checks

def derive(base=COARSE, **changes):
    return dataclasses.replace(base, name="derived_test", **changes)


def test_a_derived_task_declares_a_registered_source():
    with pytest.raises(ConfigError, match=r"task derived_test: derived_from: unknown task 'cifar1'; did you mean "
                                          r"cifar10.*register the source task before"):
        derive(derived_from="cifar1")
    with pytest.raises(ConfigError, match=r"task derived_test: a label_map \(or compute_label\) needs derived_from"):
        derive(derived_from=None)
    with pytest.raises(ConfigError, match=r"derived_from cifar10_coarse, itself derived from cifar10"):
        derive(derived_from="cifar10_coarse", label_map=(0, 1))
    with pytest.raises(ConfigError, match=r"derived_from must name a task, not TaskSpec\(name='cifar10'"):
        derive(derived_from=CIFAR10)


def test_a_label_map_has_one_own_label_per_source_label():
    with pytest.raises(ConfigError, match=r"task derived_test: label_map has 9 entries, cifar10 has 10 labels"):
        derive(label_map=COARSE.label_map[:-1])
    with pytest.raises(ConfigError, match=r"label_map has 0 entries, cifar10 has 10 labels"):
        derive(label_map=())
    with pytest.raises(ConfigError, match=r"label_map\[3\] \(for cifar10's 'cat'\) is 2, not a label id 0..1 "
                                          r"of derived_test"):
        derive(label_map=(1, 1, 0, 2, 0, 0, 0, 0, 1, 1))
    with pytest.raises(ConfigError, match=r"label_map\[0\] .* is -1, not a label id"):
        derive(label_map=(-1, 1, 0, 0, 0, 0, 0, 0, 1, 1))
    with pytest.raises(ConfigError, match=r"label_map\[0\] .* is 'vehicle', not a label id"):
        derive(label_map=("vehicle",) + COARSE.label_map[1:])
    with pytest.raises(ConfigError, match=r"no cifar10 label maps to vehicle: such a label could never be gold"):
        derive(label_map=(0,) * 10)
    assert derive(label_map=list(COARSE.label_map)).label_map == COARSE.label_map   # a list: kept as a tuple


@pytest.mark.parametrize("change, what", [
    ({"columns": {"input": "image", "label": "label"}}, r"columns\['input'\] is 'image', cifar10's is 'img'"),
    ({"columns": {"input": "img", "label": "fine_label"}}, r"columns\['label'\] is 'fine_label'"),
    ({"dataset": Dataset("uoft-cs/cifar100")}, "dataset is Dataset"),
    ({"has_validation": True}, "has_validation is True, cifar10's is False"),
    ({"pretokenized": True}, "pretokenized is True, cifar10's is False"),
    ({"input": "text"}, "input is 'text', cifar10's is 'image'"),
])
def test_a_derived_task_reads_its_sources_input(change, what):
    with pytest.raises(ConfigError, match=f"task derived_test: {what}.*must agree"):
        derive(**change)


def test_a_derived_task_of_another_output_kind_is_refused():
    with pytest.raises(ConfigError, match="output is 'class', conll2003's is 'tag'"):
        dataclasses.replace(COARSE, name="derived_test", derived_from="conll2003", dataset=CONLL.dataset,
                            input="text", columns=dict(CONLL.columns))   # checked before the map's length


# ---------------------------------------------------------------- computed labels

def _words(table):
    import pyarrow.compute as pc

    return pc.list_value_length(pc.utf8_split_whitespace(table.column("text"))).to_numpy(zero_copy_only=False)


def _median(train):
    return {"median": float(np.median(_words(train)))}


def _longer(table, stats):
    return _words(table) > stats["median"]


def computed(name="imdb_long_test", **kw):
    imdb = TASKS.get("imdb")
    fields = dict(name=name, help="longer than the training median", dataset=imdb.dataset, input="text",
                  output="class", columns=dict(imdb.columns), labels=("short", "long"), metrics=("accuracy",),
                  defaults=imdb.defaults, derived_from="imdb", compute_label=_longer, label_stats=_median)
    from lepton_bench.tasks import TaskSpec

    return TaskSpec(**{**fields, **kw})


def test_computed_labels_come_from_the_examples_and_the_training_rows_statistics(data_dir):
    spec = computed()
    data = D.load_task(spec, spec.defaults, str(data_dir))
    imdb = load("imdb", data_dir)
    for split, part in data.splits.items():   # the same rows as imdb's, in the same order
        torch.testing.assert_close(part.tensors["ids"], imdb.splits[split].tensors["ids"])
    assert set(data.label_stats) == {"median"} and data.label_stats["median"] > 10
    y = data.splits["train"].tensors["y"]
    assert 0.3 < float(y.float().mean()) < 0.7   # about half the training rows are above their median
    again = D.load_task(spec, spec.defaults, str(data_dir))   # from the cache: the stats with it
    assert again.label_stats == data.label_stats and torch.equal(again.splits["test"].tensors["y"],
                                                                 data.splits["test"].tensors["y"])
    other = dataclasses.replace(spec, compute_label=lambda t, s: np.zeros(t.num_rows, dtype=np.int64))
    assert D.cache_key(other, spec.defaults, str(data_dir), 0, None, None) != \
        D.cache_key(spec, spec.defaults, str(data_dir), 0, None, None)   # another function: another entry


def test_a_computed_label_out_of_range_or_of_the_wrong_shape_is_refused_in_one_line(data_dir):
    bad = computed("imdb_bad_range", compute_label=lambda t, s: np.full(t.num_rows, 2))
    with pytest.raises(DataError, match="row 0: imdb_bad_range's compute_label gave 2, out of range 0..1"):
        D.load_task(bad, bad.defaults, str(data_dir))
    short = computed("imdb_bad_shape", compute_label=lambda t, s: np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError, match="one integer label id per row"):
        D.load_task(short, short.defaults, str(data_dir))
    broken = computed("imdb_broken", label_stats=lambda t: {}, compute_label=lambda t, s: s["median"])
    with pytest.raises(DataError, match="imdb_broken's compute_label failed on the train split: KeyError"):
        D.load_task(broken, broken.defaults, str(data_dir))


def test_computed_labels_are_declared_whole():
    with pytest.raises(ConfigError, match="a label_map or a compute_label, not both"):
        computed(label_map=(0, 1))
    with pytest.raises(ConfigError, match="needs derived_from"):
        computed(derived_from=None)
    with pytest.raises(ConfigError, match="label_stats needs compute_label"):
        computed(compute_label=None)
    conll = TASKS.get("conll2003")
    with pytest.raises(ConfigError, match="computed labels are for classification tasks"):
        computed(dataset=conll.dataset, output="tag", columns=dict(conll.columns), metrics=("token_accuracy",),
                 pretokenized=True, has_validation=True, derived_from="conll2003", defaults=conll.defaults)
