"""OpenAI CLIP's text tokenizer, offline: byte-level BPE over the shipped vocabulary.

Reproduces openai/CLIP ``clip/simple_tokenizer.py`` (``SimpleTokenizer``) and ``clip/clip.py``
(``tokenize``): text cleaning (``ftfy.fix_text`` when ftfy is installed, HTML unescaping twice,
whitespace collapsed), lower-casing, the same regular expression, bytes mapped to printable
unicode symbols, greedy lowest-rank BPE merges, and rows ``[SOT, ids..., EOT, 0, ...]`` of
length 77. The merge list is ``jaxprotect/assets/bpe_simple_vocab_16e6.txt.gz`` (MIT, see
``CLIP_VOCAB_NOTICE.md``); nothing is downloaded.
"""
from __future__ import annotations

import functools
import gzip
import html
import importlib.resources
from collections.abc import Sequence

import numpy as np
import regex

__all__ = ["ClipTokenizer", "get_tokenizer", "tokenize", "SOT_TOKEN", "EOT_TOKEN", "CONTEXT_LENGTH", "vocab_path"]

SOT_TOKEN = 49406
EOT_TOKEN = 49407
CONTEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # merges used by OpenAI (the file holds more)
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)

try:  # optional, as in open_clip; changes only mojibake / odd quotes
    import ftfy as _ftfy
except ImportError:  # pragma: no cover - depends on the environment
    _ftfy = None


def vocab_path() -> str:
    """Path of the shipped ``bpe_simple_vocab_16e6.txt.gz``."""
    return str(importlib.resources.files("jaxprotect") / "assets" / "bpe_simple_vocab_16e6.txt.gz")


@functools.lru_cache(maxsize=1)
def _byte_symbols() -> dict[int, str]:
    """The reversible map byte -> printable unicode character used by GPT-2/CLIP BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # printable bytes first, then the rest: the order of the first 256 vocabulary entries


def _clean(text: str) -> str:
    if _ftfy is not None:
        text = _ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return regex.sub(r"\s+", " ", text).strip()


class ClipTokenizer:
    """CLIP's BPE tokenizer. ``encode(text)`` -> list of ids (no SOT/EOT); ``__call__`` -> padded rows."""

    def __init__(self, bpe_path: str | None = None):
        with gzip.open(bpe_path or vocab_path()) as f:
            lines = f.read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]
        self.byte_encoder = _byte_symbols()
        self.byte_decoder = {s: b for b, s in self.byte_encoder.items()}
        symbols = list(self.byte_encoder.values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks = {m: r for r, m in enumerate(merges)}
        self.sot_token = self.encoder["<|startoftext|>"]
        self.eot_token = self.encoder["<|endoftext|>"]
        self._cache = {"<|startoftext|>": ("<|startoftext|>",), "<|endoftext|>": ("<|endoftext|>",)}

    def bpe(self, token: str) -> tuple[str, ...]:
        """Split one pre-token (already in byte symbols) into vocabulary entries."""
        if token in self._cache:
            return self._cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            best = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if best not in self.bpe_ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without SOT/EOT (cleaned and lower-cased as OpenAI does)."""
        ids = []
        for piece in _PATTERN.findall(_clean(text).lower()):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(symbols))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`encode` up to cleaning (word ends become spaces)."""
        text = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False):
        """``clip.tokenize``: np.int64 [N, context_length] rows ``SOT ids EOT 0...``.

        Too-long texts raise ``ValueError`` unless ``truncate``, which keeps the first
        ``context_length`` ids and makes the last one EOT (as OpenAI does).
        """
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token, *self.encode(text), self.eot_token]
            if len(ids) > context_length:
                if not truncate:
                    raise ValueError(f"Input {text!r} is too long for context length {context_length}")
                ids = ids[:context_length]
                ids[-1] = self.eot_token
            out[row, : len(ids)] = ids
        return out


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> ClipTokenizer:
    """The shared tokenizer built from the shipped vocabulary (built once, ~0.5 s)."""
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH, truncate: bool = False) -> np.ndarray:
    """OpenAI ``clip.tokenize``: strings -> np.int64 [N, context_length] (SOT 49406, EOT 49407, 0 padding)."""
    return get_tokenizer()(texts, context_length=context_length, truncate=truncate)
