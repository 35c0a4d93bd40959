"""Tiny random pretrained-model folders, built offline, for the hf:/timm: stems' tests."""

from __future__ import annotations

import string
from pathlib import Path

# Whole words the alignment tests rely on; every other word falls back to characters.
WORDS = ["EU", "German", "call", "to", "boycott", "British", "lamb", "reject", "Peter", "the", "film", "was"]
TIMM_TINY = "test_resnet"   # timm's own 0.4 M-parameter test network


def make_tiny_bert(folder: Path) -> Path:
    """A 1-layer, 32-wide random BERT with a WordPiece vocabulary of characters (and ##characters)
    plus ``WORDS`` and ``##s``, saved like a Hub model: ``hf:<folder>`` loads it with no network.
    The tokenizer is built with ``tokenizers`` and wrapped generically, as any Hub tokenizer is."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", *chars,
                                *(f"##{c}" for c in chars)]))
    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.decoder = decoders.WordPiece()
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    wrapped.save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    return folder
