"""Progress of a protection run on the console: photos done out of the total, and the current
photo's stage and steps (the first step of a stage that compiles says so)."""
from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """Two tqdm bars on stderr: photos (done / total, elapsed, estimate) and the current stage's steps.

    ``enabled=False`` prints nothing. Runners call :meth:`stage` when a stage begins (with
    ``compiles=True`` when its first step also compiles the step function), :meth:`step` after
    each step, and the driver calls :meth:`photo_done` after each photo.
    """

    def __init__(self, total_photos: int, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.photos = self.steps = None
        self._stage = ""
        self._compiling = False
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm
            self.photos = tqdm(total=total_photos, desc="photos", unit="photo", file=self.stream, position=0,
                               dynamic_ncols=True)

    def stage(self, name: str, total: int | None = None, compiles: bool = False) -> None:
        """Begin stage ``name`` of the current photo with ``total`` steps (None: no step count)."""
        self._stage, self._compiling = name, compiles
        if not self.enabled:
            return
        if self.steps is None:
            self.steps = self._tqdm(total=total, unit="step", file=self.stream, position=1, leave=False,
                                    dynamic_ncols=True)
        self.steps.reset(total=total)
        self.steps.set_description(f"{name}: compiling (first step only)" if compiles else name)

    def step(self, n: int = 1) -> None:
        """``n`` more steps of the current stage are done."""
        if not self.enabled or self.steps is None:
            return
        if self._compiling:
            self._compiling = False
            self.steps.set_description(self._stage)
        self.steps.update(n)

    def photo_done(self, n: int = 1) -> None:
        """``n`` more photos finished (protected or failed)."""
        if self.enabled:
            self.photos.update(n)

    def write(self, line: str) -> None:
        """Print a line without breaking the bars."""
        if self.enabled:
            self._tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bars."""
        for bar in (self.steps, self.photos):
            if bar is not None:
                bar.close()
        self.steps = self.photos = None
