"""Full-resolution face geometry: a region of interest (ROI) per face, its feathered mask, and a
differentiable warp from the ROI to the recogniser's aligned template.

The perturbation of the full-resolution path lives at the PHOTO's own resolution, on the ROI
around each face; the recogniser input is produced from the (perturbed) ROI by
:func:`warp_to_template`, a bilinear warp written in JAX, so gradients reach the photo's pixels.

Conventions as :mod:`jaxprotect.detect.align`: photos [H, W, 3] (uint8 or float 0..255), ``(x, y)``
pixel coordinates with pixel centres at integers, 2x3 matrices mapping photo ``(x, y)`` to
template ``(x, y)`` (``align.similarity_transform`` of the 5 MTCNN landmarks to
``align.template(size)``).

* :func:`face_roi` - the ROI of a face: its mask's footprint and the template crop's footprint,
  plus a margin, snapped outward to a 16-px grid of the photo (so a JPEG approximation run on
  the ROI sees the same 8x8 / 16x16 blocks as the encoder sees on the whole photo), clipped
  to the photo. :func:`extract_roi` / :func:`insert_roi` cut and paste it exactly: nothing
  outside the ROI changes, bit for bit.
* :func:`face_mask` - a feathered ellipse from the MTCNN box, turned with the eye line.
* :func:`roi_matrix` - the aligning matrix expressed in ROI coordinates.
* :func:`warp_to_template` - differentiable bilinear warp (zeros outside, as ``align.align_face``);
  ``antialias=True`` first shrinks by the integer part of the downscale with a tent filter, so a
  large face is not point-sampled and the gradient reaches every pixel smoothly, not one pixel in
  ``(1/s)^2``. (A ``k x k`` box average was tried first: its gradient is constant over each block,
  and 40 signed steps drew a visible 7-px mosaic, experiments/results/full_res_roi_box_prefilter.md;
  a full-resolution Gaussian prefilter, sigma 6.7 px, took 7 s of CPU per gradient step on a
  2000-px ROI as a depthwise convolution, 4.5 GB of temporaries as shifted copies.)
* :class:`DeltaGrid` - the policy for huge ROIs: the perturbation is parameterised on a grid
  ``factor`` times coarser and upsampled bilinearly (linear cost) to the ROI.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxprotect.detect.align import similarity_transform, template

__all__ = [
    "FaceROI",
    "face_roi",
    "extract_roi",
    "insert_roi",
    "roi_matrix",
    "template_footprint",
    "FaceEllipse",
    "face_ellipse",
    "face_mask",
    "downscale_factor",
    "antialias_step",
    "tent_downsample",
    "warp_to_template",
    "upsample_linear",
    "DeltaGrid",
    "delta_grid",
    "MAX_ROI_SIDE",
]

MAX_ROI_SIDE = 1024  # above this, DeltaGrid optimises the perturbation on a coarser grid


class FaceROI(NamedTuple):
    """Rows ``top:bottom`` and columns ``left:right`` of a photo (Python ints, half-open)."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return self.bottom - self.top, self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        """``photo[roi.slices]`` is the ROI."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def origin(self) -> np.ndarray:
        """(x, y) of the ROI's top-left pixel in the photo."""
        return np.array([self.left, self.top], np.float64)


def _invert(matrix) -> np.ndarray:
    a = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def template_footprint(matrix, size: int) -> np.ndarray:
    """The photo ``(x, y)`` of the 4 corners of the ``size x size`` template crop (4, 2), one pixel out."""
    inv = _invert(matrix)
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], np.float64)
    return corners @ inv[:, :2].T + inv[:, 2]


class FaceEllipse(NamedTuple):
    """``centre`` (x, y); ``axes`` (semi-axis along the eye line, across it) in pixels; ``angle`` of
    the eye line against the x axis (radians)."""

    centre: np.ndarray
    axes: np.ndarray
    angle: float


