"""FaceCloak on photos: learn a cloak from one photo (+ a synthetic set), apply it to other photos.

The photo driver the commands call (no argument parsing here):

* :func:`learn_cloak` — one identity: pre-process the probe and the synthetic set
  (:mod:`.preprocess`), choose the anchors (:mod:`.anchors`), find the landmarks and the high-pass
  filter on the probe crop, run ``afog_cloak_multi`` (jitted, sequential ``lax.scan``) and read
  the parts out. :func:`learn_cloaks` learns several identities in one ``vmap``-ed call.
* :func:`apply_cloak` — any number of photos of that person: each is pre-processed as the code
  does, the cloak is applied to all the face regions in one jitted call (:mod:`.apply`), and the
  change is carried back to the photo's own resolution (``output="original"``, the default) or
  the code's anisotropically resized photo is returned (``output="resized"``).
* :func:`cloak_photo` — both for one photo (learn from it, apply to it): what a ``protect``
  command needs.
* :func:`save_cloak` / :func:`load_cloak` — the ``.cloak.npz`` file (read with
  ``allow_pickle=False``).

Anchors (the photo driver's choice where the code relied on its data set): the near anchor is the
probe's own embedding (the code takes the gallery's top-1 match to the probe, which in its data is
another photo of the same person; a lone user has no such gallery) unless ``near="gallery"``; the
far anchor comes from ``gallery`` (other people's faces; by default 100 faces of scikit-image's LFW
subset, no download): in ``faithful`` mode one fixed gallery image for every user (the code's
hard-coded file; ``fixed_far`` picks which, default the first), in ``corrected`` mode the
gallery image farthest from the probe. With several surrogates the far image is chosen on the
mean cosine distance and each surrogate uses its own embedding of it.

The probe must show a face (``NoFaceError`` otherwise; the code would fall back to the whole
image); synthetic images without a detected face use the whole image, as the code.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprotect.io.errors import NoFaceError
from jaxprotect.methods.facecloak import anchors as anchor_rules
from jaxprotect.methods.facecloak.apply import cut_region, paste_delta, protect_regions, region_offset
from jaxprotect.methods.facecloak.config import FaceCloakConfig
from jaxprotect.methods.facecloak.highpass import highpass_filter, initial_highpass
from jaxprotect.methods.facecloak.optimise import (
    Anchors,
    CloakParts,
    Geometry,
    afog_cloak_multi,
    afog_cloak_multi_batch,
    afog_initial_perturbation,
    cloak_parts,
    crop_embeddings,
)
from jaxprotect.methods.facecloak.preprocess import Preprocessed, divide, largest_box, preprocess_photo, resize_bilinear
from jaxprotect.methods.facecloak.stickers import init_stickers, probe_landmarks, region_masks, sticker_layout
from jaxprotect.methods.facecloak.synthetic import SyntheticSet, empty

__all__ = [
    "FORMAT_VERSION",
    "Gallery",
    "Cloak",
    "Prepared",
    "AppliedPhoto",
    "lfw_gallery_crops",
    "embed_gallery",
    "default_gallery",
    "prepare_identity",
    "learn_cloak",
    "learn_cloaks",
    "apply_cloak",
    "cloak_photo",
    "save_cloak",
    "load_cloak",
]

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Gallery:
    """Other people's faces for the anchors: per surrogate, L2-normalised embeddings [G, D_m]; ``names`` [G]."""

    embeddings: tuple
    names: tuple
    source: str


