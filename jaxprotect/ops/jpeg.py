"""A differentiable approximation of Pillow's JPEG round trip, for optimising through re-compression.

Images are NHWC float32 RGB in **[0, 255]** (any H, W; a leading batch axis). :func:`jpeg_approx`
follows what Pillow (libjpeg-turbo) does when it saves with ``quality=q`` and default options and
reads the file back:

1. RGB -> YCbCr (JFIF, :mod:`jaxprotect.ops.color`);
2. chroma subsampling 4:2:0 by 2x2 averaging (libjpeg ``jcsample.c`` ``h2v2_downsample``; Pillow
   asks for 4:2:0 at EVERY quality unless ``subsampling=`` is given: checked on Pillow 13 /
   libjpeg-turbo, whose files at q 50..100 all carry 2x2 luma sampling factors);
   the image is first padded to a multiple of 16 by repeating its last row and column (libjpeg's
   edge expansion);
3. 8x8 block DCT-II (orthonormal, the JPEG definition), level shift -128;
4. quantisation by the IJG tables scaled for ``q`` as ``jpeg_set_quality(q, force_baseline=TRUE)``
   does (:func:`quant_tables`), a differentiable rounding (:data:`ROUNDINGS`), dequantisation;
5. inverse DCT, +128, clamp to [0, 255] (libjpeg's range limit);
6. chroma upsampling by libjpeg's "fancy" triangle filter (``jdsample.c`` ``h2v2_fancy_upsample``:
   weights 3/4, 1/4 along each axis, edges repeated), i.e. bilinear with half-pixel centres;
7. YCbCr -> RGB, clamp to [0, 255], crop back to H x W.

What it leaves out: libjpeg's integer DCT (``JDCT_ISLOW``) and fixed-point colour conversion and
the rounding of every intermediate sample to an integer (``round_samples=True`` rounds the YCbCr
samples and the output with a straight-through estimator, closer to the real file). The measured gap to
Pillow's real JPEG is in ``tests/test_jpeg.py`` and ``experiments/results/jpeg_approx.md``.

Rounding (Shin & Song, "JPEG-resistant adversarial images", NeurIPS-W 2017, and the straight-through
estimator): ``"cubic"`` = ``round(x) + (x - round(x))**3`` (forward close to rounding, gradient
``3 (x - round(x))**2``); ``"ste"`` = exact rounding forward, identity gradient.

:func:`resize_roundtrip` (down by a factor, area or bilinear, then back up bilinearly, with the
factor a traced value) and :func:`eot_transform` (identity, JPEG or resize, drawn from a key) are
the expectation-over-transformations pieces. :func:`pillow_roundtrip` is the REAL thing (Pillow,
bytes in memory) for evaluation; it is not differentiable.
"""
from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprotect.ops.color import rgb_to_ycbcr, ycbcr_to_rgb

__all__ = [
    "LUMA_TABLE",
    "CHROMA_TABLE",
    "ROUNDINGS",
    "SUBSAMPLINGS",
    "quality_scale",
    "quant_tables",
    "diff_round",
    "dct_matrix",
    "block_dct",
    "block_idct",
    "fancy_upsample",
    "jpeg_approx",
    "resize_roundtrip",
    "EOTConfig",
    "EOTDraw",
    "EOT_TRANSFORMS",
    "eot_draw",
    "eot_apply",
    "eot_transform",
    "pillow_roundtrip",
]

# ITU-T T.81 Annex K tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order.
LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.int32,
)
CHROMA_TABLE = np.full((8, 8), 99, np.int32)
CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

ROUNDINGS = ("ste", "cubic")
SUBSAMPLINGS = ("4:2:0", "4:4:4")
_HI = lax.Precision.HIGHEST


