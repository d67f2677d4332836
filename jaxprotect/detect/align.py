"""Face crops for recognisers and the way back: box crops, 5-point alignment, feathered paste-back.

Conventions (numpy, float64 geometry):

* Photos are [H, W, 3] arrays (uint8 0..255 as :func:`jaxprotect.io.read_photo` gives, or float);
  crops are [S, S, 3] float32 in the photo's value range (0..255 for uint8 photos).
* Coordinates are ``(x, y)`` in pixels with pixel centres at integers (OpenCV/insightface/skimage
  convention; MTCNN boxes and landmarks are in this frame).
* Every crop comes with ``matrix``, a 2x3 affine map from photo ``(x, y)`` to crop ``(x, y)``:
  ``crop_xy = matrix[:, :2] @ photo_xy + matrix[:, 2]``. :func:`paste_back` inverts it.

Crops: :func:`box_crop` (CLIP2Protect's MTCNN-box slice, optionally resized like its
``F.interpolate(bilinear)``) and :func:`align_face` (Umeyama similarity from the 5 MTCNN landmarks
to the insightface ArcFace template at 112x112, or that template scaled to another size, e.g. 160).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxprotect.face_conventions import box_slices

__all__ = [
    "ARCFACE_112",
    "Crop",
    "template",
    "similarity_transform",
    "warp_affine",
    "box_crop",
    "align_face",
    "paste_back",
]

# insightface's standard 5-point ArcFace template for 112x112 crops (x, y): left eye, right eye,
# nose tip, left mouth corner, right mouth corner (image left/right, the order MTCNN gives).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)


class Crop(NamedTuple):
    """A face crop: ``image`` [S, S, 3] float32 (photo's value range) and ``matrix`` (2, 3) float64
    mapping photo pixel ``(x, y)`` to crop pixel ``(x, y)``."""

    image: np.ndarray
    matrix: np.ndarray


def template(size: int = 112) -> np.ndarray:
    """The ArcFace 5-point template for a ``size x size`` crop: ``ARCFACE_112 * size / 112`` (5, 2)."""
    return ARCFACE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` to ``dst``.

    Umeyama (1991), as ``skimage.transform.SimilarityTransform.estimate`` and insightface's
    ``norm_crop`` compute it. ``src``, ``dst``: (n, 2) points. Returns the (2, 3) matrix.
    Raises ``ValueError`` for degenerate points (all equal).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    n = src.shape[0]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    cov = dc.T @ sc / n
    signs = np.ones(2)
    if np.linalg.det(cov) < 0:
        signs[1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.linalg.matrix_rank(cov)
    if rank == 0:
        raise ValueError("similarity_transform: degenerate landmarks (all points coincide)")
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        rot = u @ np.diag([1.0, -1.0]) @ vt
    elif rank == 1:
        rot = u @ vt
    else:
        rot = u @ np.diag(signs) @ vt
    var_s = (sc**2).sum() / n
    scale = (s * signs).sum() / var_s
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def _invert(matrix: np.ndarray) -> np.ndarray:
    a = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, border: str):
    """Sample [H, W, C] at float coords; returns (values [..., C] float64, inside weight [...])."""
    h, w = image.shape[:2]
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    out = 0.0
    weight = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            if border == "edge":
                ok = np.ones(yy.shape, bool)
            else:
                ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)
            wgt = wy * wx * ok[..., None]
            out = out + wgt * vals
            weight = weight + wgt[..., 0]
    return out, weight


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: str = "constant") -> np.ndarray:
    """Warp ``image`` [H, W, C] by ``matrix`` (photo -> output coords) into ``size = (h, w)``, bilinear.

    Each output pixel samples the input at the inverse-mapped point (as ``cv2.warpAffine`` /
    ``skimage.transform.warp(order=1)``). ``border``: ``"constant"`` (zeros outside, like
    insightface's alignment) or ``"edge"`` (clamp, like ``F.interpolate``). Returns float32
    [h, w, C] in the input's value range.
    """
    h, w = size
    inv = _invert(np.asarray(matrix, np.float64))
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    values, _ = _bilinear(np.asarray(image), x, y, border)
    return values.astype(np.float32)


def box_crop(photo: np.ndarray, box, margin: int = 0, size: int | None = None) -> Crop:
    """The CLIP2Protect box crop of ``photo`` [H, W, 3]; optionally resized to ``size x size``.

    Without ``size`` the crop is the exact pixel slice of
    :func:`jaxprotect.face_conventions.box_slices`. With ``size`` it is
    resized as ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialias, edges
    clamped), what CLIP2Protect feeds its recognisers (112 or 160). Returns :class:`Crop`.
    """
    top, bottom, left, right = box_slices(box, photo.shape[:2], margin)
    if size is None:
        matrix = np.array([[1.0, 0.0, -left], [0.0, 1.0, -top]])
        return Crop(np.asarray(photo[top:bottom, left:right], np.float32), matrix)
    sx, sy = size / (right - left), size / (bottom - top)
    # torch bilinear, align_corners=False: crop pixel j samples slice x = (j + 0.5) / sx - 0.5, clamped
    # to the slice (not to the photo) at its edges
    local = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    image = warp_affine(photo[top:bottom, left:right], local, (size, size), border="edge")
    matrix = local.copy()
    matrix[:, 2] -= local[:, :2] @ np.array([left, top], np.float64)
    return Crop(image, matrix)


def align_face(photo: np.ndarray, landmarks, size: int = 112) -> Crop:
    """5-point similarity alignment of one face to the ArcFace template at ``size x size``.

    ``landmarks``: (5, 2) ``(x, y)`` in MTCNN's order (left eye, right eye, nose, left and right
    mouth corners). ``size=112`` is insightface's ArcFace crop; other sizes (160) use the same
    template scaled by ``size / 112``. Bilinear warp, zeros outside the photo. Returns :class:`Crop`.
    """
    matrix = similarity_transform(np.asarray(landmarks, np.float64).reshape(5, 2), template(size))
    return Crop(warp_affine(photo, matrix, (size, size), border="constant"), matrix)


def _feather_weight(u, v, h, w, feather_px):
    """1 well inside the crop, smoothly down to 0 at its border over ``feather_px`` pixels."""
    dist = np.minimum(np.minimum(u + 0.5, w - 0.5 - u), np.minimum(v + 0.5, h - 0.5 - v))
    t = np.clip(dist / max(feather_px, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep


def _seen_by_crop(inv: np.ndarray, crop_hw, photo_hw) -> np.ndarray:
    """[h, w, 1] float: 1 where a crop pixel's source point has all four bilinear neighbours in the photo."""
    v, u = np.mgrid[0:crop_hw[0], 0:crop_hw[1]].astype(np.float64)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    inside = (x >= 0) & (x <= photo_hw[1] - 1) & (y >= 0) & (y <= photo_hw[0] - 1)
    return inside[..., None].astype(np.float64)


