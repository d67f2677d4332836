"""What every jaxprotect dataset builder shares: options, one split per dataset, the source record.

A builder is a ``tfds.core.GeneratorBasedBuilder`` that reads the user's own files from
``manual_dir`` (nothing is downloaded) and writes ``array_record`` files, read back with
``builder.as_data_source(split)``; TensorFlow is never imported. Each dataset (a builder, or one
of its configs) has exactly one split. Records are written in the order they are generated
(``disable_shuffling``), which each builder documents (sorted paths, or list-file order), so a
record's index is stable and meaningful.

``info.metadata["source"]`` records where the records came from: the ``manual_dir``, the
options, and a fingerprint of the files read. :func:`jaxprotect.datasets.build` compares it
with the files given now and refuses to reuse, or silently replace, a dataset built from other
files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import tensorflow_datasets as tfds

__all__ = ["LocalBuilder"]


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base class: ``OPTIONS`` (name -> default) are keyword arguments of the constructor,
    ``SPLITS`` maps each config name (``None`` when there are no configs) to its one split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    OPTIONS: ClassVar[dict[str, Any]] = {}
    CONFIG_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {}  # config -> the options it reads (default: all)
    SPLITS: ClassVar[dict[str | None, str]] = {}

    def __init__(self, *, data_dir, config: str | None = None, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(
                f"{self.name} has no option {', '.join(unknown)}; its options are: "
                f"{', '.join(sorted(self.OPTIONS)) or 'none'}"
            )
        self.options = {**self.OPTIONS, **options}
        super().__init__(data_dir=os.fspath(data_dir), config=config, file_format="array_record")

    # tfds 4.9.10's own `code_path` (used only to look for a checksums.tsv of downloads, which these
    # builders never have) needs the `importlib_resources` backport on Python >= 3.9 for builders
    # defined inside a package; None is what tfds itself uses for builders defined in __main__.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        return None

    @property
    def split_name(self) -> str:
        """The dataset's only split."""
        return self.SPLITS[self.builder_config.name if self.builder_config else None]

    @property
    def dataset_name(self) -> str:
        """``name`` or ``name/config``, as :func:`jaxprotect.datasets.build` takes it."""
        return f"{self.name}/{self.builder_config.name}" if self.builder_config else self.name

    def _features(self) -> tfds.features.FeaturesDict:
        raise NotImplementedError

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.builder_config.description if self.builder_config else None) or self.__doc__,
            features=self._features(),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def describe_source(self, manual_dir: Path) -> dict:
        """JSON-ready description of the files this dataset would be built from now: raises
        :class:`~jaxprotect.datasets.errors.ManualDirError` if they are missing or misnamed."""
        config = self.builder_config.name if self.builder_config else None
        source = {
            "dataset": self.dataset_name,
            "manual_dir": os.path.realpath(manual_dir),
            "options": {k: (os.fspath(v) if isinstance(v, os.PathLike) else v) for k, v in self.options.items()
                        if k in self.CONFIG_OPTIONS.get(config, self.OPTIONS)},
            **self._describe_files(Path(manual_dir)),
        }
        return json.loads(json.dumps(source))

    def _describe_files(self, manual_dir: Path) -> dict:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        manual_dir = Path(os.fspath(dl_manager.manual_dir))
        self.info.metadata["source"] = self.describe_source(manual_dir)
        return {self.split_name: self._generate_examples(manual_dir)}
