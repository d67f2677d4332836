"""OpenAI CLIP tokenizer, offline: ids equal transformers' CLIPTokenizer.

Ids equal to ``clip.tokenize``'s (the golden's token ids) are checked in test_golden_parity.
"""
from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest

from helpers.golden import load_golden

from jaxprotect.text import IMAGENET_TEMPLATES, compose, get_tokenizer, tokenize
from jaxprotect.text.clip_tokenizer import EOT_TOKEN, SOT_TOKEN, vocab_path

VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
EXTRA = [
    "a photo of a cat",
    "Tanned MAKEUP   with\tblack\nlipstick!!",
    "it's 2024: 3.14159 — café naïve résumé",
    "emoji 😀👍 and ünïcödé",
    "don't we'll they've I'm she'd",
    "#hashtag @user http://example.com/a?b=c",
]


def test_shipped_templates_are_the_golden_ones():
    g = load_golden("clip_vitb32.npz")
    assert list(IMAGENET_TEMPLATES) == [str(s) for s in g["templates"]] and len(IMAGENET_TEMPLATES) == 79
    assert compose("face")[0] == "a bad photo of a face."


def test_shipped_vocabulary_is_openais():
    with open(vocab_path(), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == VOCAB_SHA256
    assert len(get_tokenizer().encoder) == 49408


def test_row_layout_truncation_and_errors():
    ids = tokenize(["a photo of a cat", "red lipstick"])
    assert ids.shape == (2, 77) and ids.dtype == np.int64
    assert ids[0, :7].tolist() == [SOT_TOKEN, 320, 1125, 539, 320, 2368, EOT_TOKEN] and not ids[0, 7:].any()
    long_text = " ".join(["lipstick"] * 100)
    with pytest.raises(ValueError, match="too long"):
        tokenize(long_text)
    row = tokenize(long_text, truncate=True)[0]
    body = get_tokenizer().encode(long_text)
    assert row[0] == SOT_TOKEN and row[-1] == EOT_TOKEN and row[1:-1].tolist() == body[:75]
    assert tokenize("red lipstick", context_length=8).shape == (1, 8)


def test_cleaning_and_decode():
    tok = get_tokenizer()
    np.testing.assert_array_equal(tokenize("  Red   LIPSTICK &amp;amp; "), tokenize("red lipstick &"))
    text = "tanned makeup with black lipstick"
    assert tok.decode(tok.encode(text)).strip() == text


def test_matches_transformers_clip_tokenizer_built_offline(tmp_path):
    """jax-stack-notes §4: HF's CLIPTokenizer from vocab/merges derived from the same file, no hub."""
    from transformers import CLIPTokenizer

    tok = get_tokenizer()
    with gzip.open(vocab_path()) as f:
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    (tmp_path / "vocab.json").write_text(json.dumps(tok.encoder))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    hf = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in EXTRA + compose("red lipstick")[:5]:
        assert [SOT_TOKEN, *tok.encode(text), EOT_TOKEN] == hf(text)["input_ids"], text
