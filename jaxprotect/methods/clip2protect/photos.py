"""Getting whole photos into the generator's frame and back.

CLIP2Protect (and e4e) take FFHQ-aligned S x S faces (S = 1024): ``main.py`` feeds the files as
they are. Here a photo that is already S x S is used as is (as upstream); any other photo is
aligned first with the FFHQ recipe (NVlabs ``ffhq-dataset`` ``recreate_aligned_images``: an
oriented square from the eye and mouth positions) computed from MTCNN's five landmarks instead
of dlib's 68 (eye centres and mouth corners are what the recipe reads), warped bilinearly to
S x S, protected, and pasted back through the inverse warp with a feathered seam
(:func:`jaxprotect.detect.align.paste_back`, "replace": the generator redraws the whole face).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxprotect.detect.align import paste_back, similarity_transform, warp_affine

__all__ = ["Prepared", "ffhq_quad", "prepare_photo", "restore_photo"]


class Prepared(NamedTuple):
    """A photo in the generator's frame.

    ``image`` [S, S, 3] uint8; ``box`` the MTCNN face box (x1, y1, x2, y2) in that frame;
    ``matrix`` (2, 3) photo (x, y) -> frame (x, y), or None when the photo was used as is;
    ``landmarks`` (5, 2) in the photo (None when used as is).
    """

    image: np.ndarray
    box: tuple
    matrix: np.ndarray | None
    landmarks: np.ndarray | None


def ffhq_quad(landmarks) -> np.ndarray:
    """FFHQ's crop quad (4, 2) (x, y) from 5 MTCNN landmarks (left eye, right eye, nose, left and
    right mouth corners): corners top-left, bottom-left, bottom-right, top-right of the
    oriented square the FFHQ recipe crops."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_left, eye_right, mouth_left, mouth_right = lm[0], lm[1], lm[3], lm[4]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _detect(mtcnn, image: np.ndarray):
    det = mtcnn.detect(image)
    if len(det.boxes) == 0:
        return None
    return det  # best first, like facenet-pytorch's boxes[0]


def prepare_photo(photo: np.ndarray, size: int, mtcnn, *, align: str = "auto") -> Prepared:
    """Bring ``photo`` [H, W, 3] uint8 into the S x S frame and find its face box there.

    ``align``: "auto" (align unless the photo is already S x S), "always", "never" (the photo
    must then be S x S). Raises ``LookupError`` when MTCNN finds no face.
    """
    photo = np.asarray(photo, np.uint8)
    as_is = align == "never" or (align == "auto" and photo.shape[:2] == (size, size))
    if as_is:
        if photo.shape[:2] != (size, size):
            raise ValueError(f"photo is {photo.shape[1]}x{photo.shape[0]}; without alignment it must be {size}x{size}")
        det = _detect(mtcnn, photo)
        if det is None:
            raise LookupError("no face found")
        return Prepared(photo, tuple(float(v) for v in det.boxes[0]), None, None)
    det = _detect(mtcnn, photo)
    if det is None:
        raise LookupError("no face found")
    landmarks = np.asarray(det.landmarks[0], np.float64)
    corners = np.array([[0, 0], [0, size], [size, size], [size, 0]], np.float64) - 0.5
    matrix = similarity_transform(ffhq_quad(landmarks), corners)
    frame = np.clip(np.rint(warp_affine(photo, matrix, (size, size), border="edge")), 0, 255).astype(np.uint8)
    det2 = _detect(mtcnn, frame)
    if det2 is None:
        raise LookupError("no face found after alignment")
    return Prepared(frame, tuple(float(v) for v in det2.boxes[0]), matrix, landmarks)


def restore_photo(photo: np.ndarray, prepared: Prepared, protected_uint8: np.ndarray, feather: float = 0.1) -> np.ndarray:
    """The whole protected photo: the protected frame itself when the photo was used as is, else
    the frame pasted back into ``photo`` through the inverse alignment with a feathered seam."""
    if prepared.matrix is None:
        return np.asarray(protected_uint8, np.uint8)
    return paste_back(photo, np.asarray(protected_uint8, np.float32), prepared.matrix, mode="replace", feather=feather)
