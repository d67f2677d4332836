"""torchvision's ``RandomPerspective`` (tensor path) as pure functions of an explicit PRNG key.

CLIP2Protect (``adversarial_optimization.py``) augments every generated image with
``transforms.RandomPerspective(fill=0, p=1, distortion_scale=0.5)`` before its CLIP loss. On a
tensor that is, in torchvision:

1. ``get_params``: four corner end points drawn with ``torch.randint`` inside bands of width
   ``int(distortion_scale * (size // 2)) + 1`` along each image corner;
2. ``_get_perspective_coeffs``: the 8 coefficients of the homography that maps OUTPUT pixel
   coordinates (end points) back to INPUT coordinates (start points), by least squares on the
   8x8 system (float64 in torchvision >= 0.12, cast to float32);
3. ``_perspective_grid`` + ``_apply_grid_transform``: the homography evaluated at pixel centres,
   normalised for ``grid_sample(bilinear, padding_mode="zeros", align_corners=False)``, sampled
   together with an all-ones channel; ``fill`` is blended in with that sampled mask
   (``img * mask + (1 - mask) * fill``), so pixels near the border are attenuated twice
   when ``fill`` is 0. All of that is reproduced here.

The corner draw cannot match torch's RNG stream; everything after it is deterministic, and the
corners can be passed in (:func:`perspective_coeffs` + :func:`warp_perspective`) to replay a run:
the search step takes the coefficients of each step's warp as an input.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["endpoint_bands", "start_points", "random_endpoints", "perspective_coeffs", "warp_perspective",
           "random_coeffs",
           "random_perspective"]


def endpoint_bands(height: int, width: int, distortion_scale: float) -> tuple[int, int]:
    """(band_w, band_h) = ``int(distortion_scale * half) + 1`` as in torchvision ``get_params``."""
    return int(distortion_scale * (width // 2)) + 1, int(distortion_scale * (height // 2)) + 1


def start_points(height: int, width: int) -> jnp.ndarray:
    """The image corners [top-left, top-right, bottom-right, bottom-left] as int32 [4, 2] (x, y)."""
    return jnp.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], jnp.int32)


def random_endpoints(key, height: int, width: int, distortion_scale: float = 0.5) -> jnp.ndarray:
    """Random corner end points, int32 [4, 2] (x, y) in torchvision order TL, TR, BR, BL.

    Each coordinate is uniform on torchvision's integer interval: TL x in [0, bw), TR x in
    [width - bw, width), and likewise for y with bh (see :func:`endpoint_bands`).
    """
    bw, bh = endpoint_bands(height, width, distortion_scale)
    low = jnp.array([[0, 0], [width - bw, 0], [width - bw, height - bh], [0, height - bh]], jnp.int32)
    high = jnp.array([[bw, bh], [width, bh], [width, height], [bw, height]], jnp.int32)
    return jax.random.randint(key, (4, 2), low, high, dtype=jnp.int32)


def perspective_coeffs(startpoints, endpoints, height: int, width: int) -> jnp.ndarray:
    """The 8 coefficients (a..h) with ``x_in = (a x + b y + c) / (g x + h y + 1)``,
    ``y_in = (d x + e y + f) / (g x + h y + 1)`` for output pixel (x, y), float32 [8].

    ``startpoints``/``endpoints``: [4, 2] (x, y) corners of the input / output image. Solves the
    same 8x8 system as torchvision ``_get_perspective_coeffs``, in float32 but on coordinates
    centred and scaled to about [-1, 1] (well conditioned), then maps the solution back; the
    result agrees with torchvision's float64 solve to float32 rounding. Traceable under jit.
    """
    cx, cy, s = (width - 1) / 2.0, (height - 1) / 2.0, max(height, width) / 2.0
    centre = jnp.array([cx, cy], jnp.float32)
    p1 = (jnp.asarray(endpoints, jnp.float32) - centre) / s  # output (x, y)
    p2 = (jnp.asarray(startpoints, jnp.float32) - centre) / s  # input (x, y)
    one, zero = jnp.ones(4, jnp.float32), jnp.zeros(4, jnp.float32)
    x, y, u, v = p1[:, 0], p1[:, 1], p2[:, 0], p2[:, 1]
    rows_u = jnp.stack([x, y, one, zero, zero, zero, -u * x, -u * y], axis=1)
    rows_v = jnp.stack([zero, zero, zero, x, y, one, -v * x, -v * y], axis=1)
    a = jnp.stack([rows_u, rows_v], axis=1).reshape(8, 8)  # rows 2i, 2i+1 as torchvision
    b = jnp.stack([u, v], axis=1).reshape(8)
    hn = jnp.concatenate([jnp.linalg.solve(a, b), jnp.ones(1, jnp.float32)]).reshape(3, 3)
    # H = T^-1 Hn T with T = normalisation (x - c) / s.
    t = jnp.array([[1 / s, 0, -cx / s], [0, 1 / s, -cy / s], [0, 0, 1]], jnp.float32)
    t_inv = jnp.array([[s, 0, cx], [0, s, cy], [0, 0, 1]], jnp.float32)
    h = t_inv @ hn @ t
    h = h / h[2, 2]
    return h.reshape(9)[:8]


def _sample_bilinear_zeros(image, ix, iy):
    """``grid_sample`` bilinear, zero padding, at unnormalised source coordinates ``ix, iy`` [H', W'].

    ``image`` [..., H, W, C]. Returns (values [..., H', W', C], mask [H', W']) where ``mask`` is the
    same interpolation applied to an all-ones channel.
    """
    h, w = image.shape[-3], image.shape[-2]
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    x1, y1 = x0 + 1, y0 + 1
    flat = image.reshape(image.shape[:-3] + (h * w, image.shape[-1]))
    values, mask = 0.0, 0.0
    for cx, cy, weight in (
        (x0, y0, (x1 - ix) * (y1 - iy)),  # nw
        (x1, y0, (ix - x0) * (y1 - iy)),  # ne
        (x0, y1, (x1 - ix) * (iy - y0)),  # sw
        (x1, y1, (ix - x0) * (iy - y0)),  # se
    ):
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        idx = (jnp.clip(cy, 0, h - 1) * w + jnp.clip(cx, 0, w - 1)).astype(jnp.int32)
        weight = jnp.where(inside, weight, 0.0)
        values = values + jnp.take(flat, idx.reshape(-1), axis=-2).reshape(image.shape[:-3] + idx.shape + (-1,)) \
            * weight[..., None]
        mask = mask + weight
    return values, mask


def warp_perspective(image, coeffs, fill: float = 0.0):
    """torchvision ``F.perspective(img, ..., BILINEAR, fill)`` on a float tensor, given coefficients.

    ``image``: [..., H, W, C] float32 (any range; CLIP2Protect passes [0, 1]); ``coeffs``: float32
    [8] from :func:`perspective_coeffs` (output pixel -> input pixel). Returns the warped image,
    same shape; every leading image gets the same transform (as torchvision on a batch).
    """
    h, w = image.shape[-3], image.shape[-2]
    c = jnp.asarray(coeffs, jnp.float32)
    xs = jnp.arange(w, dtype=jnp.float32) + 0.5  # torch.linspace(0.5, w - 0.5, w): pixel centres
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5)[:, None]
    den = c[6] * xs + c[7] * ys + 1.0
    gx = (c[0] / (0.5 * w) * xs + c[1] / (0.5 * w) * ys + c[2] / (0.5 * w)) / den - 1.0
    gy = (c[3] / (0.5 * h) * xs + c[4] / (0.5 * h) * ys + c[5] / (0.5 * h)) / den - 1.0
    ix = ((gx + 1.0) * w - 1.0) / 2.0  # grid_sample unnormalise, align_corners=False
    iy = ((gy + 1.0) * h - 1.0) / 2.0
    values, mask = _sample_bilinear_zeros(image, ix, iy)
    mask = mask[..., None]
    return values * mask + (1.0 - mask) * fill


def random_coeffs(key, height: int, width: int, distortion_scale: float = 0.5) -> jnp.ndarray:
    """The coefficients [8] of one RandomPerspective draw: corners from ``key``
    (:func:`random_endpoints`), then :func:`perspective_coeffs`."""
    ends = random_endpoints(key, height, width, distortion_scale)
    return perspective_coeffs(start_points(height, width), ends, height, width)


def random_perspective(key, image, distortion_scale: float = 0.5, fill: float = 0.0):
    """``RandomPerspective(distortion_scale, p=1, BILINEAR, fill)(image)`` with corners drawn from ``key``.

    ``image``: [..., H, W, C] float32 (NHWC batches get one shared draw, as torchvision). Returns
    the warped image, same shape and range convention as the input.
    """
    h, w = image.shape[-3], image.shape[-2]
    return warp_perspective(image, random_coeffs(key, h, w, distortion_scale), fill)
