"""TIP-IM (Yang et al., ICCV 2021): targeted identity-protection masks, as ShawnXYang/TIP-IM's code runs it.

:mod:`config` (settings), :mod:`attack` (the iteration, greedy target selection, gains),
:mod:`input_diversity` (the random warps), :mod:`mmd` (the naturalness term). Whole photos go
through :mod:`jaxprotect.methods.pixel`.
"""
from jaxprotect.methods.tipim.attack import (
    GAINS,
    TipimResult,
    TipimState,
    TipimStepInfo,
    draw_step,
    features,
    select_candidate,
    target_features,
    tipim_attack,
    tipim_init,
    tipim_run,
    tipim_step,
)
from jaxprotect.methods.tipim.config import TipimConfig
from jaxprotect.methods.tipim.input_diversity import DiversityDraw

__all__ = ["TipimConfig", "TipimState", "TipimStepInfo", "TipimResult", "DiversityDraw", "GAINS", "draw_step",
           "features", "target_features", "select_candidate", "tipim_init", "tipim_step", "tipim_run", "tipim_attack"]
