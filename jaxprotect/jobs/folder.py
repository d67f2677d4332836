"""The job folder on disk: checked before any work, cleaned of what killed writers left, never
read back as input, and each protected photo's three files written atomically."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from jaxprotect.io.naming import output_paths, write_json
from jaxprotect.jobs.checkpoints import batches_dir, rounds_dir
from jaxprotect.jobs.inputs import Inputs
from jaxprotect.jobs.status import status_dir
from jaxprotect.jobs.tasks import PhotoOutcome, PhotoTask

__all__ = ["prepare_output_dir", "clean_temporaries", "drop_own_outputs", "write_outputs"]

_TEMPORARY = re.compile(r"^\..+\.tmp$")


def prepare_output_dir(out_dir) -> Path:
    """Create ``out_dir`` if needed and check it is a writable folder; raises ``ValueError`` with one
    clear line otherwise (before any work starts)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create output folder {out}: {e.strerror or e}") from None
    probe = out / f".jaxprotect-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"output folder {out} is not writable: {e.strerror or e}") from None
    return out


def clean_temporaries(out: Path) -> int:
    """Remove what a killed writer left: hidden ``.*.tmp`` files of the job folder and its state
    folders, and orbax's unfinished step folders."""
    n = 0
    for folder in (out, status_dir(out)):
        if folder.is_dir():
            for p in folder.iterdir():
                if (_TEMPORARY.match(p.name) or p.name.startswith(("alive-run-", "left-run-"))) and p.is_file():
                    p.unlink(missing_ok=True)
                    n += 1
    for root in (batches_dir(out), rounds_dir(out)):
        if not root.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(root):
            for d in list(dirnames):
                if ".orbax-checkpoint-tmp" in d:
                    shutil.rmtree(os.path.join(dirpath, d), ignore_errors=True)
                    dirnames.remove(d)
                    n += 1
    return n


def drop_own_outputs(inputs: Inputs, out: Path, method: str) -> list[str]:
    """Leave out input files that are this job's own outputs (a job folder read back as input)."""
    out_real = os.path.realpath(out)
    kept, dropped = [], []
    pattern = re.compile(rf"\.{re.escape(method)}(\.side_by_side)?\.(png|webp|jpg)$")
    for p in inputs.photos:
        if os.path.dirname(os.path.realpath(p.id)) == out_real and pattern.search(p.id):
            dropped.append(p.id)
        else:
            kept.append(p)
    inputs.photos = kept
    return [f"{len(dropped)} files of the job folder that are its own outputs are not inputs"] if dropped else []


def write_outputs(out, task: PhotoTask, outcome: PhotoOutcome, runner, image_format: str) -> dict:
    from jaxprotect.io import write_photo

    paths = output_paths(out, task.stem, runner.method, image_format)
    guard = [task.path] + list(runner.extra_inputs)
    write_photo(paths.photo, outcome.image, inputs=guard)
    write_photo(paths.side_by_side, outcome.side_by_side, inputs=guard)
    report = {"input": task.path if task.path.startswith("dataset:") else os.path.abspath(task.path),
              "outputs": paths.as_dict(), **outcome.report}
    write_json(paths.report, report)
    return paths.as_dict()
