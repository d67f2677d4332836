"""CLIP2Protect (Shamshad et al., CVPR 2023) in JAX, as fahadshamshad/Clip2Protect's code runs it.

Modules, one job each: :mod:`config` (every hyper-parameter and quirk switch),
:mod:`perspective` (torchvision RandomPerspective from a key), :mod:`ops` (clamp gradient, FR
crop matrices), :mod:`generator` (batched synthesis), :mod:`inversion` (e4e), :mod:`finetune`
(stage 1), :mod:`search` (stage 2), :mod:`sharding` (device mesh), :mod:`pipeline` (a batch
end to end), :mod:`networks` (loading), :mod:`photos` (alignment and paste-back).
"""
from jaxprotect.methods.clip2protect.config import FR_MODELS, Clip2ProtectConfig
from jaxprotect.methods.clip2protect.pipeline import Networks, face_embeddings, photo_keys, protect_batch

__all__ = ["Clip2ProtectConfig", "FR_MODELS", "Networks", "face_embeddings", "photo_keys", "protect_batch"]
