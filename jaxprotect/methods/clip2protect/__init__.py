"""CLIP2Protect (Shamshad et al., CVPR 2023) in JAX, as fahadshamshad/Clip2Protect's code runs it.

Modules, one job each: :mod:`config` (the three config sections, every quirk switch),
:mod:`perspective` (torchvision RandomPerspective from a key or given corners), :mod:`ops` (clamp
gradient, FR crop matrices), :mod:`generator` (batched synthesis), :mod:`inversion` (e4e),
:mod:`finetune` (stage 1), :mod:`search` (stage 2: the step, with injectable draws and optional
auxiliary outputs), :mod:`pipeline` (a batch end to end), :mod:`networks` (loading),
:mod:`checkpoints` (finding the files), :mod:`photos` (alignment and paste-back), :mod:`run`
(the photo runner).
"""
from jaxprotect.methods.clip2protect.config import (
    FR_MODELS,
    Clip2ProtectConfig,
    ExecutionConfig,
    FinetuneConfig,
    SearchConfig,
)
from jaxprotect.methods.clip2protect.pipeline import (
    Networks,
    draw_perspectives,
    draw_photo_noise,
    face_embeddings,
    protect_batch,
    search_setup,
)

__all__ = ["Clip2ProtectConfig", "FinetuneConfig", "SearchConfig", "ExecutionConfig", "FR_MODELS", "Networks",
           "face_embeddings", "draw_photo_noise", "draw_perspectives", "search_setup", "protect_batch"]