def face_ellipse(box, landmarks=None, scale: float = 1.15) -> FaceEllipse:
    """The face ellipse: centred on the MTCNN ``box`` (x1, y1, x2, y2), semi-axes ``scale`` times
    half its width and height, turned by the eye line of ``landmarks`` ((5, 2) xy; none: upright)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    axes = np.array([(x2 - x1) / 2, (y2 - y1) / 2]) * scale
    angle = 0.0
    if landmarks is not None:
        lm = np.asarray(landmarks, np.float64).reshape(5, 2)
        dx, dy = lm[1] - lm[0]
        angle = math.atan2(dy, dx)
    return FaceEllipse(centre, axes, angle)


def _ellipse_extent(e: FaceEllipse) -> np.ndarray:
    """Half-extent (x, y) of the ellipse's axis-aligned bounding box."""
    c, s = math.cos(e.angle), math.sin(e.angle)
    a, b = e.axes
    return np.array([math.hypot(a * c, b * s), math.hypot(a * s, b * c)])


def face_roi(photo_hw: tuple[int, int], box, landmarks, crop_size: int | None = 112, *, mask_scale: float = 1.15,
             margin: int = 8, align: int = 16) -> FaceROI:
    """The ROI of one face in a photo of ``photo_hw = (H, W)``.

    It holds the face ellipse (:func:`face_ellipse` with ``mask_scale``) and, with ``crop_size``,
    the footprint of the ``crop_size`` template crop of ``landmarks`` (so :func:`warp_to_template`
    on the ROI equals ``align.align_face`` on the photo), widened by ``margin`` px, snapped outward
    to multiples of ``align`` (photo coordinates; 16 = a JPEG 4:2:0 MCU) and clipped to the photo.
    """
    h, w = photo_hw
    e = face_ellipse(box, landmarks, mask_scale)
    ext = _ellipse_extent(e)
    pts = [e.centre - ext, e.centre + ext]
    if crop_size is not None:
        matrix = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), template(crop_size))
        pts.extend(template_footprint(matrix, crop_size))
    pts = np.array(pts)
    x0, y0 = pts.min(0) - margin
    x1, y1 = pts.max(0) + margin
    left = max(int(math.floor(x0 / align)) * align, 0)
    top = max(int(math.floor(y0 / align)) * align, 0)
    right = min(int(math.ceil((x1 + 1) / align)) * align, w)
    bottom = min(int(math.ceil((y1 + 1) / align)) * align, h)
    if right <= left or bottom <= top:
        raise ValueError(f"face box {tuple(box[:4])} lies outside the {w}x{h} photo")
    return FaceROI(top, bottom, left, right)


def extract_roi(photo, roi: FaceROI):
    """``photo[roi]`` ([h, w, C], a copy for numpy input; a JAX array for JAX input)."""
    part = photo[roi.slices]
    return part.copy() if isinstance(part, np.ndarray) else part


def insert_roi(photo, roi: FaceROI, values):
    """A NEW photo equal to ``photo`` except ``photo[roi] = values`` (the input is never modified).

    ``values`` [h, w, C] of the ROI's shape. numpy in, numpy out (cast to the photo's dtype; for
    uint8 round and clip values yourself first); JAX in, JAX out (``.at[].set``, differentiable).
    """
    if tuple(values.shape[:2]) != roi.shape:
        raise ValueError(f"values of shape {tuple(values.shape[:2])} do not fit the ROI {roi.shape}")
    if isinstance(photo, np.ndarray):
        out = photo.copy()
        out[roi.slices] = np.asarray(values).astype(photo.dtype)
        return out
    return photo.at[roi.slices].set(values)


def roi_matrix(matrix, roi: FaceROI) -> np.ndarray:
    """The photo->template ``matrix`` (2, 3) rewritten for ROI coordinates (``roi_xy = photo_xy - origin``)."""
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] = m[:, 2] + m[:, :2] @ roi.origin
    return m