def quality_scale(quality):
    """libjpeg's ``jpeg_quality_scaling``: q in 1..100 -> percentage scale (5000/q below 50, else 200 - 2q).

    ``quality`` a Python int or an integer JAX scalar (traced values work); clipped to [1, 100].
    """
    q = jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)
    return jnp.where(q < 50, 5000 // q, 200 - 2 * q)


def quant_tables(quality):
    """(luma [8, 8], chroma [8, 8]) int32 quantisation tables for ``quality``, as Pillow writes them.

    ``jpeg_add_quant_table`` with ``force_baseline=TRUE``: ``clip((base * scale + 50) // 100, 1, 255)``.
    Works on traced ``quality``.
    """
    scale = quality_scale(quality)

    def one(base):
        return jnp.clip((jnp.asarray(base) * scale + 50) // 100, 1, 255)

    return one(LUMA_TABLE), one(CHROMA_TABLE)


def diff_round(x, rounding: str = "ste"):
    """Differentiable rounding: ``"ste"`` (round forward, identity gradient) or ``"cubic"`` (Shin & Song)."""
    r = jnp.round(x)
    if rounding == "ste":
        return x + lax.stop_gradient(r - x)
    if rounding == "cubic":
        r = lax.stop_gradient(r)
        return r + (x - r) ** 3
    raise ValueError(f"rounding must be one of {ROUNDINGS}, not {rounding!r}")


def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix ``C`` [8, 8] (float32): ``coef = C @ block @ C.T``.

    ``C[k, n] = a(k) cos((2n + 1) k pi / 16)``, ``a(0) = sqrt(1/8)``, else ``sqrt(2/8)``: JPEG's FDCT.
    """
    k = np.arange(8)[:, None]
    n = np.arange(8)[None, :]
    c = np.cos((2 * n + 1) * k * np.pi / 16) * np.sqrt(2.0 / 8)
    c[0] /= np.sqrt(2.0)
    return c.astype(np.float32)


def _blocks(x):
    """[N, H, W] (H, W multiples of 8) -> [N, H/8, W/8, 8, 8]."""
    n, h, w = x.shape
    return x.reshape(n, h // 8, 8, w // 8, 8).transpose(0, 1, 3, 2, 4)


def _unblocks(b):
    n, bh, bw = b.shape[:3]
    return b.transpose(0, 1, 3, 2, 4).reshape(n, bh * 8, bw * 8)


def block_dct(x):
    """8x8 block DCT of [N, H, W] samples (H, W multiples of 8) -> coefficients [N, H/8, W/8, 8, 8]."""
    c = jnp.asarray(dct_matrix())
    return jnp.einsum("uh,nijhw,vw->nijuv", c, _blocks(x), c, precision=_HI)


def block_idct(coef):
    """Inverse of :func:`block_dct`: coefficients [N, H/8, W/8, 8, 8] -> samples [N, H, W]."""
    c = jnp.asarray(dct_matrix())
    return _unblocks(jnp.einsum("uh,nijuv,vw->nijhw", c, coef, c, precision=_HI))


def _quantise(plane, table, rounding):
    """Level-shift, DCT, quantise/dequantise, IDCT, unshift, clamp one [N, H, W] plane."""
    coef = block_dct(plane - 128.0)
    table = table.astype(jnp.float32)
    coef = diff_round(coef / table, rounding) * table
    return jnp.clip(block_idct(coef) + 128.0, 0.0, 255.0)


def fancy_upsample(x):
    """libjpeg's h2v2 "fancy" upsampling of [N, h, w, C] to [N, 2h, 2w, C]: along each axis output
    ``2i`` is ``3/4 x[i] + 1/4 x[i-1]`` and ``2i+1`` is ``3/4 x[i] + 1/4 x[i+1]`` (edges repeated), which
    is ``F.interpolate(scale_factor=2, mode='bilinear', align_corners=False)``; linear cost."""

    def along(x, axis):
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 1)
        xp = jnp.pad(x, pad, mode="edge")
        prev = lax.slice_in_dim(xp, 0, n, axis=axis)
        here = lax.slice_in_dim(xp, 1, n + 1, axis=axis)
        nxt = lax.slice_in_dim(xp, 2, n + 2, axis=axis)
        out = jnp.stack([0.75 * here + 0.25 * prev, 0.75 * here + 0.25 * nxt], axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = 2 * n
        return out.reshape(shape)

    return along(along(x, 1), 2)


def _pad_edge(x, multiple):
    h, w = x.shape[1], x.shape[2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def jpeg_approx(images, quality=75, *, rounding: str = "ste", subsampling: str = "4:2:0",
                round_samples: bool = False):
    """Differentiable JPEG compress + decompress of ``images`` [N, H, W, 3] float32 RGB in [0, 255].

    ``quality`` 1..100 (Python int or integer JAX scalar, e.g. drawn inside jit); ``rounding``
    one of :data:`ROUNDINGS` (coefficient rounding); ``subsampling`` ``"4:2:0"`` (Pillow's default
    at every quality) or ``"4:4:4"``; ``round_samples`` rounds the YCbCr samples before the DCT and
    the decoded RGB to integers (straight-through), as the real codec does. Returns [N, H, W, 3]
    float32 in [0, 255]. See the module docstring for the steps and what is approximated.
    """
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {SUBSAMPLINGS}, not {subsampling!r}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"jpeg_approx takes [N, H, W, 3] RGB images, got shape {images.shape}")
    n, h, w, _ = images.shape
    luma_t, chroma_t = quant_tables(quality)
    ycc = rgb_to_ycbcr(_pad_edge(images.astype(jnp.float32), 16 if subsampling == "4:2:0" else 8))
    if round_samples:
        ycc = diff_round(jnp.clip(ycc, 0.0, 255.0), "ste")
    y = _quantise(ycc[..., 0], luma_t, rounding)
    chroma = ycc[..., 1:]
    if subsampling == "4:2:0":
        hp, wp = chroma.shape[1], chroma.shape[2]
        chroma = chroma.reshape(n, hp // 2, 2, wp // 2, 2, 2).mean(axis=(2, 4))
        chroma = _pad_edge(chroma, 8)
    cb = _quantise(chroma[..., 0], chroma_t, rounding)
    cr = _quantise(chroma[..., 1], chroma_t, rounding)
    chroma = jnp.stack([cb, cr], axis=-1)
    if subsampling == "4:2:0":
        chroma = fancy_upsample(chroma[:, : y.shape[1] // 2, : y.shape[2] // 2])
    if round_samples:
        y, chroma = diff_round(y, "ste"), diff_round(chroma, "ste")
    rgb = jnp.clip(ycbcr_to_rgb(jnp.concatenate([y[..., None], chroma], axis=-1)), 0.0, 255.0)
    if round_samples:
        rgb = diff_round(rgb, "ste")
    return rgb[:, :h, :w]


# ------------------------------------------------------------------------------------------------
# Resizing with a traced factor


def _area_down(n: int, m):
    """[n, n] matrix whose first ``m`` rows average ``n`` samples down to ``m`` (area / box filter)."""
    i = jnp.arange(n, dtype=jnp.float32)[:, None]
    k = jnp.arange(n, dtype=jnp.float32)[None, :]
    step = n / m
    start, end = i * step, (i + 1) * step
    overlap = jnp.clip(jnp.minimum(end, k + 1) - jnp.maximum(start, k), 0.0, None)
    return jnp.where(i < m, overlap / step, 0.0)


def _bilinear(n_out: int, n_in: int, m):
    """[n_out, n_in] matrix sampling the first ``m`` of ``n_in`` samples at ``n_out`` points (half-pixel
    centres, edges clamped: ``F.interpolate(bilinear, align_corners=False)`` from size m to n_out)."""
    j = jnp.arange(n_out, dtype=jnp.float32)[:, None]
    i = jnp.arange(n_in, dtype=jnp.float32)[None, :]
    src = jnp.clip((j + 0.5) * (m / n_out) - 0.5, 0.0, m - 1.0)
    return jnp.where(i < m, jnp.maximum(1.0 - jnp.abs(src - i), 0.0), 0.0)


def _bilinear_down(n: int, m):
    """[n, n]: first ``m`` rows sample ``n`` inputs bilinearly at m points (no antialias)."""
    i = jnp.arange(n, dtype=jnp.float32)[:, None]
    k = jnp.arange(n, dtype=jnp.float32)[None, :]
    src = jnp.clip((i + 0.5) * (n / m) - 0.5, 0.0, n - 1.0)
    return jnp.where(i < m, jnp.maximum(1.0 - jnp.abs(src - k), 0.0), 0.0)


def _roundtrip_matrix(n: int, scale, down: str):
    m = jnp.clip(jnp.round(n * scale), 1.0, float(n))
    if down == "area":
        d = _area_down(n, m)
    elif down == "bilinear":
        d = _bilinear_down(n, m)
    else:
        raise ValueError(f"down must be 'area' or 'bilinear', not {down!r}")
    return jnp.matmul(_bilinear(n, n, m), d, precision=_HI)


def resize_roundtrip(images, scale, down: str = "area"):
    """Downscale ``images`` [N, H, W, C] by ``scale`` (0 < scale <= 1; traced values work) and back up.

    The small image has ``round(H * scale) x round(W * scale)`` pixels, made by ``down``: ``"area"``
    (box filter over the exact footprint, what an antialiasing resizer does for integer factors)
    or ``"bilinear"`` (no antialias); it is brought back to H x W bilinearly (half-pixel centres).
    Both steps are [H, H] and [W, W] matrices built inside the trace, so one compiled function
    serves every factor. Values keep their range. Returns [N, H, W, C].
    """
    rh = _roundtrip_matrix(images.shape[1], scale, down)
    rw = _roundtrip_matrix(images.shape[2], scale, down)
    x = jnp.einsum("oh,nhwc->nowc", rh, images, precision=_HI)
    return jnp.einsum("pw,nowc->nopc", rw, x, precision=_HI)


# ------------------------------------------------------------------------------------------------
# Expectation over transformations

EOT_TRANSFORMS = ("identity", "jpeg", "resize", "resize_jpeg")


@dataclasses.dataclass(frozen=True)
class EOTConfig:
    """The distribution :func:`eot_transform` draws from.

    ``probs``: probability of each of :data:`EOT_TRANSFORMS` (identity, JPEG, resize, resize then
    JPEG); ``jpeg_quality``: inclusive integer range, drawn uniformly; ``resize_scale``: range of
    the downscale factor, drawn uniformly; ``rounding``/``subsampling``/``round_samples`` go to
    :func:`jpeg_approx`; ``resize_down`` to :func:`resize_roundtrip`.
    """

    probs: tuple[float, float, float, float] = (0.25, 0.5, 0.25, 0.0)
    jpeg_quality: tuple[int, int] = (50, 95)
    resize_scale: tuple[float, float] = (0.5, 1.0)
    rounding: str = "ste"
    subsampling: str = "4:2:0"
    round_samples: bool = False
    resize_down: str = "area"

    def __post_init__(self):
        if len(self.probs) != len(EOT_TRANSFORMS) or min(self.probs) < 0 or sum(self.probs) <= 0:
            raise ValueError(f"probs must be {len(EOT_TRANSFORMS)} non-negative weights ({EOT_TRANSFORMS}), not {self.probs}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"jpeg_quality must be a range within 1..100, not {self.jpeg_quality}")
        lo, hi = self.resize_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"resize_scale must be a range within (0, 1], not {self.resize_scale}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, not {self.rounding!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EOTDraw:
    """One draw: ``kind`` index into :data:`EOT_TRANSFORMS`, ``quality`` (int32), ``scale`` (float32)."""

    kind: jax.Array
    quality: jax.Array
    scale: jax.Array


def eot_draw(key, config: EOTConfig = EOTConfig()) -> EOTDraw:
    """Draw a transform and its parameters from ``key`` (jit-compatible)."""
    k_kind, k_q, k_s = jax.random.split(key, 3)
    p = jnp.asarray(config.probs, jnp.float32)
    kind = jax.random.choice(k_kind, len(EOT_TRANSFORMS), p=p / p.sum())
    quality = jax.random.randint(k_q, (), config.jpeg_quality[0], config.jpeg_quality[1] + 1)
    scale = jax.random.uniform(k_s, (), jnp.float32, config.resize_scale[0], config.resize_scale[1])
    return EOTDraw(kind.astype(jnp.int32), quality.astype(jnp.int32), scale)


def eot_apply(draw: EOTDraw, images, config: EOTConfig = EOTConfig()):
    """Apply the drawn transform to ``images`` [N, H, W, 3] float32 RGB in [0, 255] (same shape out)."""

    def jpeg(x):
        return jpeg_approx(x, draw.quality, rounding=config.rounding, subsampling=config.subsampling,
                           round_samples=config.round_samples)

    def resize(x):
        return resize_roundtrip(x, draw.scale, config.resize_down)

    branches = (lambda x: x, jpeg, resize, lambda x: jpeg(resize(x)))
    return lax.switch(draw.kind, branches, images.astype(jnp.float32))


def eot_transform(key, images, config: EOTConfig = EOTConfig()):
    """One of identity / JPEG (q uniform in ``config.jpeg_quality``) / resize round trip, drawn from ``key``.

    ``images`` [N, H, W, 3] float32 RGB in [0, 255]; the same draw applies to the whole batch (use
    ``vmap`` over keys and images for one draw per image). Differentiable in ``images``; one
    compiled function covers every draw. Returns [N, H, W, 3] in [0, 255].
    """
    return eot_apply(eot_draw(key, config), images, config)


# ------------------------------------------------------------------------------------------------
# The real codec


def pillow_roundtrip(photo: np.ndarray, quality: int = 75, **save_options) -> np.ndarray:
    """Pillow's real JPEG: encode ``photo`` uint8 [H, W, 3] RGB at ``quality`` in memory, decode.

    ``save_options`` go to ``Image.save`` (e.g. ``subsampling=0`` for 4:4:4); the default is
    Pillow's (4:2:0, baseline). Returns uint8 [H, W, 3]. Not differentiable: for evaluation.
    """
    from PIL import Image

    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"pillow_roundtrip takes a uint8 [H, W, 3] photo, got {photo.dtype} {photo.shape}")
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=int(quality), **save_options)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return np.asarray(im.convert("RGB"))
