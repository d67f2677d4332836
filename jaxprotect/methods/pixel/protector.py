"""Whole photos through a pixel-space method: detect, align, protect the faces, paste them back.

:class:`PixelProtector` holds what stays fixed over a batch (method and its settings, surrogate
recognisers and their params, the MTCNN detector, the target identities, which faces to
protect); ``protect(photo, key)`` returns the protected photo and per-face measurements:

1. MTCNN finds the faces; :func:`jaxprotect.face_conventions.select_faces` chooses which to
   protect (all by default) and records why any other was skipped; none to protect raises
   :class:`NoFaceError`;
2. each chosen face is aligned by its 5 landmarks to the ArcFace template at the largest surrogate
   input size (112 for MobileFaceNet, 160 when FaceNet is among the surrogates); the faces of a
   photo are attacked together as one batch;
3. each protected crop is pasted back with a feathered seam (``align.paste_back``, delta mode),
   then, as TIP-IM's ``save_priv`` does, the photo is clipped to the original ± ε and rounded to
   uint8, so the L∞ budget holds on the written photo itself.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.detect.align import align_face, paste_back, warp_affine
from jaxprotect.eval.quality import psnr, ssim
from jaxprotect.face_conventions import FaceSelection, select_faces
from jaxprotect.io.errors import NoFaceError
from jaxprotect.methods import noise, tipim
from jaxprotect.methods.pixel.targets import synthetic_targets
from jaxprotect.recognition import Recogniser, cosine, embed, recogniser_and_params

__all__ = [
    "PIXEL_METHODS",
    "DEFAULT_EPS",
    "DEFAULT_STEPS",
    "method_config",
    "eps_levels",
    "image_quality",
    "load_surrogates",
    "FaceChoice",
    "FaceResult",
    "ProtectedPhoto",
    "PixelProtector",
    "FaceEdit",
    "edit_faces",
]

PIXEL_METHODS = ("tipim",) + noise.METHODS
DEFAULT_EPS = {"tipim": 12.0, "pgd": 16.0, "mifgsm": 16.0, "tidim": 16.0}  # grey levels of 255
DEFAULT_STEPS = {"tipim": 100, "pgd": 20, "mifgsm": 10, "tidim": 10}


def method_config(method: str, eps: float | None = None, steps: int | None = None, step_size: float | None = None,
                  **extra):
    """The config of ``method`` with ε and step size in grey levels (0..255) whatever the method's own scale.

    TIP-IM works on 0..255 (:class:`tipim.TipimConfig`); the noise attacks on [0, 1]
    (:class:`noise.NoiseConfig`), so their ε and step are divided by 255 here.
    ``extra`` goes to the config (e.g. ``gain``, ``gamma``, ``norm`` for TIP-IM).
    """
    if method not in PIXEL_METHODS:
        raise ValueError(f"unknown pixel method {method!r}; choose one of {', '.join(PIXEL_METHODS)}")
    eps = DEFAULT_EPS[method] if eps is None else float(eps)
    steps = DEFAULT_STEPS[method] if steps is None else int(steps)
    if method == "tipim":
        return tipim.TipimConfig(eps=eps, steps=steps, step_size=step_size, **extra)
    size = None if step_size is None else step_size / 255.0
    return noise.default_config(method, eps=eps / 255.0, steps=steps, step_size=size, **extra)


def eps_levels(config) -> float:
    """ε of a config in grey levels (0..255)."""
    return config.eps if isinstance(config, tipim.TipimConfig) else config.eps * 255.0


def image_quality(original: np.ndarray, protected: np.ndarray) -> dict:
    """PSNR (dB) and SSIM (dm-pix, 11x11 Gaussian window σ 1.5) of two uint8 [H, W, 3] images
    (:mod:`jaxprotect.eval.quality`)."""
    return {"psnr": psnr(original, protected), "ssim": ssim(original, protected)}


def load_surrogates(names) -> tuple[tuple[Recogniser, ...], tuple]:
    """``(recognisers, params)`` for registry names of face recognisers (shipped weights)."""
    from jaxprotect.registry import load_network

    nets = [load_network(n) for n in names]
    pairs = [recogniser_and_params(n) for n in nets]
    return tuple(r for r, _ in pairs), tuple(p for _, p in pairs)


@dataclasses.dataclass(frozen=True)
class FaceChoice:
    """Which faces of a photo to protect (see :func:`jaxprotect.face_conventions.select_faces`):
    ``which`` "all", "largest" or an int N; faces under ``min_prob`` or ``min_size`` px are
    skipped; skipped faces with probability >= ``warn_below`` raise a warning."""

    which: Any = "all"
    min_prob: float = 0.0
    min_size: float = 0.0
    warn_below: float | None = None

    def select(self, detections) -> FaceSelection:
        """The :class:`FaceSelection` for one photo's detections."""
        return select_faces(detections, self.which, min_prob=self.min_prob, min_size=self.min_size,
                            warn_below=self.warn_below)