def face_mask(roi: FaceROI, box, landmarks=None, *, scale: float = 1.15, feather: float = 0.25) -> np.ndarray:
    """The feathered face mask [h, w, 1] float32 in [0, 1] over the ROI.

    With ``r`` the elliptical radius of a pixel in :func:`face_ellipse` (``scale``): 1 where
    ``r <= 1 - feather``, 0 where ``r >= 1``, smoothstep in between. ``box``/``landmarks`` in photo
    coordinates.
    """
    if not 0 < feather <= 1:
        raise ValueError(f"feather must be in (0, 1], got {feather}")
    e = face_ellipse(box, landmarks, scale)
    h, w = roi.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dx = xx + roi.left - e.centre[0]
    dy = yy + roi.top - e.centre[1]
    c, s = math.cos(e.angle), math.sin(e.angle)
    u = (c * dx + s * dy) / max(e.axes[0], 1e-6)
    v = (-s * dx + c * dy) / max(e.axes[1], 1e-6)
    r = np.sqrt(u * u + v * v)
    t = np.clip((1.0 - r) / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t))[..., None].astype(np.float32)


def downscale_factor(matrix) -> float:
    """Template pixels per photo pixel of a similarity ``matrix`` (sqrt of its determinant)."""
    m = np.asarray(matrix, np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def _sample(image, x, y):
    """Bilinear samples [h, w, C] of ``image`` [H, W, C] at float coordinates ``x``, ``y`` [h, w];
    each neighbour outside the image contributes zero (``align.warp_affine(border='constant')``)."""
    height, width = image.shape[0], image.shape[1]
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    fx, fy = x - x0, y - y0
    x0 = x0.astype(jnp.int32)
    y0 = y0.astype(jnp.int32)
    out = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            vals = image[jnp.clip(yy, 0, height - 1), jnp.clip(xx, 0, width - 1)]
            out = out + (wy * wx * ok)[..., None] * vals
    return out


def antialias_step(matrix) -> int:
    """The integer shrink ``k = floor(1 / s)`` that :func:`warp_to_template` prefilters by (1 when not shrinking 2x)."""
    s = downscale_factor(matrix)
    return max(1, int(math.floor(1.0 / s))) if s > 0 else 1


@functools.lru_cache(maxsize=64)
def _tent_table(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [m, 2k], weights [m, 2k]) of a stride-``k`` tent filter over ``n`` samples.

    Output ``i`` sits at input ``c = k*i + (k-1)/2`` and averages the inputs ``p`` with weights
    ``max(k - |p - c|, 0)`` (a triangle of half-width k), renormalised where it leaves the signal.
    """
    m = -(-n // k)
    centre = k * np.arange(m)[:, None] + (k - 1) / 2.0
    p = np.floor(centre - k + 1).astype(np.int64) + np.arange(2 * k)[None, :]
    w = np.maximum(k - np.abs(p - centre), 0.0) * ((p >= 0) & (p < n))
    w = w / w.sum(axis=1, keepdims=True)
    return np.clip(p, 0, n - 1).astype(np.int32), w.astype(np.float32)


def tent_downsample(image, k: int):
    """Shrink ``image`` [H, W, C] by an integer ``k`` with a tent (triangle) filter: [ceil(H/k), ceil(W/k), C].

    Output pixel ``(i, j)`` sits at input ``(k*j + (k-1)/2, k*i + (k-1)/2)``. Linear cost (2k taps
    per output along each axis), and its gradient is piecewise linear in the input position: smooth,
    unlike a k x k box average whose gradient is constant over each block.
    """
    if k <= 1:
        return image

    def along(x, axis):
        idx, w = _tent_table(x.shape[axis], k)
        out = 0.0
        for t in range(idx.shape[1]):
            shape = [1] * x.ndim
            shape[axis] = idx.shape[0]
            out = out + jnp.asarray(w[:, t]).reshape(shape) * jnp.take(x, jnp.asarray(idx[:, t]), axis=axis)
        return out

    return along(along(image, 0), 1)


def warp_to_template(roi_image, matrix, size, *, antialias: bool = False):
    """The aligned recogniser input [S, S', C] of ``roi_image`` [h, w, C] (float, 0..255 or any range).

    ``matrix`` (2, 3) maps ROI ``(x, y)`` to template ``(x, y)`` (:func:`roi_matrix`; numpy, or a
    JAX array so one compiled function serves every face); ``size`` an int or (S, S'). Each output
    pixel samples the ROI bilinearly at the inverse-mapped point, zeros outside: with
    ``antialias=False`` this is ``align.align_face`` (its forward values, to float32 rounding).
    Differentiable in ``roi_image``.

    ``antialias=True`` (needs a numpy ``matrix``): when the warp shrinks ``k = floor(1/s) >= 2``
    times, the ROI is first shrunk ``k`` times by :func:`tent_downsample` and the matrix adjusted;
    the rest of the shrink (below 2x) is bilinear. The samples do not alias, and the gradient
    reaches every photo pixel, piecewise linear, instead of the four pixels around each sample
    point (about one pixel in ``(1/s)^2``). Cost and memory stay linear in the ROI's size.
    """
    s_h, s_w = (size, size) if isinstance(size, int) else size
    if antialias:
        k = antialias_step(matrix)
        if k >= 2:
            roi_image = tent_downsample(jnp.asarray(roi_image, jnp.float32), k)
            m = np.asarray(matrix, np.float64)
            # full-resolution x = k * x_small + (k - 1) / 2
            matrix = np.concatenate([m[:, :2] * k, (m[:, 2] + m[:, :2] @ np.full(2, (k - 1) / 2))[:, None]], axis=1)
    m = jnp.asarray(matrix, jnp.float32)
    a = jnp.concatenate([m, jnp.array([[0.0, 0.0, 1.0]], jnp.float32)], axis=0)
    inv = jnp.linalg.inv(a)
    v, u = jnp.meshgrid(jnp.arange(s_h, dtype=jnp.float32), jnp.arange(s_w, dtype=jnp.float32), indexing="ij")
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    return _sample(jnp.asarray(roi_image, jnp.float32), x, y)


def upsample_linear(x, factor: int):
    """Bilinear upsampling of ``x`` [h, w, C] by an integer ``factor`` -> [h*factor, w*factor, C].

    Half-pixel centres, edges clamped: ``F.interpolate(scale_factor=factor, mode='bilinear',
    align_corners=False)``, computed from shifted copies (linear cost, no dense matrices).
    """
    if factor == 1:
        return x

    def along(x, axis):
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (1, 1)
        xp = jnp.pad(x, pad, mode="edge")
        prev = jnp.take(xp, jnp.arange(0, n), axis=axis)
        here = jnp.take(xp, jnp.arange(1, n + 1), axis=axis)
        nxt = jnp.take(xp, jnp.arange(2, n + 2), axis=axis)
        phases = []
        for p in range(factor):
            c = (p + 0.5) / factor - 0.5
            phases.append(here * (1 - c) + nxt * c if c >= 0 else prev * (-c) + here * (1 + c))
        out = jnp.stack(phases, axis=axis + 1)
        shape = list(x.shape)
        shape[axis] = n * factor
        return out.reshape(shape)

    return along(along(x, 0), 1)


@dataclasses.dataclass(frozen=True)
class DeltaGrid:
    """Where the perturbation of one ROI is optimised: a grid ``factor`` times coarser than the ROI.

    ``roi_shape`` (h, w); ``factor`` 1 means the ROI's own pixels. :meth:`to_roi` maps a coarse
    delta [ceil(h/f), ceil(w/f), C] to the ROI [h, w, C] by :func:`upsample_linear` (smooth, no
    blocks) and a crop. Budgets are applied after it, at the ROI's resolution.
    """

    roi_shape: tuple[int, int]
    factor: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        """The coarse delta's (height, width)."""
        h, w = self.roi_shape
        return -(-h // self.factor), -(-w // self.factor)

    def to_roi(self, delta):
        """Coarse ``delta`` [gh, gw, C] -> [h, w, C] at the ROI's resolution (differentiable)."""
        h, w = self.roi_shape
        return upsample_linear(delta, self.factor)[:h, :w]


def delta_grid(roi: FaceROI, max_side: int = MAX_ROI_SIDE) -> DeltaGrid:
    """The policy: full resolution while the ROI's longer side is at most ``max_side`` (1024), else
    the smallest integer factor that brings the grid's longer side to ``max_side`` or below."""
    side = max(roi.shape)
    return DeltaGrid(roi.shape, max(1, -(-side // max_side)))
