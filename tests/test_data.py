"""Loading real slices, splits, the cache, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lepton_bench import data as D
from lepton_bench.errors import ConfigError, DataError
from lepton_bench.tasks import IGNORE, TASKS, Dataset

from .conftest import SHARED_DATA, SLICE_ROWS, write_slice


def load(task, root, **kw):
    spec = TASKS.get(task)
    return D.load_task(spec, spec.defaults, str(root), **kw)


def test_cifar10_slice(data_dir):
    d = load("cifar10", data_dir)
    n_val = round(0.1 * SLICE_ROWS["train"])
    assert d.sizes() == {"train": SLICE_ROWS["train"] - n_val, "validation": n_val, "test": SLICE_ROWS["test"]}
    x, y = d.splits["train"].tensors["x"], d.splits["train"].tensors["y"]
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32)
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < 10
    assert x.float().std() > 20   # real pixels, not zeros


def test_imdb_slice(data_dir):
    d = load("imdb", data_dir)
    tr = d.splits["train"].tensors
    assert tr["ids"].shape[1] == 256 and tr["ids"].dtype == torch.int64
    lengths = tr["lengths"]
    assert (lengths >= 1).all() and (lengths <= 256).all()
    # ids are non-pad exactly up to each length
    pos = torch.arange(256)[None]
    assert ((tr["ids"] != 0) == (pos < lengths[:, None])).all()
    assert set(tr["y"].tolist()) == {0, 1}
    assert d.truncated["train"] > 0   # some reviews are longer than 256 words


def test_conll_slice_keeps_its_own_validation(data_dir):
    d = load("conll2003", data_dir)
    assert d.sizes() == SLICE_ROWS
    s = d.splits["test"]
    lengths, y = s.tensors["lengths"], s.tensors["y"]
    assert [len(g) for g in s.gold] == lengths.tolist()   # nothing cut at max_len 128
    pos = torch.arange(y.shape[1])[None]
    assert ((y != IGNORE) == (pos < lengths[:, None])).all()
    assert ((s.tensors["shape"] > 0) == (pos < lengths[:, None])).all()
    assert d.num_shapes == D.NUM_SHAPES


def test_vocabulary_comes_from_train_only():
    spec = TASKS.get("conll2003")
    train = D.RawSplit(pa.table({"tokens": [["Paris", "is", "big"], ["is", "it"]],
                                 "ner_tags": [[5, 0, 0], [0, 0]]}), "mem", np.arange(2))
    test = D.RawSplit(pa.table({"tokens": [["Berlin", "is", "9"]], "ner_tags": [[5, 0, 0]]}), "mem",
                      np.arange(1))
    cfg = spec.defaults
    tok = D.build_tokenizer(spec, cfg, train)
    split, _ = D.tensorize_text(spec, cfg, test, tok, with_gold=True)
    ids = split.tensors["ids"][0, :3].tolist()
    assert ids[0] == D.UNK and ids[1] != D.UNK   # unseen 'berlin' -> <unk>, 'is' known
    assert split.tensors["shape"][0, :3].tolist() == [2, 1, 4]   # Title, lower, digit


def test_holdout_is_seeded_disjoint_and_fixed():
    spec = TASKS.get("imdb")
    raws = {"train": D.RawSplit(pa.table({"text": [str(i) for i in range(100)], "label": [0] * 100}),
                                "mem", np.arange(100)),
            "test": D.RawSplit(pa.table({"text": ["x"] * 10, "label": [0] * 10}), "mem", np.arange(10))}
    a = D.make_splits(spec, spec.defaults, raws, 0, None, None)
    b = D.make_splits(spec, spec.defaults, raws, 0, None, None)
    c = D.make_splits(spec, spec.defaults, raws, 1, None, None)
    val, train = set(a["validation"].rows), set(a["train"].rows)
    assert len(val) == 10 and not val & train and val | train == set(range(100))
    assert list(a["validation"].rows) == list(b["validation"].rows)
    assert list(a["validation"].rows) != list(c["validation"].rows)


def test_limits_take_a_seeded_subset_not_the_head():
    # the IMDB files list every negative review first: a head slice would be one class
    spec = TASKS.get("imdb")
    labels = [0] * 500 + [1] * 500
    raws = {"train": D.RawSplit(pa.table({"text": ["w"] * 1000, "label": labels}), "mem", np.arange(1000)),
            "test": D.RawSplit(pa.table({"text": ["w"] * 1000, "label": labels}), "mem", np.arange(1000))}
    out = D.make_splits(spec, spec.defaults, raws, 0, 64, 32)
    assert out["train"].table.num_rows == 64 and out["test"].table.num_rows == 32
    assert set(out["train"].table.column("label").to_pylist()) == {0, 1}


def test_second_load_comes_from_the_cache(data_dir, monkeypatch):
    load("conll2003", data_dir)
    monkeypatch.setattr(D, "read_source", lambda *a: pytest.fail("cache missed"))
    assert load("conll2003", data_dir).sizes() == SLICE_ROWS


def test_cache_follows_paths_and_contents_not_folder_names(tmp_path):
    """The datasets cache trap: two folders named 'imdb' must not share a cache entry."""
    small = write_slice(SHARED_DATA / "imdb", tmp_path / "a" / "imdb", {"train": 40, "test": 20})
    big = write_slice(SHARED_DATA / "imdb", tmp_path / "b" / "imdb", {"train": 80, "test": 30})
    assert load("imdb", small.parent).sizes()["test"] == 20
    assert load("imdb", big.parent).sizes()["test"] == 30
    write_slice(SHARED_DATA / "imdb", small, {"train": 40, "test": 25}, seed=1)   # rewritten in place
    assert load("imdb", small.parent).sizes()["test"] == 25


def test_torn_cache_file_is_rebuilt(data_dir, tmp_path):
    d1 = load("imdb", data_dir, cache_dir=tmp_path)
    for f in tmp_path.glob("imdb-*.pt"):
        f.write_bytes(b"torn")
    d2 = load("imdb", data_dir, cache_dir=tmp_path)
    assert torch.equal(d1.splits["test"].tensors["ids"], d2.splits["test"].tensors["ids"])


# ---------------------------------------------------------------- bad input

def edit(root, task, split, fn):
    """Rewrite one split's parquet file through ``fn(table) -> table``."""
    path = next((root / task / "data").glob(f"{split}-*.parquet"))
    pq.write_table(fn(pq.read_table(path)), path)
    return path


