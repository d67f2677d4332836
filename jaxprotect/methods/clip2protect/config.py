"""Every CLIP2Protect hyper-parameter, with the defaults of the original ``main.py``, and the
switches that turn each upstream quirk on (faithful, the default) or off.

Upstream: fahadshamshad/Clip2Protect @ 2585966 (``main.py``, ``pivot_tuning.py``,
``adversarial_optimization.py``, ``criteria/nce_loss.py``, ``utils/clip2protect_utils.py``).
"""
from __future__ import annotations

import dataclasses

__all__ = ["Clip2ProtectConfig", "FR_MODELS", "UPSTREAM_MODEL_NAMES"]

# The four face recognisers of the original, by their jaxprotect registry names.
FR_MODELS = ("ir152", "irse50", "facenet", "mobileface")
# ``--model`` choices of main.py -> registry names.
UPSTREAM_MODEL_NAMES = {"mobile_face": "mobileface", "facenet": "facenet", "irse50": "irse50", "ir152": "ir152"}
# adversarial_optimization.py ``calculate_loss``: the surrogate terms are summed in this order per victim.
_ENSEMBLE_ORDER = {
    "mobileface": ("facenet", "ir152", "irse50"),
    "facenet": ("mobileface", "ir152", "irse50"),
    "irse50": ("mobileface", "ir152", "facenet"),
    "ir152": ("facenet", "irse50", "mobileface"),
}


@dataclasses.dataclass(frozen=True)
class Clip2ProtectConfig:
    """Settings of one CLIP2Protect run (hashable, so it can be a static jit argument).

    Stage 1, generator fine-tuning (``pivot_tuning.py``):
      ``finetune_steps`` 150 (``--num_steps``), ``finetune_lr`` 5e-4 (``--gt_lr``), Adam betas
      (0.9, 0.999), eps 1e-8; loss = LPIPS-VGG + ``finetune_mse_weight`` * MSE at
      ``finetune_size`` px after ``finetune_resize`` (upstream ``F.interpolate(size=256)`` =
      ``"nearest"``). ``skip_finetune`` runs the search on the pretrained generator.
      ``sequential_generator=True`` reproduces upstream's single generator + Adam state carried
      across the photos in order (``PivotTuning`` is built once); the default tunes a fresh copy
      of the pretrained generator per photo.

    Stage 2, adversarial search (``adversarial_optimization.py``):
      ``steps`` 50, Adam ``lr`` 0.01, ``betas`` (0.9, 0.999), ``eps`` 1e-8; W+ rows
      ``0..frozen_rows-1`` get a zero gradient before Adam (``latent.grad[0][0:8] = 0``);
      ``noise_optimize`` also moves the noise maps with side < ``noise_max_res`` (512).
      Loss = ``lambda_lat`` * sum((w - w0)^2) + ``lambda_adv`` * adversarial + ``lambda_clip`` * InfoNCE.
      ``victim`` is the held-out model (upstream ``--model mobile_face``); the other three are the
      surrogate ensemble. ``impersonate`` (upstream default True) targets the target photo; False
      adds the dodging term (move away from the source photo's embeddings).
      ``augment``: RandomPerspective(``distortion_scale``, p=1, bilinear, fill 0) before CLIP,
      ``num_aug`` copies. ``clip_preprocess``: "faithful" reproduces NCELoss' double
      un-normalisation ((x+1)/2 of a [0,1] image) and the non-antialiased bicubic resize.
      ``margin``: pixels added around the MTCNN box.
      ``final_image``: "pre_update" (upstream: the result is the last step's forward, computed
      before that step's Adam update, so it reflects ``steps - 1`` updates) or "post_update".
      ``far``: which AMT-GAN threshold column judges the victim (upstream: "0.01").

    Execution (no effect on the maths):
      ``remat`` recomputes each generator block's activations in the backward pass (one more
      forward; measured at 1024 it did not lower the peak, which sits in the 1024 block itself);
      ``generator_batching``: how photos with per-photo (fine-tuned) generator weights batch:
      "vmap" runs them as one computation (XLA turns the per-photo convolutions into grouped
      convolutions: right on accelerators, 4-5x slower per photo on CPU at 1024); "map" loops over
      them inside the compiled step (``lax.map``); "loop" runs each photo's batch-1 program in
      turn from Python; "auto" = "loop" on a single CPU device, else "vmap". Photos sharing the
      pretrained weights (``skip_finetune``) always batch as one computation.
      ``finetune_strided``: the fine-tuning loss sees the generator's image through a nearest
      resize that keeps every 4th row and column (1024 -> 256), so the last block's second conv
      and ToRGB are evaluated only at those pixels (same values up to float rounding; about a
      quarter of the step's time on CPU). False computes the full image and resizes it.
    """

    # stage 1
    finetune_steps: int = 150
    finetune_lr: float = 5e-4
    finetune_betas: tuple[float, float] = (0.9, 0.999)
    finetune_eps: float = 1e-8
    finetune_size: int = 256
    finetune_resize: str = "nearest"
    finetune_mse_weight: float = 0.1
    skip_finetune: bool = False
    sequential_generator: bool = False
    # stage 2
    steps: int = 50
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    frozen_rows: int = 8
    noise_optimize: bool = True
    noise_max_res: int = 512
    lambda_lat: float = 0.01
    lambda_adv: float = 0.7
    lambda_clip: float = 0.3
    source_text: str = "face"
    prompt: str = "red lipstick"
    victim: str = "mobileface"
    impersonate: bool = True
    augment: bool = True
    num_aug: int = 1
    distortion_scale: float = 0.5
    clip_preprocess: str = "faithful"
    margin: int = 0
    final_image: str = "pre_update"
    far: str = "0.01"
    # execution
    remat: bool = False
    generator_batching: str = "auto"
    finetune_strided: bool = True

    def __post_init__(self):
        if self.victim not in FR_MODELS:
            raise ValueError(f"victim must be one of {FR_MODELS}, got {self.victim!r}")
        if self.final_image not in ("pre_update", "post_update"):
            raise ValueError(f"final_image must be 'pre_update' or 'post_update', got {self.final_image!r}")
        if self.finetune_resize not in ("nearest", "bilinear", "bicubic", "area"):
            raise ValueError(f"unknown finetune_resize {self.finetune_resize!r}")
        if self.generator_batching not in ("auto", "vmap", "map", "loop"):
            raise ValueError(f"generator_batching must be auto, vmap, map or loop, got {self.generator_batching!r}")
        if self.steps < 1 or self.num_aug < 1:
            raise ValueError("steps and num_aug must be >= 1")
        if self.far not in ("0.1", "0.01", "0.001"):
            raise ValueError(f"far must be '0.1', '0.01' or '0.001', got {self.far!r}")

    @property
    def surrogates(self) -> tuple[str, ...]:
        """The ensemble: every recogniser except the held-out victim, in upstream summation order."""
        return _ENSEMBLE_ORDER[self.victim]

    def to_dict(self) -> dict:
        """Plain-JSON view for reports."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}
