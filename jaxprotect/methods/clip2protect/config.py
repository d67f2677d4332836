"""Every CLIP2Protect setting, in three sections: stage 1 (:class:`FinetuneConfig`), stage 2
(:class:`SearchConfig`) and how it runs (:class:`ExecutionConfig`). Defaults are the original
``main.py``'s; each upstream quirk has a switch that reproduces it (the default) or turns it off.

A compiled step is cached by the sections it reads (the fine-tuning step: ``finetune`` and
``execution``; the search steps: ``search`` and ``execution``), so changing a setting of one stage
never recompiles the other.

Upstream: fahadshamshad/Clip2Protect @ 2585966 (``main.py``, ``pivot_tuning.py``,
``adversarial_optimization.py``, ``criteria/nce_loss.py``, ``utils/clip2protect_utils.py``).
"""
from __future__ import annotations

import dataclasses

__all__ = ["FinetuneConfig", "SearchConfig", "ExecutionConfig", "Clip2ProtectConfig", "FR_MODELS",
           "UPSTREAM_MODEL_NAMES"]

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
class FinetuneConfig:
    """Stage 1, generator fine-tuning (``pivot_tuning.py``).

    ``steps`` 150 (``--num_steps``); Adam ``lr`` 5e-4 (``--gt_lr``), ``betas`` (0.9, 0.999), ``eps``
    1e-8; loss = LPIPS-VGG + ``mse_weight`` * MSE at ``size`` px after the ``resize`` (upstream
    ``F.interpolate(size=256)`` = ``"nearest"``). ``skip`` runs the search on the pretrained
    generator. ``sequential_generator=True`` reproduces upstream's single generator + Adam state
    carried across the photos in order (``PivotTuning`` is built once); the default tunes a fresh
    copy of the pretrained generator per photo. ``strided`` (no effect on the maths): the loss
    sees the generator's image through a nearest resize that keeps every 4th row and column
    (1024 -> 256), so the last block's second conv and ToRGB are evaluated only at those pixels
    (same values up to float rounding; about a quarter of the step's time on CPU).
    """

    steps: int = 150
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    size: int = 256
    resize: str = "nearest"
    mse_weight: float = 0.1
    skip: bool = False
    sequential_generator: bool = False
    strided: bool = True

    def __post_init__(self):
        if self.resize not in ("nearest", "bilinear", "bicubic", "area"):
            raise ValueError(f"unknown finetune resize {self.resize!r}")
        if self.steps < 0:
            raise ValueError("finetune steps must be >= 0")

    @property
    def runs(self) -> bool:
        """Whether stage 1 runs at all."""
        return not self.skip and self.steps > 0


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Stage 2, the adversarial latent search (``adversarial_optimization.py``).

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
    ``margin``: pixels added around the MTCNN box. ``source_text``/``prompt``: CLIP texts.
    ``final_image``: "pre_update" (upstream: the result is the last step's forward, computed
    before that step's Adam update, so it reflects ``steps - 1`` updates) or "post_update".
    ``far``: which AMT-GAN threshold column judges the victim (upstream: "0.01").
    """

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

    def __post_init__(self):
        if self.victim not in FR_MODELS:
            raise ValueError(f"victim must be one of {FR_MODELS}, got {self.victim!r}")
        if self.final_image not in ("pre_update", "post_update"):
            raise ValueError(f"final_image must be 'pre_update' or 'post_update', got {self.final_image!r}")
        if self.steps < 1 or self.num_aug < 1:
            raise ValueError("steps and num_aug must be >= 1")
        if self.far not in ("0.1", "0.01", "0.001"):
            raise ValueError(f"far must be '0.1', '0.01' or '0.001', got {self.far!r}")
        if self.clip_preprocess not in ("faithful", "correct"):
            raise ValueError(f"clip_preprocess must be 'faithful' or 'correct', got {self.clip_preprocess!r}")

    @property
    def surrogates(self) -> tuple[str, ...]:
        """The ensemble: every recogniser except the held-out victim, in upstream summation order."""
        return _ENSEMBLE_ORDER[self.victim]

    @property
    def updates(self) -> int:
        """How many Adam updates the result reflects (``steps - 1`` with ``pre_update``)."""
        return self.steps - 1 if self.final_image == "pre_update" else self.steps


@dataclasses.dataclass(frozen=True)
class ExecutionConfig:
    """How the computation runs (no effect on the maths).

    ``remat`` recomputes each generator block's activations in the backward pass (one more
    forward; measured at 1024 it did not lower the peak, which sits in the 1024 block itself).
    ``generator_batching``: how photos with per-photo (fine-tuned) generator weights batch:
    "vmap" runs them as one computation (XLA turns the per-photo convolutions into grouped
    convolutions: right on accelerators, 4-5x slower per photo on CPU at 1024); "map" loops over
    them inside the compiled step (``lax.map``); "loop" runs each photo's batch-1 program in turn
    from Python; "auto" = "loop" on a single CPU device, else "vmap". Photos sharing the
    pretrained weights (``FinetuneConfig.skip``) always batch as one computation.
    ``batch_size``: photos per batch; ``num_devices``: devices of the batch mesh (None: all).
    """

    remat: bool = False
    generator_batching: str = "auto"
    batch_size: int = 4
    num_devices: int | None = None

    def __post_init__(self):
        if self.generator_batching not in ("auto", "vmap", "map", "loop"):
            raise ValueError(f"generator_batching must be auto, vmap, map or loop, got {self.generator_batching!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


@dataclasses.dataclass(frozen=True)
class Clip2ProtectConfig:
    """A whole CLIP2Protect run: ``finetune`` (stage 1), ``search`` (stage 2), ``execution``."""

    finetune: FinetuneConfig = FinetuneConfig()
    search: SearchConfig = SearchConfig()
    execution: ExecutionConfig = ExecutionConfig()

    def to_dict(self) -> dict:
        """Plain-JSON view for reports: {section: {field: value}}."""
        def plain(section):
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(section).items()}

        return {name: plain(getattr(self, name)) for name in ("finetune", "search", "execution")}
