"""Text side of the ported methods: CLIP's offline tokenizer and the prompt templates."""
from jaxprotect.text.clip_tokenizer import ClipTokenizer, get_tokenizer, tokenize
from jaxprotect.text.templates import IMAGENET_TEMPLATES, compose

__all__ = ["ClipTokenizer", "get_tokenizer", "tokenize", "IMAGENET_TEMPLATES", "compose"]