@dataclasses.dataclass
class FaceResult:
    """One protected face: its index among the detections, box/prob, the aligning matrix and
    per-surrogate similarities."""

    index: int
    box: list
    prob: float
    matrix: np.ndarray
    similarity_to_original: dict
    similarity_to_target_before: dict | None = None
    similarity_to_target_after: dict | None = None
    face_quality: dict | None = None


@dataclasses.dataclass
class ProtectedPhoto:
    """``image`` uint8 [H, W, 3]; ``faces`` list of :class:`FaceResult`; ``skipped`` faces left alone
    (dicts with index, box, prob, reason) and ``warnings``; ``quality`` PSNR/SSIM of the whole photo;
    ``seconds`` the wall time of the protection; ``trace`` method-specific extras."""

    image: np.ndarray
    faces: list
    skipped: list
    warnings: list
    quality: dict
    seconds: float
    trace: dict


@dataclasses.dataclass
class PixelProtector:
    """Protect the chosen faces of a photo with one pixel method (see the module docstring).

    ``config`` from :func:`method_config`; ``surrogates``/``params`` from :func:`load_surrogates`;
    ``detector`` an MTCNN (``load_network("mtcnn")``). For TIP-IM, ``target_crops`` (aligned
    [T, S, S, 3] uint8/float 0..255) give the target identities, else ``num_targets`` synthetic
    ones. For the noise attacks, ``impersonate_crop`` (one aligned crop) switches from dodging to
    impersonation. ``faces`` chooses the faces to protect.
    """

    method: str
    config: Any
    surrogates: tuple
    params: tuple
    detector: Any
    target_crops: np.ndarray | None = None
    impersonate_crop: np.ndarray | None = None
    num_targets: int = 10
    feather: float = 0.1
    faces: FaceChoice = FaceChoice()

    def __post_init__(self):
        if self.method not in PIXEL_METHODS:
            raise ValueError(f"unknown pixel method {self.method!r}")
        self.crop_size = max(max(s.input_size) for s in self.surrogates)
        self._embed = jax.jit(lambda params, x: tuple(embed(s, p, x, 255.0) for s, p in zip(self.surrogates, params)))

    def features(self, crops) -> tuple:
        """Raw embeddings per surrogate [N, D_m] of aligned crops [N, S, S, 3] in 0..255."""
        return self._embed(self.params, jnp.asarray(crops, jnp.float32))

    def target_features(self, key) -> tuple:
        """TIP-IM target identities (L2-normalised, per surrogate [T, D_m])."""
        if self.target_crops is not None:
            return tipim.target_features(self.surrogates, self.params, np.asarray(self.target_crops, np.float32))
        if self.impersonate_crop is not None:
            return tipim.target_features(self.surrogates, self.params, np.asarray(self.impersonate_crop, np.float32)[None])
        dims = [f.shape[-1] for f in self.features(np.zeros((1, self.crop_size, self.crop_size, 3), np.float32))]
        return synthetic_targets(key, dims, self.num_targets)

    def attack(self, crops, key, progress: Callable | None = None):
        """Protected crops [N, S, S, 3] float32 0..255 from aligned crops (same shape), plus a trace dict."""
        crops = jnp.asarray(crops, jnp.float32)
        k_targets, k_attack = jax.random.split(key)
        if self.method == "tipim":
            targets = self.target_features(k_targets)
            result = tipim.tipim_run(self.surrogates, self.params, crops, targets, k_attack, self.config, progress)
            counts = np.bincount(np.asarray(result.chosen).ravel(), minlength=targets[0].shape[0])
            return result.images, {"target_chosen_counts": counts.tolist(), "num_targets": int(targets[0].shape[0])}
        target = None
        if self.impersonate_crop is not None:
            target = jnp.asarray(self.impersonate_crop, jnp.float32)[None] / 255.0
        out = noise.noise_attack(self.surrogates, self.params, crops / 255.0, k_attack, self.config,
                                 target_images=target, progress=progress)
        return out * 255.0, {}

    def _similarities(self, a, b) -> list:
        fa, fb = self.features(a), self.features(b)
        return [{s.name: float(c) for s, c in zip(self.surrogates, cs)}
                for cs in zip(*[np.asarray(cosine(x, y)) for x, y in zip(fa, fb)])]

    def protect(self, photo: np.ndarray, key, progress: Callable | None = None, path=None,
                detections=None) -> ProtectedPhoto:
        """Protect the chosen faces of ``photo`` (uint8 [H, W, 3] RGB); raises NoFaceError when none is left.

        ``detections`` (optional) reuses an earlier ``detector.detect(photo)``; ``progress`` is
        called with the iteration number after each attack step.
        """
        start = time.perf_counter()
        trace = {}

        def attack(crops):
            adv, extra = self.attack(crops, key, progress)
            trace.update(extra)
            return np.asarray(adv)

        edit = edit_faces(photo, self.detector, self.crop_size, attack, eps=eps_levels(self.config),
                          feather=self.feather, path=path, detections=detections, faces=self.faces)
        seconds = time.perf_counter() - start
        sim_orig = self._similarities(edit.after, edit.before)
        target_before = target_after = [None] * len(edit.crops)
        if self.impersonate_crop is not None:
            t = np.repeat(np.asarray(self.impersonate_crop, np.float32)[None], len(edit.crops), 0)
            target_before, target_after = self._similarities(edit.before, t), self._similarities(edit.after, t)
        det = edit.detections
        faces = [
            FaceResult(
                index=i,
                box=[float(v) for v in det.boxes[i]],
                prob=float(det.probs[i]),
                matrix=edit.crops[k].matrix,
                similarity_to_original=sim_orig[k],
                similarity_to_target_before=target_before[k],
                similarity_to_target_after=target_after[k],
                face_quality=edit.face_quality[k],
            )
            for k, i in enumerate(edit.selection.indices)
        ]
        return ProtectedPhoto(edit.image, faces, edit.selection.skipped, edit.selection.warnings,
                              image_quality(photo, edit.image), seconds, trace)