def set_cell(table, column, row, value):
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i), pa.array(values, type=table.schema.field(i).type))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"cifar10: no folder .*cifar10 \(expected .*train-00000"):
        load("cifar10", tmp_path)


def test_two_tasks_of_one_dataset_read_one_folder_into_their_own_cache_entries(data_dir, tmp_path):
    """conll2003 (NER) and the test plugin's POS task read the one conll2003 folder, each its columns."""
    ner, pos = TASKS.get("conll2003"), TASKS.get("conll2003_pos_demo")
    assert D.local_files(data_dir, ner) == D.local_files(data_dir, pos)
    assert D.fingerprint(ner, str(data_dir)) == D.fingerprint(pos, str(data_dir))
    assert D.fingerprint(pos, None) == {"hub": "eriktks/conll2003", "config": "conll2003",
                                        "revision": "refs/convert/parquet"}
    keys = {D.cache_key(t, t.defaults, str(data_dir), 0, None, None) for t in (ner, pos)}
    assert len(keys) == 2
    d_pos = D.load_task(pos, pos.defaults, str(data_dir), cache_dir=tmp_path)
    d_ner = D.load_task(ner, ner.defaults, str(data_dir), cache_dir=tmp_path)
    assert sorted(f.name.rsplit("-", 1)[0] for f in tmp_path.glob("*.pt")) == ["conll2003", "conll2003_pos_demo"]
    assert d_pos.sizes() == d_ner.sizes() == SLICE_ROWS
    test = pq.read_table(data_dir / "conll2003" / "data" / "test-00000-of-00001.parquet")
    assert d_pos.splits["test"].gold == test.column("pos_tags").to_pylist()   # no limit: file order
    assert d_ner.splits["test"].gold == test.column("ner_tags").to_pylist()
    y = d_pos.splits["train"].tensors["y"]
    assert y[y != IGNORE].max() > 8   # POS ids go past NER's 9 tags, and check_split let them through
    assert torch.equal(d_pos.splits["train"].tensors["ids"], d_ner.splits["train"].tensors["ids"])


def test_a_task_reads_its_datasets_folder_not_its_own_name(data_dir, tmp_path):
    import dataclasses

    spec = dataclasses.replace(TASKS.get("imdb"), name="imdb_renamed_test")   # declared, not registered
    assert D.local_files(data_dir, spec) == D.local_files(data_dir, TASKS.get("imdb"))
    other = dataclasses.replace(spec, dataset=Dataset("stanfordnlp/imdb", "plain_text", folder="reviews"))
    with pytest.raises(DataError, match=r"imdb_renamed_test: no folder .*reviews \(expected .*reviews/data/train-"):
        D.local_files(data_dir, other)
    with pytest.raises(DataError, match=r"conll2003_pos_demo: no folder .*conll2003 \(expected .*load "
                                        r"eriktks/conll2003 from the Hub"):
        D.local_files(tmp_path, TASKS.get("conll2003_pos_demo"))