@dataclasses.dataclass(frozen=True)
class Cloak:
    """A learnt cloak: the parts in [-1, 1] units (``mask`` [S, S, 3], ``stickers`` [4, S, S, 3],
    ``highpass`` [S, S, 3]), the probe's high-pass ``filter`` and sticker ``layout`` arrays
    (``landmarks`` [5, 2], ``landmarks_detected``, ``sticker_ranges`` [4, 4] y0 y1 x0 x1), the
    ``config`` and ``meta`` (surrogates, synthetic source, anchors, seed, losses, timings)."""

    mask: np.ndarray
    stickers: np.ndarray
    highpass: np.ndarray
    filter: np.ndarray
    landmarks: np.ndarray
    landmarks_detected: bool
    sticker_ranges: np.ndarray
    config: FaceCloakConfig
    meta: dict

    @property
    def parts(self) -> CloakParts:
        return CloakParts(jnp.asarray(self.mask), jnp.asarray(self.stickers), jnp.asarray(self.highpass))


@dataclasses.dataclass
class Prepared:
    """What :func:`prepare_identity` computes before the optimisation (host side)."""

    crops: np.ndarray
    probe: Preprocessed
    anchors: Anchors
    geometry: Geometry
    landmarks: np.ndarray
    landmarks_detected: bool
    sticker_ranges: np.ndarray
    anchor_info: dict


@dataclasses.dataclass
class AppliedPhoto:
    """One cloaked photo: ``image`` uint8 (original resolution, or the code's resized photo when
    ``output="resized"``), ``resized`` the code's cloaked resized photo and ``resized_base`` the same
    before the cloak, ``original_box`` the face box used, ``resized_box`` that box in the resized
    photo, ``scale`` (sy, sx) of the resize, ``offset`` (y, x) of the cloak in the resized photo."""

    image: np.ndarray
    resized: np.ndarray
    resized_base: np.ndarray
    original_box: tuple
    resized_box: tuple
    scale: tuple
    offset: tuple


def _surrogate_tuple(surrogates, params):
    from jaxprotect.recognition import Recogniser

    if isinstance(surrogates, Recogniser):
        return (surrogates,), (params,)
    return tuple(surrogates), tuple(params)


