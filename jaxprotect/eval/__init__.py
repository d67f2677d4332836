"""Evaluation of protected photos: pairing, quality, verification and identification protocols,
set distances (FID / Fréchet / KID), robustness through re-encoded files, and the report.

``Evaluator(EvaluateConfig(originals_dir=...)).evaluate(protected_dir, report_dir)`` is the library
form of ``jaxprotect evaluate``; the modules hold one protocol each and work on plain arrays.
"""
from jaxprotect.eval.config import FARS, EvaluateConfig
from jaxprotect.eval.run import Evaluator, evaluate

__all__ = ["EvaluateConfig", "Evaluator", "evaluate", "FARS"]
