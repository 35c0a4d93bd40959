"""Pretrained encoders as stems: sub-word alignment, the tiny offline hf:/timm: models, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pytest
import torch

from lepton_bench import data as D
from lepton_bench.cli import main
from lepton_bench.config import TaskConfig
from lepton_bench.errors import ConfigError
from lepton_bench.models.stems import hf_tokenizer, resolve_stem, timm_stem
from lepton_bench.run.evaluation import evaluate
from lepton_bench.run.train import task_reads
from lepton_bench.tasks import IGNORE, TASKS
from lepton_bench.variants import make_config

X = IGNORE


@pytest.mark.parametrize("word_ids, tags, labels", [
    ([None, 0, 1, 1, 2, 3, None], [3, 0, 7, 0], [X, 3, 0, X, 7, 0, X]),   # "rejects" -> reject ##s
    ([None, 0, 0, 0, None], [1], [X, 1, X, X, X]),                          # one word, three pieces
    ([None, 0, 1, None], [1, 2, 0], [X, 1, 2, X]),                          # cut: the last word is gone
    ([None, None], [], [X, X]),                                             # an empty sentence
])
def test_first_subtoken_labels_hand_made(word_ids, tags, labels):
    assert D.first_subtoken_labels(word_ids, tags) == labels


def conll_rows(*sentences):
    words = [w for w, _ in sentences]
    return D.RawSplit(pa.table({"tokens": words, "ner_tags": [t for _, t in sentences]}), "mem",
                      np.arange(len(words)))


def test_conll_words_become_subwords_with_tags_on_first_pieces(tiny_bert):
    spec = TASKS.get("conll2003")
    _, tok = hf_tokenizer(str(tiny_bert))
    raw = conll_rows((["EU", "rejects", "German", "call", "."], [3, 0, 7, 0, 0]),
                     (["EU", " ", "lamb"], [3, 0, 0]))   # a word of whitespace has no sub-token
    split, cut = D.tensorize_subwords(spec, TaskConfig(max_len=12), raw, tok, with_gold=True)
    ids, y, lengths = (split.tensors[k] for k in ("ids", "y", "lengths"))
    pieces = tok.convert_ids_to_tokens(ids[0, : lengths[0]].tolist())
    assert pieces == ["[CLS]", "EU", "reject", "##s", "German", "call", ".", "[SEP]"]
    assert y[0, : lengths[0]].tolist() == [X, 3, 0, X, 7, 0, 0, X]
    assert tok.convert_ids_to_tokens(ids[1, : lengths[1]].tolist()) == ["[CLS]", "EU", "[UNK]", "lamb", "[SEP]"]
    assert y[1, : lengths[1]].tolist() == [X, 3, 0, 0, X]
    assert (ids[0, lengths[0]:] == tok.pad_token_id).all() and (y[0, lengths[0]:] == X).all()
    assert cut == 0 and split.gold == [[3, 0, 7, 0, 0], [3, 0, 0]]
    # five sub-tokens: [CLS] EU reject ##s [SEP] -> two words kept, one sentence counted as cut
    split, cut = D.tensorize_subwords(spec, TaskConfig(max_len=5), raw, tok, with_gold=True)
    assert split.tensors["y"][0].tolist() == [X, 3, 0, X, X] and cut == 1


def test_review_keeps_head_and_tail_inside_the_special_tokens(tiny_bert):
    spec = TASKS.get("imdb")
    _, tok = hf_tokenizer(str(tiny_bert))
    raw = D.RawSplit(pa.table({"text": ["the film was<br />lamb to the British"], "label": [1]}), "mem",
                     np.arange(1))
    split, cut = D.tensorize_subwords(spec, TaskConfig(max_len=6, truncate="head_tail"), raw, tok, False)
    row = split.tensors["ids"][0, : split.tensors["lengths"][0]].tolist()
    assert tok.convert_ids_to_tokens(row) == ["[CLS]", "the", "film", "the", "British", "[SEP]"] and cut == 1


class Oracle(torch.nn.Module):
    """Predicts each labelled position's own label: evaluation must then score a perfect F1."""

    def forward(self, task, batch):
        y = batch["y"].clamp(min=0)
        return torch.nn.functional.one_hot(y, 9).float()

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def test_predictions_go_back_to_words_on_real_sentences(tiny_bert, data_dir):
    """Real CoNLL-2003 sentences in sub-words: predictions read at first sub-tokens are the words'."""
    spec = TASKS.get("conll2003")
    cfg = make_config("stl-conll2003", overrides=[f"model.stems.conll2003=hf:{tiny_bert}",
                                                  "tasks.conll2003.max_len=512"])
    data = D.load_task(spec, cfg.tasks["conll2003"], str(data_dir), **task_reads(cfg, spec))
    assert data.truncated["test"] == 0
    metrics, _ = evaluate(Oracle(), spec, data, "test", 16, torch.device("cpu"))
    assert metrics["entity_f1"] == 1.0 and metrics["token_accuracy"] == 1.0
    # cut at 24 sub-tokens, the words past the cut count as "O": no longer perfect, still aligned
    cfg.tasks["conll2003"].max_len = 24
    short = D.load_task(spec, cfg.tasks["conll2003"], str(data_dir), **task_reads(cfg, spec))
    assert short.truncated["test"] > 0
    metrics, _ = evaluate(Oracle(), spec, short, "test", 16, torch.device("cpu"))
    assert 0.3 < metrics["token_accuracy"] < 1.0