def _normalised(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _embed(surrogates, params, crops, batch: int = 32):
    """Per surrogate, L2-normalised embeddings [N, D_m] of normalised crops [N, S, S, 3]."""
    crops = np.asarray(crops, np.float32)
    out = []
    for s, p in zip(surrogates, params):
        fn = _jitted_embed(s)
        parts = [np.asarray(fn(p, jnp.asarray(crops[i:i + batch]))) for i in range(0, len(crops), batch)]
        out.append(_normalised(np.concatenate(parts)))
    return tuple(out)


_EMBED_CACHE: dict = {}


def _jitted_embed(surrogate):
    if surrogate not in _EMBED_CACHE:
        _EMBED_CACHE[surrogate] = jax.jit(lambda p, x: crop_embeddings(surrogate, p, x))
    return _EMBED_CACHE[surrogate]


def lfw_gallery_crops(size: int = 112, count: int = 100) -> np.ndarray:
    """``count`` faces of scikit-image's ``lfw_subset`` (25x25 grey crops, no download) as normalised
    RGB crops [count, size, size, 3] in [-1, 1] (bilinear upscaling, ``divide``)."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:count].astype(np.float32) * 255.0
    out = [divide(resize_bilinear(np.repeat(f[..., None], 3, axis=2), (size, size))) for f in faces]
    return np.stack(out)


def embed_gallery(surrogates, params, crops, names=None, source: str = "custom") -> Gallery:
    """A :class:`Gallery` from normalised crops [G, S, S, 3]."""
    surrogates, params = _surrogate_tuple(surrogates, params)
    names = tuple(names) if names is not None else tuple(f"{source}[{i}]" for i in range(len(crops)))
    return Gallery(_embed(surrogates, params, crops), names, source)


def default_gallery(surrogates, params, size: int = 112) -> Gallery:
    """The built-in gallery for the anchors: 100 LFW-subset faces (scikit-image), embedded by each surrogate."""
    return embed_gallery(surrogates, params, lfw_gallery_crops(size), source="skimage-lfw")


def _far_index(probe_embs, gallery: Gallery, rule: str, fixed_far: int) -> int:
    if rule == "fixed":
        return anchor_rules.far_anchor(None, None, "fixed", fixed_far)
    distances = np.mean([anchor_rules.cosine_distances(p, g) for p, g in zip(probe_embs, gallery.embeddings)], axis=0)
    return int(np.argsort(-distances, kind="stable")[0])


def prepare_identity(photo, synthetic: SyntheticSet, surrogates, params, detector, config: FaceCloakConfig,
                     gallery: Gallery, *, fixed_far: int = 0, near: str = "probe", path=None) -> Prepared:
    """Pre-processing, anchors, landmarks and high-pass filter of one identity (host side, numpy)."""
    surrogates, params = _surrogate_tuple(surrogates, params)
    photo = np.asarray(photo)
    det = detector.detect(photo)
    if len(det.boxes) == 0:
        raise NoFaceError(path, "no face detected (MTCNN); a cloak needs the person's face")
    probe = preprocess_photo(photo, None, config.crop_size, box=largest_box(det, *photo.shape[:2]))
    extra = [preprocess_photo(img, detector, config.crop_size).crop for img in synthetic.images]
    crops = np.stack(extra + [probe.crop])  # the real probe LAST, as cloak_all_multi orders them
    probe_embs = tuple(e[0] for e in _embed(surrogates, params, probe.crop[None]))
    if near == "probe":
        near_embs, near_name = probe_embs, "probe"
    elif near == "gallery":
        idx = [int(anchor_rules.closest(p, g)[0]) for p, g in zip(probe_embs, gallery.embeddings)]
        near_embs = tuple(g[i] for g, i in zip(gallery.embeddings, idx))
        near_name = gallery.names[idx[0]]
    else:
        raise ValueError(f"near must be 'probe' or 'gallery', not {near!r}")
    far = _far_index(probe_embs, gallery, config.far_anchor_rule, fixed_far)
    far_embs = tuple(g[far] for g in gallery.embeddings)
    landmarks, detected = probe_landmarks(detector, probe.crop)
    layout = sticker_layout(landmarks, detected, config.crop_size)
    geometry = Geometry(jnp.asarray(region_masks(layout, config.crop_size)), highpass_filter(probe.crop))
    info = {"near": near_name, "far": gallery.names[far], "far_rule": config.far_anchor_rule,
            "gallery": gallery.source, "gallery_size": len(gallery.names),
            "probe_cos_to_far": [float(np.dot(p, f)) for p, f in zip(probe_embs, far_embs)]}
    return Prepared(crops, probe, Anchors(tuple(jnp.asarray(f) for f in far_embs),
                                          tuple(jnp.asarray(n) for n in near_embs)),
                    geometry, np.asarray(landmarks), detected, np.asarray(layout.ranges), info)


def _draws(key, config: FaceCloakConfig):
    k_pert, k_stick = jax.random.split(key)
    s = config.crop_size
    return afog_initial_perturbation(jax.random.uniform(k_pert, (s, s, 3)), config), k_stick


def _finish(prep: Prepared, result_perturbation, losses, config, key_stickers, meta) -> Cloak:
    if config.epochs > 0:
        parts = cloak_parts(result_perturbation, prep.geometry, config)
        mask, stick, hp = (np.asarray(a, np.float32) for a in parts)
    else:  # nothing ran: the handlers' initial values (the mask is the clipped initial perturbation)
        mask = np.asarray(jnp.clip(result_perturbation, -config.eps, config.eps), np.float32)
        layout = sticker_layout(prep.landmarks, prep.landmarks_detected, config.crop_size)
        stick = init_stickers(layout, key=key_stickers, size=config.crop_size) if config.stickers \
            else np.zeros((4,) + mask.shape, np.float32)
        hp = np.asarray(initial_highpass(prep.geometry.filter), np.float32) if config.highpass else np.zeros_like(mask)
    if not config.stickers:
        stick = np.zeros_like(stick)
    if not config.highpass:
        hp = np.zeros_like(hp)
    meta = dict(meta, anchors=prep.anchor_info, losses=[float(v) for v in np.asarray(losses)])
    return Cloak(mask, stick, hp, np.asarray(prep.geometry.filter, np.float32), prep.landmarks,
                 prep.landmarks_detected, prep.sticker_ranges, config, meta)


def _names(surrogates):
    return [s.name for s in surrogates]


def learn_cloak(photo, synthetic: SyntheticSet | None, surrogates, params, detector, config: FaceCloakConfig, key,
                gallery: Gallery | None = None, *, fixed_far: int = 0, near: str = "probe", path=None,
                seed: int | None = None) -> Cloak:
    """Learn one person's cloak from ``photo`` (uint8 [H, W, 3]) and ``synthetic`` (None: the probe alone).

    ``surrogates``/``params``: one :class:`~jaxprotect.recognition.Recogniser` or a tuple and
    the matching params; ``detector`` an MTCNN; ``key`` draws the initial perturbation (and the
    initial stickers, which matter only with ``epochs=0``); ``gallery`` for the far anchor
    (default :func:`default_gallery`). Raises ``NoFaceError`` when the photo shows no face.
    """
    surrogates, params = _surrogate_tuple(surrogates, params)
    synthetic = empty() if synthetic is None else synthetic
    gallery = default_gallery(surrogates, params, config.crop_size) if gallery is None else gallery
    start, cpu = time.perf_counter(), time.process_time()
    prep = prepare_identity(photo, synthetic, surrogates, params, detector, config, gallery,
                            fixed_far=fixed_far, near=near, path=path)
    prepared = time.perf_counter()
    pert0, k_stick = _draws(key, config)
    result = afog_cloak_multi(surrogates, config, params, jnp.asarray(prep.crops), prep.anchors, pert0, prep.geometry)
    result.perturbation.block_until_ready()
    meta = {"surrogates": _names(surrogates), "synthetic": synthetic.describe(), "synthetic_source": synthetic.source,
            "images": len(prep.crops), "seed": seed, "probe_box": list(prep.probe.original_box),
            "seconds": {"prepare": prepared - start, "optimise": time.perf_counter() - prepared,
                        "cpu": time.process_time() - cpu}}
    return _finish(prep, result.perturbation, result.losses, config, k_stick, meta)


def learn_cloaks(photos: Sequence, synthetics: Sequence, surrogates, params, detector, config: FaceCloakConfig, keys,
                 gallery: Gallery | None = None, *, fixed_far: int = 0, near: str = "probe", paths=None,
                 seeds=None) -> list[Cloak]:
    """:func:`learn_cloak` for several people at once: the optimisations run as ONE ``vmap``-ed call.

    Sets of different sizes are padded (the padding crops are skipped by the loop). ``keys`` one
    key per person. Raises ``NoFaceError`` naming the first photo without a face.
    """
    surrogates, params = _surrogate_tuple(surrogates, params)
    gallery = default_gallery(surrogates, params, config.crop_size) if gallery is None else gallery
    paths = list(paths) if paths is not None else [None] * len(photos)
    preps = [prepare_identity(ph, syn if syn is not None else empty(), surrogates, params, detector, config, gallery,
                              fixed_far=fixed_far, near=near, path=pa)
             for ph, syn, pa in zip(photos, synthetics, paths)]
    k = max(len(p.crops) for p in preps)
    s = config.crop_size
    crops = np.zeros((len(preps), k, s, s, 3), np.float32)
    valid = np.zeros((len(preps), k), bool)
    for i, p in enumerate(preps):
        crops[i, :len(p.crops)] = p.crops
        valid[i, :len(p.crops)] = True
    draws = [_draws(key, config) for key in keys]
    stack = lambda *xs: jnp.stack(xs)  # noqa: E731
    anchors = jax.tree_util.tree_map(stack, *[p.anchors for p in preps])
    geometry = jax.tree_util.tree_map(stack, *[p.geometry for p in preps])
    start = time.perf_counter()
    result = afog_cloak_multi_batch(surrogates, config, params, jnp.asarray(crops), anchors,
                                    jnp.stack([d[0] for d in draws]), geometry, jnp.asarray(valid))
    result.perturbation.block_until_ready()
    seconds = time.perf_counter() - start
    seeds = list(seeds) if seeds is not None else [None] * len(preps)
    out = []
    for i, (p, syn) in enumerate(zip(preps, synthetics)):
        syn = syn if syn is not None else empty()
        losses = np.asarray(result.losses[i]).reshape(config.epochs, k)[:, valid[i]].reshape(-1)
        meta = {"surrogates": _names(surrogates), "synthetic": syn.describe(), "synthetic_source": syn.source,
                "images": len(p.crops), "seed": seeds[i], "probe_box": list(p.probe.original_box),
                "seconds": {"optimise_batch": seconds, "batch_size": len(preps)}}
        out.append(_finish(p, result.perturbation[i], losses, config, draws[i][1], meta))
    return out


def apply_cloak(cloak: Cloak, photos: Sequence, detector=None, *, boxes=None, output: str = "original",
                paths=None) -> list:
    """Apply ``cloak`` to photos (uint8 [H, W, 3] each); all face regions go through one jitted call.

    Each photo is pre-processed as the code does (largest MTCNN face, or ``boxes[i]``); a photo
    without a face gets a ``NoFaceError`` in its place in the returned list (the others are still
    cloaked). ``output``: "original" (the change carried back to the photo's resolution) or
    "resized" (the code's own cloaked image). Returns a list of :class:`AppliedPhoto` or exceptions.
    """
    if output not in ("original", "resized"):
        raise ValueError(f"output must be 'original' or 'resized', not {output!r}")
    config = cloak.config
    size = config.crop_size
    paths = list(paths) if paths is not None else [None] * len(photos)
    preps, results = [], [None] * len(photos)
    for i, photo in enumerate(photos):
        photo = np.asarray(photo)
        if boxes is not None and boxes[i] is not None:
            box = boxes[i]
        else:
            det = detector.detect(photo)
            if len(det.boxes) == 0:
                results[i] = NoFaceError(paths[i], "no face detected (MTCNN); nothing to cloak, nothing written")
                continue
            box = largest_box(det, *photo.shape[:2])
        preps.append((i, preprocess_photo(photo, detector, size, box=box)))
    if not preps:
        return results
    regions, bases = [], []
    for _, prep in preps:
        base = np.trunc(prep.resized) if config.faithful else prep.resized
        region, _ = cut_region(base, region_offset(prep.box), size)
        regions.append(region)
        bases.append(base)
    protected = np.asarray(protect_regions(config, jnp.asarray(np.stack(regions)), cloak.parts))
    for (i, prep), base, region, new in zip(preps, bases, regions, protected):
        y0, x0 = region_offset(prep.box)
        h = max(0, min(size, base.shape[0] - y0))
        w = max(0, min(size, base.shape[1] - x0))
        before = np.clip(np.trunc(base) if config.faithful else np.round(base), 0, 255)
        resized = before.copy()
        resized[y0:y0 + h, x0:x0 + w] = new[:h, :w]
        resized = resized.astype(np.uint8)
        delta = np.zeros((size, size, 3), np.float64)
        delta[:h, :w] = new[:h, :w] - before[y0:y0 + h, x0:x0 + w]  # the cloak's change, not the resize's rounding
        if output == "resized":
            image = resized
        else:
            image = paste_delta(photos[i], delta, (y0, x0), prep.scale)
        results[i] = AppliedPhoto(image, resized, before.astype(np.uint8), prep.original_box, prep.box, prep.scale,
                                  (y0, x0))
    return results


def cloak_photo(photo, surrogates, params, detector, config: FaceCloakConfig, key, *,
                synthetic: SyntheticSet | None = None, augment: int = 8, gallery: Gallery | None = None,
                output: str = "original", path=None, seed: int | None = None):
    """Learn a cloak from ``photo`` and apply it to that same photo: ``(Cloak, AppliedPhoto)``.

    What ``jaxprotect protect --method facecloak`` needs for one photo. ``synthetic`` None makes
    ``augment`` built-in images (0: the photo alone) from ``fold_in(key, 1)``; the optimisation uses
    ``fold_in(key, 0)``. Raises ``NoFaceError`` when the photo shows no face.
    """
    from jaxprotect.methods.facecloak.synthetic import augment as augment_set

    photo = np.asarray(photo)
    if synthetic is None:
        synthetic = augment_set(photo, augment, jax.random.fold_in(key, 1), detector, seed=seed) if augment else empty()
    cloak = learn_cloak(photo, synthetic, surrogates, params, detector, config, jax.random.fold_in(key, 0), gallery,
                        path=path, seed=seed)
    applied = apply_cloak(cloak, [photo], detector, output=output, paths=[path])[0]
    if isinstance(applied, Exception):
        raise applied
    return cloak, applied


_ARRAYS = {"mask": 3, "stickers": 4, "highpass": 3, "filter": 3, "landmarks": 2, "sticker_ranges": 2}


def save_cloak(path, cloak: Cloak, inputs: Sequence = ()) -> Path:
    """Write ``cloak`` to ``path`` (``.npz``, no pickled objects), atomically; refuses to overwrite ``inputs``."""
    from jaxprotect.io.errors import OutputIsInputError

    path = Path(path)
    target = os.path.realpath(path)
    for p in inputs:
        if os.path.realpath(p) == target or (path.exists() and Path(p).exists() and os.path.samefile(p, path)):
            raise OutputIsInputError(path, "refusing to write the cloak over an input photo")
    arrays = {name: np.asarray(getattr(cloak, name)) for name in _ARRAYS}
    arrays["landmarks_detected"] = np.bool_(cloak.landmarks_detected)
    arrays["config_json"] = np.str_(json.dumps(cloak.config.to_dict()))
    arrays["meta_json"] = np.str_(json.dumps(cloak.meta))
    arrays["format_version"] = np.int64(FORMAT_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_cloak(path) -> Cloak:
    """Read a ``.cloak.npz`` written by :func:`save_cloak` (``allow_pickle=False``); raises ``ValueError``
    naming what is missing or malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable cloak file ({e})") from None
    missing = sorted((set(_ARRAYS) | {"landmarks_detected", "config_json", "meta_json", "format_version"}) - set(data))
    if missing:
        raise ValueError(f"{path}: not a cloak file, missing {', '.join(missing)}")
    if int(data["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"{path}: cloak format {int(data['format_version'])}, this version reads {FORMAT_VERSION}")
    config = FaceCloakConfig.from_dict(json.loads(str(data["config_json"])))
    s = config.crop_size
    shapes = {"mask": (s, s, 3), "stickers": (4, s, s, 3), "highpass": (s, s, 3), "filter": (s, s, 3),
              "landmarks": (5, 2), "sticker_ranges": (4, 4)}
    for name, shape in shapes.items():
        if data[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {data[name].shape}, expected {shape}")
        if not np.all(np.isfinite(data[name])):
            raise ValueError(f"{path}: {name} holds non-finite values")
    return Cloak(data["mask"].astype(np.float32), data["stickers"].astype(np.float32),
                 data["highpass"].astype(np.float32), data["filter"].astype(np.float32), data["landmarks"],
                 bool(data["landmarks_detected"]), data["sticker_ranges"].astype(np.int64), config,
                 json.loads(str(data["meta_json"])))