def paste_back(photo: np.ndarray, crop: np.ndarray, matrix: np.ndarray, *, mode: str = "delta",
               feather: float = 0.1) -> np.ndarray:
    """Put a (protected) crop back into the whole photo through the inverse of ``matrix``.

    ``photo`` [H, W, 3] (uint8 or float), ``crop`` [S, S', 3] in the photo's value range,
    ``matrix`` the :class:`Crop` matrix it was cut with. Each photo pixel inside the crop's
    footprint is blended with a weight that is 1 inside the crop and falls smoothly (smoothstep)
    to 0 over the outer ``feather`` fraction of the crop's side, so no seam shows and pixels
    outside the footprint are untouched, bit for bit.

    ``mode="delta"`` (default) adds the change the crop carries, ``crop - warp(photo)``,
    resampled to the photo: the face keeps the photo's own resolution and an unmodified crop
    gives back the photo exactly. ``mode="replace"`` puts the crop's pixels themselves (resampled
    bilinearly), for generators that redraw the face. Returns the photo's dtype (uint8 rounded
    and clipped to 0..255).
    """
    if mode not in ("delta", "replace"):
        raise ValueError(f"mode must be 'delta' or 'replace', got {mode!r}")
    photo = np.asarray(photo)
    crop = np.asarray(crop, np.float64)
    matrix = np.asarray(matrix, np.float64)
    ch, cw = crop.shape[:2]
    if mode == "delta":
        crop = crop - warp_affine(photo, matrix, (ch, cw), border="constant")
    inv = _invert(matrix)
    corners = inv[:, :2] @ np.array([[-1, -1, cw, cw], [-1, ch, -1, ch]], np.float64) + inv[:, 2:]
    h, w = photo.shape[:2]
    x0, y0 = (max(int(np.floor(c.min())), 0) for c in corners)
    x1, y1 = min(int(np.ceil(corners[0].max())) + 1, w), min(int(np.ceil(corners[1].max())) + 1, h)
    out = photo.astype(np.float64)
    if x1 <= x0 or y1 <= y0:
        return photo.copy()
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    v = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    values, inside = _bilinear(crop, u, v, "constant")
    alpha = _feather_weight(u, v, ch, cw, feather * min(ch, cw)) * (inside > 0.999)
    # crop pixels that were sampled (partly) from outside the photo hold no face: never paste them
    seen = _bilinear(_seen_by_crop(inv, (ch, cw), (h, w)), u, v, "constant")[0][..., 0]
    alpha = (alpha * (seen > 0.999))[..., None]
    region = out[y0:y1, x0:x1]
    if mode == "delta":
        region = region + alpha * values
    else:
        region = region * (1.0 - alpha) + alpha * values
    out[y0:y1, x0:x1] = np.where(alpha > 0, region, out[y0:y1, x0:x1])
    if photo.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(photo.dtype)
