"""A CLIP2Protect job (small configuration) stopped mid-optimisation resumes from its last saved
state and ends exactly as an uninterrupted run: killed between two saves (resumes at the last
save), or stopped by a signal (saves where it stopped)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers.c2p_job import small_runner
from helpers.c2p_small import small_photos

from jaxprotect.jobs import JobOptions, StopSignals, run_job
from jaxprotect.jobs.checkpoints import list_batches

class Killed(BaseException):
    """What SIGKILL does to a process, as far as the job folder can tell: nothing more is written."""


class _Hooked:
    """``runner`` whose progress calls ``action()`` once, when a stage named ``...: <stage>`` reaches
    step ``at``; every (stage, steps done) seen is appended to ``seen``."""

    def __init__(self, runner, stage: str, at: int, action, seen: list):
        self._runner, self._stage, self._at, self._action, self.seen = runner, stage, at, action, seen
        self._fired = False

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def protect(self, tasks, progress, control=None):
        hooked = self
        current = {"name": "", "n": 0}

        class Proxy:
            def __getattr__(self, name):
                return getattr(progress, name)

            def stage(self, name, total=None, compiles=False):
                current.update(name=name, n=0)
                progress.stage(name, total, compiles)

            def step(self, n=1):
                current["n"] += n
                hooked.seen.append((current["name"], current["n"]))
                progress.step(n)
                if current["name"].endswith(hooked._stage) and current["n"] == hooked._at and not hooked._fired:
                    hooked._fired = True
                    hooked._action()

        return self._runner.protect(tasks, Proxy(), control)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c2p_in")
    for i, img in enumerate(small_photos(2, 24, seed=3)):  # aligned to the 8 px frame, then pasted back
        Image.fromarray(img).save(folder / f"face{i}.png")
    Image.fromarray(small_photos(1, 24, seed=9)[0]).save(folder.parent / "target.png")
    runner = small_runner(str(folder.parent / "target.png"), finetune_steps=4, steps=6)
    options = JobOptions(seed=1, progress="none", checkpoint_every={"fine-tune": 2, "search": 2})
    reference = tmp_path_factory.mktemp("c2p_ref")
    result = run_job([str(folder)], runner, reference, options=options)
    assert result.exit_code == 0
    return folder, runner, options, reference


def _same_outputs(a, b):
    for stem in ("face0", "face1"):
        np.testing.assert_array_equal(np.asarray(Image.open(a / f"{stem}.clip2protect.png")),
                                      np.asarray(Image.open(b / f"{stem}.clip2protect.png")))
        ra = json.loads((a / f"{stem}.clip2protect.json").read_text())
        rb = json.loads((b / f"{stem}.clip2protect.json").read_text())
        for key in ("loss_curve", "finetune_loss_curve", "victim", "similarity_to_target"):
            assert ra[key] == rb[key], key


@pytest.mark.parametrize("stage", ["search", "fine-tune"])
def test_killed_between_two_saves_resumes_from_the_last(setup, tmp_path, stage):
    folder, runner, options, reference = setup
    out = tmp_path / "job"
    def kill():
        raise Killed

    with pytest.raises(Killed):
        run_job([str(folder)], _Hooked(runner, stage, 3, kill, []), out, options=options)
    (saved,) = list_batches(out)
    assert tuple(saved["latest"]) == (stage, 2)  # saved at step 2; step 3 was lost with the "kill"
    assert not list(out.glob("*.clip2protect.png"))  # nothing written for the photo in progress

    seen = []
    result = run_job([str(folder)], _Hooked(runner, stage, 0, lambda: None, seen), out, options=options)
    assert result.exit_code == 0 and result.state == "complete"
    steps = [s for name, s in seen if name.endswith(stage)]
    assert steps[:2] == [2, 3]  # the resumed batch starts with 2 steps done, then does step 3: not from 0
    _same_outputs(reference, out)
    assert not list_batches(out) and not (out / ".jaxprotect").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 2, "failed": 0, "left": 0}
    assert all(p["verdict"]["model"] == "mobileface" for p in summary["photos"])


def test_a_stop_request_saves_where_it_stopped(setup, tmp_path):
    folder, runner, options, reference = setup
    out = tmp_path / "job"
    stop = StopSignals()
    result = run_job([str(folder)], _Hooked(runner, "search", 3, stop.request, []), out, options=options, stop=stop)
    assert result.state == "interrupted" and result.exit_code == 143
    (saved,) = list_batches(out)
    assert tuple(saved["latest"]) == ("search", 4)  # the step after the request: the next safe point
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 0, "failed": 0, "left": 2} and summary["state"] == "interrupted"
    seen = []
    result = run_job([str(folder)], _Hooked(runner, "search", 0, lambda: None, seen), out, options=options)
    assert result.exit_code == 0
    assert [s for name, s in seen if name.endswith("search")][:2] == [4, 5]
    _same_outputs(reference, out)
