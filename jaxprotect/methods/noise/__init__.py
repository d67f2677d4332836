"""L∞ noise attacks on face recognisers (PGD, MI-FGSM, TI-DIM): :mod:`config` and :mod:`attack`.
Whole photos go through :mod:`jaxprotect.methods.pixel`."""
from jaxprotect.methods.noise.attack import (
    DiverseDraw,
    NoiseState,
    NoiseStepInfo,
    attack_loss,
    diverse_inputs,
    draw_diverse,
    noise_attack,
    noise_step,
    random_start,
    similarities,
    ti_smooth,
)
from jaxprotect.methods.noise.config import METHODS, NoiseConfig, default_config

__all__ = ["METHODS", "NoiseConfig", "default_config", "NoiseState", "NoiseStepInfo", "DiverseDraw", "draw_diverse",
           "diverse_inputs", "ti_smooth", "random_start", "similarities", "attack_loss", "noise_step", "noise_attack"]
