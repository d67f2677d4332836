"""Datasets for jaxprotect: the user's own photo folders and the papers' evaluation sets, as
tensorflow-datasets builders (no TensorFlow), read through grain.

Datasets (:data:`DATASETS`; each has one split)
-----------------------------------------------
=============================  ==========  ================================================
name                           split       records
=============================  ==========  ================================================
``photo_folder``               photos      one per photo of a folder (``recursive=True``
                                           for sub-folders): what ``protect`` jobs read
``identity_folder``            photos      photos named ``<identity>_<n>.<ext>``, labelled
                                           (a gallery, FaceCloak's naming rule)
``celebahq_amtgan/images``     test        AMT-GAN's 1,000 CelebA-HQ test photos (or your
                                           list, or DiffAM's split)
``celebahq_amtgan/targets``    targets     the 4 AMT-GAN target identities: loss photo +
                                           evaluation photo, with CLIP2Protect's face boxes
``ladn/images``                test        LADN's non-makeup photos (AMT-GAN's 332-photo set)
``ladn/targets``               targets     the same 4 target identities
``lfw/images``                 images      every LFW photo, labelled by identity
``lfw/pairs``                  pairs       ``pairs.txt`` (10 folds), as indices into lfw/images
``lfw/tipim``                  attackers   TIP-IM's attackers: the first 500 same-person pairs
=============================  ==========  ================================================

Users bring the files; jaxprotect ships only file names, boxes and the rules that pick records.
Each builder's module docstring says exactly which upstream file or thread each list comes from
and what could not be found (notably AMT-GAN's CelebA-HQ list and LADN's 332, which exist only
inside upstream archives, and AMT-GAN's split of the photos into four target groups, which is
unpublished).

Build, then read
----------------
::

    from jaxprotect import datasets
    datasets.build("photo_folder", manual_dir="~/Pictures/party", data_dir="~/jp_data", recursive=True)
    photos = datasets.load("photo_folder", data_dir="~/jp_data")      # Records: len, [i]
    rec = photos[0]       # {"path": "a/b.jpg", "image": <original bytes>, "sha256": ..., "size_bytes": ...}
    pixels = datasets.decode_image(rec)                               # uint8 RGB [H, W, 3], 0..255

:func:`build` writes ``array_record`` files under ``data_dir`` with ``tfds.core.GeneratorBasedBuilder``
(``manual_dir`` is only read; nothing is downloaded; TensorFlow is never imported). It reuses a
dataset already built from the same files and options, and refuses one built from other files
(:class:`SourceChangedError` names the difference; ``overwrite=True`` rebuilds). :func:`load`
returns :class:`Records` over ``builder.as_data_source(split)`` with text fields as ``str``;
the raw tfds data source works everywhere too (text as ``bytes``). Records keep each photo's
original file bytes, so originals round-trip bit for bit; :func:`decode_image` decodes them with
:func:`jaxprotect.io.decode_photo`, the decoder of :func:`jaxprotect.io.read_photo` (EXIF
orientation applied, alpha on white, size limits, one :class:`jaxprotect.io.PhotoError` per bad
photo), giving ``uint8`` RGB ``[H, W, 3]`` in 0..255.

Input pipeline (grain)
----------------------
::

    pipeline = datasets.input_pipeline(photos, batch_size=8, indices=not_done)  # sharded by JAX process
    it = iter(pipeline)
    batch = next(it)                 # Batch(indices=int64[8], records=(dict, ...))
    state = it.get_state()           # JSON-ready; it2 = iter(pipeline); it2.set_state(state) resumes

Each process reads its own contiguous share of the selected indices (``jax.process_index()`` of
``jax.process_count()``), in ascending index order; ``equal_batches=True`` pads every process to
the same number of full batches (index ``-1``). The iterator state also saves through orbax with
``grain.checkpoint.CheckpointSave``/``CheckpointRestore`` (one JSON file per process).
"""
from jaxprotect.datasets.amtgan import AMTGAN_TARGETS, AmtganTarget, diffam_test_names
from jaxprotect.datasets.api import DATASETS, Records, build, builder, load
from jaxprotect.datasets.errors import DatasetError, ManualDirError, NotBuiltError, SourceChangedError
from jaxprotect.datasets.files import decode_image
from jaxprotect.datasets.grain_input import Batch, input_pipeline, shard_bounds
from jaxprotect.datasets.identity_folder import identity_of
from jaxprotect.datasets.lfw import parse_pairs, tipim_attackers

__all__ = [
    "DATASETS", "build", "builder", "load", "Records", "decode_image", "input_pipeline", "Batch", "shard_bounds",
    "AMTGAN_TARGETS", "AmtganTarget", "diffam_test_names", "identity_of", "parse_pairs", "tipim_attackers",
    "DatasetError", "ManualDirError", "NotBuiltError", "SourceChangedError",
]