def test_missing_split_file(copy_task):
    root = copy_task("imdb")
    next((root / "imdb" / "data").glob("test-*")).unlink()
    with pytest.raises(DataError, match="no test parquet file"):
        load("imdb", root)


def test_corrupt_parquet(copy_task):
    root = copy_task("imdb")
    path = next((root / "imdb" / "data").glob("train-*"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train-00000-of-00001.parquet: not a readable parquet file"):
        load("imdb", root)


def test_missing_column(copy_task):
    root = copy_task("imdb")
    edit(root, "imdb", "test", lambda t: t.rename_columns(["review", "label"]))
    with pytest.raises(DataError, match=r"test-00000-of-00001.parquet: missing column 'text'.*are review, label"):
        load("imdb", root)


def test_empty_split(copy_task):
    root = copy_task("conll2003")
    edit(root, "conll2003", "validation", lambda t: t.slice(0, 0))
    with pytest.raises(DataError, match="the validation split of conll2003 is empty"):
        load("conll2003", root)


def test_label_out_of_range(copy_task):
    root = copy_task("cifar10")
    edit(root, "cifar10", "test", lambda t: set_cell(t, "label", 5, 12))
    with pytest.raises(DataError, match=r"test-00000-of-00001.parquet: row 5: label value 12 out of range 0..9"):
        load("cifar10", root)


def test_missing_label(copy_task):
    root = copy_task("imdb")
    edit(root, "imdb", "train", lambda t: set_cell(t, "label", 3, None))
    with pytest.raises(DataError, match="row 3: 'label' is missing"):
        load("imdb", root)


def test_tokens_and_tags_of_different_lengths(copy_task):
    root = copy_task("conll2003")
    edit(root, "conll2003", "train",
         lambda t: set_cell(t, "ner_tags", 3, t.column("ner_tags")[3].as_py()[:-1]))
    with pytest.raises(DataError, match=r"train-00000-of-00001.parquet: row 3: (\d+) tokens but \d+ ner_tags tags"):
        load("conll2003", root)


def test_tag_out_of_range_names_its_row(copy_task):
    root = copy_task("conll2003")
    edit(root, "conll2003", "test",
         lambda t: set_cell(t, "ner_tags", 7, [9] * len(t.column("ner_tags")[7].as_py())))
    with pytest.raises(DataError, match=r"row 7: ner_tags value 9 out of range 0..8"):
        load("conll2003", root)


def test_corrupt_image_names_its_row(copy_task):
    root = copy_task("cifar10")

    def corrupt(t):
        imgs = t.column("img").to_pylist()
        imgs[2] = {"bytes": b"not a png", "path": None}
        return t.set_column(t.schema.get_field_index("img"), "img", pa.array(imgs, type=t.schema.field("img").type))

    edit(root, "cifar10", "test", corrupt)
    with pytest.raises(DataError, match=r"test-00000-of-00001.parquet: row 2: cannot decode image"):
        load("cifar10", root)


def test_a_failed_load_leaves_no_cache_entry(copy_task, tmp_path):
    root = copy_task("cifar10")
    edit(root, "cifar10", "test", lambda t: set_cell(t, "label", 0, -1))
    with pytest.raises(DataError, match="row 0"):
        load("cifar10", root, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


# ---------------------------------------------------------------- batches

def test_train_stream_is_seeded_and_counts_examples(data_dir):
    split = load("imdb", data_dir).splits["train"]
    a = D.TrainStream(split, 8, seed=3, device=torch.device("cpu"))
    b = D.TrainStream(split, 8, seed=3, device=torch.device("cpu"))
    for _ in range(40):   # past an epoch boundary
        x, y = next(a), next(b)
        assert torch.equal(x["ids"], y["ids"])
        # cut to the longest example of the batch, which is never padding only
        assert (x["ids"][:, -1] != 0).any() and x["ids"].shape[1] == int(x["lengths"].max())
    assert a.examples == 40 * 8 and a.epoch >= 2
    c = D.TrainStream(split, 8, seed=4, device=torch.device("cpu"))
    d = D.TrainStream(split, 8, seed=3, device=torch.device("cpu"))
    assert not torch.equal(next(c)["ids"][:, :8], next(d)["ids"][:, :8])


def test_augmentation_crops_and_flips_on_the_device():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32).to(torch.uint8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    out = D.augment_images(x, g1)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, D.augment_images(x, g2))
    ident = D.augment_images(x, torch.Generator().manual_seed(0), pad=0)
    # with no padding the crop is the identity, so each image is itself or its mirror
    for i in range(2):
        assert torch.equal(ident[i], x[i]) or torch.equal(ident[i], x[i].flip(-1))


def test_eval_batches_cover_every_example_once(data_dir):
    split = load("conll2003", data_dir).splits["validation"]
    seen = torch.cat([idx for idx, _ in D.eval_batches(split, 10, torch.device("cpu"))])
    assert sorted(seen.tolist()) == list(range(len(split)))


def test_head_tail_truncation_keeps_both_ends():
    assert D.clip(list(range(10)), 4, "head_tail") == [0, 1, 8, 9]
    assert D.clip(list(range(10)), 5, "head_tail") == [0, 1, 7, 8, 9]
    assert D.clip(list(range(10)), 4, "head") == [0, 1, 2, 3]
    assert D.clip([1, 2], 4, "head_tail") == [1, 2]
    with pytest.raises(ConfigError, match="unknown truncation"):
        D.clip(list(range(10)), 4, "middle")


def test_hub_path_reads_the_hub_dataset(data_dir, monkeypatch):
    """Without --data-dir the Hub id is loaded through datasets (stubbed here: no network)."""
    import datasets

    calls, real_load = [], datasets.load_dataset

    def fake_load(path, name=None, revision=None, **kw):
        calls.append((path, name, revision))
        files = {s: str(next((data_dir / "conll2003" / "data").glob(f"{s}-*"))) for s in SLICE_ROWS}
        return real_load("parquet", data_files=files)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    spec = TASKS.get("conll2003")
    d = D.load_task(spec, spec.defaults, None)
    assert calls == [("eriktks/conll2003", "conll2003", "refs/convert/parquet")]
    assert d.sizes() == SLICE_ROWS and d.source == "eriktks/conll2003[train]"


def test_unreachable_hub_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'uoft-cs/cifar10' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    spec = TASKS.get("cifar10")
    with pytest.raises(DataError, match=r"cannot load uoft-cs/cifar10 from the Hub .* pass --data-dir"):
        D.load_task(spec, spec.defaults, None)


def test_characters_of_given_words_keep_their_case(data_dir):
    """model.char_dim's data: each word's characters (first MAX_WORD_CHARS), only where words are given."""
    spec = TASKS.get("conll2003")
    plain = load("conll2003", data_dir)
    d = load("conll2003", data_dir, chars=True)
    assert "chars" not in plain.splits["train"].tensors and plain.num_chars == 0
    chars = d.splits["test"].tensors["chars"]
    assert chars.dtype == torch.int16 and chars.shape[1:] == (spec.defaults.max_len, D.MAX_WORD_CHARS)
    vocab = D.build_char_vocab(spec, D.RawSplit(pq.read_table(data_dir / "conll2003" / "data" /
                                                              "train-00000-of-00001.parquet"), "", np.arange(1)))
    assert d.num_chars == len(vocab) + 2
    test = pq.read_table(data_dir / "conll2003" / "data" / "test-00000-of-00001.parquet")
    word = test.column("tokens")[0].as_py()[0]   # no limit: rows keep their file order
    expect = [vocab.get(c, D.UNK) for c in word[: D.MAX_WORD_CHARS]]
    assert chars[0, 0, : len(expect)].tolist() == expect and chars[0, 0, len(expect):].eq(0).all()
    assert "chars" not in load("imdb", data_dir, chars=True).splits["train"].tensors   # free text: none


# ---------------------------------------------------------------- missing inputs, short messages

@pytest.mark.parametrize("task, split, column, row, value, message", [
    ("imdb", "test", "text", 4, None, "row 4: 'text' is missing"),                 # a review without text
    ("conll2003", "validation", "tokens", 6, None, "row 6: 'tokens' is missing"),  # a sentence without words
    ("conll2003", "train", "tokens", 2, "drop_last_word", "row 2: a word of 'tokens' is missing"),
])
def test_a_missing_input_names_its_file_row_and_column(copy_task, task, split, column, row, value, message):
    root = copy_task(task)

    def change(t):
        cell = [*t.column(column)[row].as_py()[:-1], None] if value == "drop_last_word" else value
        return set_cell(t, column, row, cell)

    path = edit(root, task, split, change)
    with pytest.raises(DataError) as e:
        load(task, root)
    assert str(e.value) == f"{path}: {message}"


# ---------------------------------------------------------------- the other columns of CoNLL-2003

def drop_last(t, column, row):
    return set_cell(t, column, row, t.column(column)[row].as_py()[:-1])


@pytest.mark.parametrize("task, split, change, message", [
    ("conll2003_pos", "test", lambda t: t.drop_columns(["pos_tags"]),
     "missing column 'pos_tags' (label of conll2003_pos); columns are id, tokens, chunk_tags, ner_tags"),
    ("conll2003_chunk", "validation", lambda t: drop_last(t, "chunk_tags", 5),
     "row 5: {n} tokens but {m} chunk_tags tags"),
    ("conll2003_pos", "train", lambda t: set_cell(t, "pos_tags", 9, [47] * len(t.column("pos_tags")[9].as_py())),
     "row 9: pos_tags value 47 out of range 0..46 (conll2003_pos has 47 labels)"),
    ("conll2003_chunk", "test", lambda t: set_cell(t, "chunk_tags", 2, [-1] * len(t.column("chunk_tags")[2].as_py())),
     "row 2: chunk_tags value -1 out of range 0..22 (conll2003_chunk has 23 labels)"),
    ("conll2003_spans", "train", lambda t: drop_last(t, "ner_tags", 0), "row 0: {n} tokens but {m} ner_tags tags"),
    ("conll2003_spans", "test", lambda t: set_cell(t, "ner_tags", 3, [9] * len(t.column("ner_tags")[3].as_py())),
     "row 3: ner_tags value 9 out of range 0..8 (conll2003 has 9 labels, which conll2003_spans maps)"),
])
def test_bad_columns_of_group_tasks_name_file_row_and_column(copy_task, task, split, change, message):
    """Each task of the CoNLL-2003 group checks its own label column: one line, the file, row and column."""
    root = copy_task(task)
    path = edit(root, "conll2003", split, change)
    t = pq.read_table(path)
    row = int(message.split(":")[0].split()[1]) if message.startswith("row") else 0
    n = len(t.column("tokens")[row].as_py())
    with pytest.raises(DataError) as e:
        load(task, root)
    assert str(e.value) == f"{path}: {message.format(n=n, m=n - 1)}" and "\n" not in str(e.value)
    load("conll2003" if task != "conll2003_spans" else "conll2003_pos", root)   # other columns: fine


def test_an_unreadable_parquet_file_is_one_short_line_naming_the_file_once(copy_task):
    root = copy_task("imdb")
    path = next((root / "imdb" / "data").glob("test-*"))
    path.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError) as e:
        load("imdb", root)
    msg = str(e.value)
    assert msg.startswith(f"{path}: not a readable parquet file (ArrowInvalid: ")
    assert msg.count(str(path)) == 1 and len(msg) < 300 and "\n" not in msg, msg


# ---------------------------------------------------------------- label columns of a wrong type

@pytest.mark.parametrize("task, column, change, kind, shown", [
    ("conll2003_pos", "pos_tags", lambda c: [[f"T{v}" for v in row] for row in c], "lists of strings", "'T"),
    ("conll2003_chunk", "chunk_tags", lambda c: [[float(v) for v in row] for row in c], "lists of floats", ""),
    ("conll2003", "ner_tags", lambda c: [[[v] for v in row] for row in c], "lists of lists of integers", "["),
    ("conll2003_pos", "pos_tags", lambda c: [" ".join(map(str, row)) for row in c], "strings", "'"),
])
def test_a_tag_column_of_the_wrong_type_is_one_line_naming_file_row_and_column(copy_task, task, column, change,
                                                                               kind, shown):
    root = copy_task(task)
    path = edit(root, "conll2003", "train",
                lambda t: t.set_column(t.schema.get_field_index(column), column,
                                       pa.array(change(t.column(column).to_pylist()))))
    with pytest.raises(DataError) as e:
        load(task, root)
    msg = str(e.value)
    assert msg.startswith(f"{path}: row 0: {column} value {shown}") and "\n" not in msg, msg
    assert msg.endswith(f"is not a label id (an integer 0..{TASKS.get(task).num_labels - 1}, one per token): "
                        f"the column holds {kind}"), msg


@pytest.mark.parametrize("values, kind", [(lambda c: [f"c{v}" for v in c], "strings"),
                                          (lambda c: [float(v) for v in c], "floats")])
def test_a_class_label_column_of_the_wrong_type_is_refused_the_same_way(copy_task, values, kind):
    root = copy_task("imdb")
    path = edit(root, "imdb", "test", lambda t: t.set_column(t.schema.get_field_index("label"), "label",
                                                             pa.array(values(t.column("label").to_pylist()))))
    with pytest.raises(DataError) as e:
        load("imdb", root)
    assert str(e.value).startswith(f"{path}: row 0: label value ") and str(e.value).endswith(
        f"is not a label id (an integer 0..1): the column holds {kind}")
