"""Applying a learnt cloak to a photo (``Cloaker.cloak_all_multi``), faithful or corrected.

The code works on the anisotropically resized photo (face box ≈ 112 px, see :mod:`.preprocess`):

1. ``image = resized.astype(int16)`` (truncation toward zero);
2. ``image[y1:y1+112, x1:x1+112] += (mask·255).astype(int16)`` at the box's ``int`` corner: the
   mask was optimised in [-1, 1] units (1 unit = 127.5 levels) but is applied ×255, twice what the
   optimiser modelled;
3. stickers (``apply_stickers(mode="image")``): ``+ sticker·255`` box by box, total clamped to
   ±32 levels, written back into the int16 image (truncation);
4. high-pass part (``apply_highpass(mode="image")``): added with NO scale (≤ 0.125 levels), written
   back (truncation: -1 where it is negative on a positive pixel, else nothing);
5. ``clip(0, 255)``, uint8. The code evaluates this in-memory uint8 array.

``corrected`` applies what was optimised: ``resized + 127.5·delta`` with the mask, the stickers'
clamped sum and the high-pass part (the same ``delta`` the corrected loss saw), clipped and
rounded, no int16 truncation.

:func:`protect_regions` does steps 2-5 for a batch of face regions [N, S, S, 3] in one jitted
call. Where the code would fail (a face less than S pixels from the resized photo's right or
bottom edge: the ``+=`` shapes disagree), the region is padded and the part outside the photo
dropped. :func:`paste_delta` carries a region's change back to the photo's own resolution (the
user's photo is not returned shrunk and distorted): bilinear, at the inverse anisotropic scale.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.methods.facecloak.config import FaceCloakConfig
from jaxprotect.methods.facecloak.optimise import CloakParts
from jaxprotect.methods.facecloak.stickers import apply_stickers_image

__all__ = ["region_offset", "cut_region", "faithful_region", "corrected_region", "protect_regions",
           "apply_to_resized", "paste_delta"]


def region_offset(box) -> tuple[int, int]:
    """``(int(y1), int(x1))``: where the code adds the cloak in the resized photo."""
    return int(box[1]), int(box[0])


def cut_region(image, offset, size: int = 112):
    """The ``size``-square region at ``offset`` (y, x) of ``image`` [H, W, 3], zero-padded past the edges.

    Returns ``(region [S, S, 3] float32, (h, w))``: ``h, w`` the part that lies inside the image.
    """
    y0, x0 = offset
    image = np.asarray(image)
    h = max(0, min(size, image.shape[0] - y0))
    w = max(0, min(size, image.shape[1] - x0))
    region = np.zeros((size, size, 3), np.float32)
    region[:h, :w] = image[y0:y0 + h, x0:x0 + w]
    return region, (h, w)


def faithful_region(region, parts: CloakParts, config: FaceCloakConfig):
    """Steps 2-4 on one region [S, S, 3] of the int16 image (float32 holding integers); float32 out, unclipped."""
    scale = jnp.float32(255.0)
    out = region + jnp.trunc(parts.mask * scale)
    if config.stickers:
        out = jnp.trunc(apply_stickers_image(out, parts.stickers, config.sticker_max, 255.0))
    if config.highpass:
        out = jnp.trunc(out + parts.highpass)
    return out


def corrected_region(region, parts: CloakParts, config: FaceCloakConfig):
    """``region + 127.5·(mask + clamp(Σ stickers, ±σ_s) + high-pass)`` for a float region [S, S, 3] (unclipped)."""
    delta = parts.mask
    if config.stickers:
        delta = delta + jnp.clip(jnp.sum(parts.stickers, axis=0), -config.sticker_max, config.sticker_max)
    if config.highpass:
        delta = delta + parts.highpass
    return region + jnp.float32(config.apply_scale) * delta


@functools.partial(jax.jit, static_argnums=(0,))
def protect_regions(config: FaceCloakConfig, regions, parts: CloakParts):
    """Apply one cloak to face regions [N, S, S, 3] (0..255) in one call; returns float32 in [0, 255].

    Faithful: ``regions`` must hold the int16-truncated pixels; the result is integral.
    Corrected: any float regions; the result is rounded.
    """
    if config.faithful:
        out = jax.vmap(lambda r: faithful_region(jnp.trunc(r), parts, config))(regions)
    else:
        out = jnp.round(jax.vmap(lambda r: corrected_region(r, parts, config))(regions))
    return jnp.clip(out, 0.0, 255.0)


def apply_to_resized(resized, box, parts: CloakParts, config: FaceCloakConfig) -> np.ndarray:
    """The code's cloaked image: the cloak applied to the resized photo [H', W', 3] float at the box corner.

    Returns uint8 [H', W', 3] (faithful: the int16-truncated photo outside the region, as the code).
    """
    resized = np.asarray(resized, np.float32)
    base = np.trunc(resized) if config.faithful else np.round(resized)
    offset = region_offset(box)
    size = np.shape(parts.mask)[0]
    region, (h, w) = cut_region(resized, offset, size)
    out = np.asarray(protect_regions(config, jnp.asarray(region)[None], parts))[0]
    image = np.clip(base, 0, 255)
    y0, x0 = offset
    image[y0:y0 + h, x0:x0 + w] = out[:h, :w]
    return image.astype(np.uint8)


def _axis_weights(n_out: int, start: int, scale: float, offset: int, size: int):
    """Bilinear taps from photo pixels ``start..start+n_out-1`` into a region of ``size`` at ``offset`` (resized px)."""
    u = (np.arange(start, start + n_out, dtype=np.float64) + 0.5) * scale - 0.5 - offset
    inside = (u >= -0.5) & (u <= size - 0.5)
    u = np.clip(u, 0.0, size - 1.0)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, size - 1)
    lam = u - i0
    return i0, i1, lam, inside


def paste_delta(photo, delta, offset, scale) -> np.ndarray:
    """Add a region's change ``delta`` [S, S, 3] (levels, at the resized scale) to the original ``photo``.

    ``offset`` ``(y, x)`` of the region in the resized photo; ``scale`` ``(scale_y, scale_x)`` of the
    anisotropic resize. The change is resampled bilinearly at each photo pixel's position in the
    resized frame (half-pixel centres, as the resize that made it) and is zero outside the region.
    Returns uint8 [H, W, 3] (rounded, clipped).
    """
    photo = np.asarray(photo)
    delta = np.asarray(delta, np.float64)
    size = delta.shape[0]
    (sy, sx), (y0, x0) = scale, offset
    h, w = photo.shape[:2]
    r0 = max(0, int(np.floor((y0 - 1) / sy)) - 1)
    r1 = min(h, int(np.ceil((y0 + size + 1) / sy)) + 1)
    c0 = max(0, int(np.floor((x0 - 1) / sx)) - 1)
    c1 = min(w, int(np.ceil((x0 + size + 1) / sx)) + 1)
    out = photo.astype(np.float64)
    if r1 <= r0 or c1 <= c0:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    yi0, yi1, ly, yin = _axis_weights(r1 - r0, r0, sy, y0, size)
    xi0, xi1, lx, xin = _axis_weights(c1 - c0, c0, sx, x0, size)
    top = delta[yi0][:, xi0] * (1 - lx)[None, :, None] + delta[yi0][:, xi1] * lx[None, :, None]
    bottom = delta[yi1][:, xi0] * (1 - lx)[None, :, None] + delta[yi1][:, xi1] * lx[None, :, None]
    sampled = top * (1 - ly)[:, None, None] + bottom * ly[:, None, None]
    sampled *= (yin[:, None] & xin[None, :])[..., None]
    out[r0:r1, c0:c1] += sampled
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