def test_the_tokenizer_is_part_of_the_cache_key(tiny_bert, data_dir):
    spec = TASKS.get("conll2003")
    words = D.load_task(spec, spec.defaults, str(data_dir))
    subwords = D.load_task(spec, spec.defaults, str(data_dir), subwords=hf_tokenizer(str(tiny_bert)))
    assert "shape" in words.splits["train"].tensors and "shape" not in subwords.splits["train"].tensors
    assert subwords.vocab_size == len(hf_tokenizer(str(tiny_bert))[1])


def test_a_missing_extra_is_named(monkeypatch, tmp_path, capsys, data_dir):
    monkeypatch.setitem(sys.modules, "transformers", None)   # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'lepton-bench\[pretrained\]'"):
        hf_tokenizer("bert-base-cased")
    code = main(["run", "--variant", "stl-conll2003", "--stem", "conll2003=hf:bert-base-cased",
                 "--data-dir", str(data_dir), "--out", str(tmp_path / "out")])
    assert code == 2 and "lepton-bench[pretrained]" in capsys.readouterr().err


def test_unreachable_weights_give_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)   # fail fast, no retries
    with pytest.raises(ConfigError, match="cannot load timm:resnet18 with pretrained weights.*model.pretrained=false"):
        timm_stem("resnet18", 32, 32, pretrained=True)


def test_stem_family_names_are_checked():
    with pytest.raises(ConfigError, match="stem hf needs hf:<model id>, e.g. hf:bert-base-cased"):
        resolve_stem("hf", "text", "imdb")
    with pytest.raises(ConfigError, match="stem cnn takes no argument"):
        resolve_stem("cnn:resnet", "image", "cifar10")
    with pytest.raises(ConfigError, match="stem timm:resnet18 reads image, but task imdb gives text"):
        resolve_stem("timm:resnet18", "text", "imdb")
    with pytest.raises(ConfigError, match="timm has no model 'resnet_18'"):
        timm_stem("resnet_18", 32, 32, pretrained=False)


def test_a_timm_model_too_small_for_the_images_says_what_to_set():
    with pytest.raises(ConfigError, match=r"cannot take 32px images .* set model.image_size=224"):
        timm_stem("vit_tiny_patch16_224", 32, 32, pretrained=False)
    stem = timm_stem("vit_tiny_patch16_224", 16, 32, pretrained=False, resize=224)
    out, mask = stem({"x": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)})
    assert out.shape[0] == 2 and out.shape[-1] == 16 and mask is None


def test_stem_override_sets_one_task_and_keeps_the_variants_others():
    cfg = make_config("lepton-hard-ew", overrides=["model.stems.conll2003=hf:bert-base-cased"])   # nothing loads yet
    assert cfg.model.stems == {"cifar10": "cnn", "imdb": "bilstm", "conll2003": "hf:bert-base-cased"}
    # back to the default stem: the entry goes, as if never set
    cfg = make_config("lepton-hard-ew", overrides=["model.stems.conll2003=embedding"])
    assert cfg.model.stems == {"cifar10": "cnn", "imdb": "bilstm"}
    assert make_config("lepton-stl-imdb").model.stems == {"imdb": "bilstm"}