@dataclasses.dataclass
class FaceEdit:
    """What :func:`edit_faces` did: the new photo, the detections, the face selection, the crops
    (with their matrices) of the selected faces, the clean aligned crops ``before`` and those re-cut
    from the new photo ``after`` ([N, S, S, 3] float32 0..255), and per-face PSNR/SSIM between them."""

    image: np.ndarray
    detections: Any
    selection: FaceSelection
    crops: list
    before: np.ndarray
    after: np.ndarray
    face_quality: list


def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def edit_faces(photo: np.ndarray, detector, crop_size: int, edit: Callable, *, eps: float | None = None,
               feather: float = 0.1, path=None, detections=None, faces: FaceChoice = FaceChoice()) -> FaceEdit:
    """Apply ``edit`` to the chosen aligned faces of ``photo`` and paste the results back.

    ``photo`` uint8 [H, W, 3] RGB; ``edit`` maps aligned crops [N, S, S, 3] float32 0..255 to
    new crops of the same shape (an attack, a blur...). Faces come from ``detector.detect``
    (or ``detections``) and ``faces`` chooses among them; none to edit raises
    :class:`NoFaceError`. Each new crop is pasted back with a feathered seam (delta mode); with
    ``eps`` the photo is then clipped to the original ± eps (TIP-IM ``utils.save_priv``) and
    rounded to uint8. Returns :class:`FaceEdit`.
    """
    photo = np.asarray(photo, np.uint8)
    det = detector.detect(photo) if detections is None else detections
    if len(det.boxes) == 0:
        raise NoFaceError(path, "no face detected (MTCNN); nothing to protect, nothing written")
    selection = faces.select(det)
    if not selection.indices:
        reasons = "; ".join(f"face {s['index']}: {s['reason']}" for s in selection.skipped)
        raise NoFaceError(path, f"no face left to protect ({reasons}); nothing written")
    crops = [align_face(photo, det.landmarks[i], crop_size) for i in selection.indices]
    clean = np.stack([c.image for c in crops])
    new = np.asarray(edit(clean))
    out = photo.astype(np.float64)
    for crop, face in zip(crops, new):
        out = paste_back(out, face, crop.matrix, mode="delta", feather=feather)
    if eps is not None:
        # TIP-IM utils.save_priv: clip the re-warped photo to original ± eps and [0, 255], then uint8.
        out = np.clip(out, photo.astype(np.float64) - eps, photo.astype(np.float64) + eps)
    out = _u8(out)
    after = np.stack([warp_affine(out, c.matrix, (crop_size, crop_size)) for c in crops])
    quality = [image_quality(_u8(b), _u8(a)) for b, a in zip(clean, after)]
    return FaceEdit(out, det, selection, crops, clean, after, quality)
