"""Protection jobs: inputs (files, folders, globs, --recursive, datasets), the manifest (settings
refused by name, re-runs skip what is done, --overwrite, changed inputs), the plan (every photo
once on any number of processes), summaries, JSON progress lines, stop requests and output-path
errors. A trivial runner (brightens the photo) keeps these fast; the methods' own runners are
tested in test_cli_protect_pixel.py, test_jobs_clip2protect.py and test_jobs_multiprocess.py."""
from __future__ import annotations

import io
import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from jaxprotect.cli import main
from jaxprotect.jobs import (
    InputError,
    JobOptions,
    JobSettingsError,
    PhotoOutcome,
    StopRequested,
    StopSignals,
    resolve_inputs,
    run_job,
)
from jaxprotect.jobs.manifest import assign_stems, differences
from jaxprotect.jobs.plan import plan_batches


class Brighten:
    """A runner that adds ``amount`` grey levels; photos named ``bad*`` fail; ``stop_after`` photos
    done, it requests a stop through ``stopper``."""

    method = "brighten"
    batch_size = 1
    extra_inputs = ()
    ignored_settings = ("execution",)
    spans_processes = False

    def __init__(self, amount=10, stopper=None, stop_after=None, batch_size=1):
        self.amount, self.stopper, self.stop_after, self.batch_size = amount, stopper, stop_after, batch_size
        self.calls = []

    def settings_dict(self):
        return {"amount": self.amount, "execution": {"batch_size": self.batch_size}}

    def protect(self, tasks, progress, control=None):
        out = []
        for t in tasks:
            if control is not None and control.stop_requested():
                out.append(StopRequested())
                continue
            self.calls.append(t.stem)
            progress.stage(f"{t.stem}: brighten", 2)
            progress.step()
            progress.step()
            if t.stem.startswith("bad"):
                out.append(ValueError("this photo is refused on purpose"))
                continue
            img = np.clip(t.photo.astype(int) + self.amount, 0, 255).astype(np.uint8)
            out.append(PhotoOutcome(img, np.concatenate([t.photo, img], 1), {"seconds": 0.0}, f"{t.path}: brightened",
                                    verdict={"decision": "brighter"}))
            if self.stop_after is not None and len(self.calls) == self.stop_after:
                self.stopper.request(signal.SIGTERM)
        return out


def _photo(path, value=100, size=(24, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    for i, name in enumerate(["a.png", "b.jpg", "c.png"]):
        _photo(d / name, 50 + i)
    _photo(d / "sub" / "d.png", 90)
    _photo(d / "sub" / "deeper" / "e.png", 91)
    (d / "notes.txt").write_text("not a photo")
    (d / ".hidden.png").write_bytes(b"x")
    return d


def _run(inputs, runner, out, stream=None, **options):
    stream = stream if stream is not None else io.StringIO()
    opts = JobOptions(progress=options.pop("progress", "none"), **options)
    return run_job(inputs, runner, out, options=opts, stream=stream), stream


# -- inputs -------------------------------------------------------------------------------------

def test_folders_globs_and_recursive(folder, tmp_path):
    names = lambda inp: sorted(os.path.basename(p.id) for p in inp.photos)  # noqa: E731
    assert names(resolve_inputs([str(folder)])) == ["a.png", "b.jpg", "c.png"]
    got = resolve_inputs([str(folder)], recursive=True)
    assert names(got) == ["a.png", "b.jpg", "c.png", "d.png", "e.png"]
    assert any("3 photos" in n for n in resolve_inputs([str(folder)]).notes)
    assert "--recursive" in resolve_inputs([str(folder)]).notes[0]  # says what it left out
    assert names(resolve_inputs([str(folder / "*.png")])) == ["a.png", "c.png"]
    assert names(resolve_inputs([str(folder / "**" / "*.png")])) == ["a.png", "c.png", "d.png", "e.png"]
    # the same file through a folder and by name is one photo; a missing file is kept (it fails as a photo)
    got = resolve_inputs([str(folder), str(folder / "a.png"), str(tmp_path / "missing.jpg")])
    assert names(got) == ["a.png", "b.jpg", "c.png", "missing.jpg"]
    with pytest.raises(InputError, match="no photo matches"):
        resolve_inputs([str(folder / "*.gif")])
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    _photo(empty / "sub" / "x.png")
    with pytest.raises(InputError, match="--recursive"):
        resolve_inputs([str(empty)])
    with pytest.raises(InputError, match="--data-dir"):
        resolve_inputs([], dataset="photo_folder")


def test_dataset_input(folder, tmp_path):
    from jaxprotect import datasets

    datasets.build("photo_folder", manual_dir=folder, data_dir=tmp_path / "data", recursive=True)
    inputs = resolve_inputs([], dataset="photo_folder", data_dir=str(tmp_path / "data"))
    out = tmp_path / "out"
    result, _ = _run(inputs, Brighten(), out)
    assert result.exit_code == 0
    manifest = json.loads((out / "job.json").read_text())
    assert sorted(p["stem"] for p in manifest["photos"]) == ["a", "b", "c", "d", "e"]
    assert {p["source"] for p in manifest["photos"]} == {"dataset"}
    assert manifest["photos"][0]["id"] == "dataset:photo_folder:a.png"
    orig = np.asarray(Image.open(folder / "sub" / "d.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "d.brighten.png")), orig.astype(int) + 10)
    # again: the dataset is known (not listed again), nothing is left to do
    again, stream = _run(resolve_inputs([], dataset="photo_folder", data_dir=str(tmp_path / "data")), Brighten(), out)
    assert again.exit_code == 0 and not again.events and "5 already done" in stream.getvalue()
    with pytest.raises(InputError, match="not built"):
        resolve_inputs([], dataset="photo_folder", data_dir=str(tmp_path / "nothing"))


# -- the job folder -------------------------------------------------------------------------------

def test_rerun_skips_done_photos_and_overwrite_redoes_them(folder, tmp_path):
    out = tmp_path / "out"
    first = Brighten()
    result, _ = _run([str(folder)], first, out)
    assert result.exit_code == 0 and sorted(first.calls) == ["a", "b", "c"]
    again = Brighten()
    result, stream = _run([str(folder)], again, out)
    assert again.calls == [] and "3 already done (skipped; --overwrite redoes them)" in stream.getvalue()
    redo = Brighten()
    result, stream = _run([str(folder)], redo, out, overwrite=True)
    assert sorted(redo.calls) == ["a", "b", "c"] and "--overwrite: 3 photos" in stream.getvalue()
    manifest = json.loads((out / "job.json").read_text())
    assert all([h["status"] for h in p["history"]] == ["done", "done"] for p in manifest["photos"])
    # a new photo in the folder joins the job; a changed one is redone
    _photo(folder / "f.png", 7)
    _photo(folder / "a.png", 200)
    more = Brighten()
    result, stream = _run([str(folder)], more, out, progress="json")
    assert sorted(more.calls) == ["a", "f"]
    assert "1 new photos" in stream.getvalue() and "1 photos changed" in stream.getvalue()
    photos = [json.loads(line) for line in stream.getvalue().splitlines() if '"event": "photo"' in line]
    assert [(e["done"], e["total"]) for e in photos] == [(3, 4), (4, 4)]  # the 2 done earlier count as done


def test_other_settings_are_refused_by_name(folder, tmp_path):
    out = tmp_path / "out"
    _run([str(folder)], Brighten(amount=10), out)
    with pytest.raises(JobSettingsError, match=r"amount: 10 -> 11"):
        _run([str(folder)], Brighten(amount=11), out)
    with pytest.raises(JobSettingsError, match=r"seed: 0 -> 5"):
        _run([str(folder)], Brighten(amount=10), out, seed=5)
    with pytest.raises(JobSettingsError, match=r"image_format"):
        _run([str(folder)], Brighten(amount=10), out, image_format="webp")
    # how the computation is batched does not change the result: allowed
    result, _ = _run([str(folder)], Brighten(amount=10, batch_size=2), out)
    assert result.exit_code == 0
    assert differences({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 2]}, "d": 1}) == \
        ["a.b: 1 -> 2", 'd: "<unset>" -> 1']


def test_summary_lists_every_photo(folder, tmp_path):
    _photo(folder / "bad.png")
    (folder / "broken.jpg").write_text("not a JPEG")
    out = tmp_path / "out"
    result, _ = _run([str(folder)], Brighten(), out)
    assert result.exit_code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 3, "failed": 2, "left": 0} and summary["state"] == "complete"
    by = {p["stem"]: p for p in summary["photos"]}
    assert by["a"]["verdict"] == {"decision": "brighter"} and by["a"]["outputs"]["photo"].endswith("a.brighten.png")
    assert "refused on purpose" in by["bad"]["reason"] and by["broken"]["error_type"] == "NotAnImageError"
    md = (out / "summary.md").read_text()
    assert "## Done: 3" in md and "## Failed: 2" in md and "refused on purpose" in md
    assert f"| {folder / 'a.png'} | a.brighten.png | brighter |" in md


def test_stop_request_keeps_what_is_done_and_a_rerun_finishes(folder, tmp_path):
    out = tmp_path / "out"
    stop = StopSignals()
    runner = Brighten(stopper=stop, stop_after=1)
    stream = io.StringIO()
    result = run_job([str(folder)], runner, out, options=JobOptions(progress="json"), stream=stream, stop=stop)
    assert result.state == "interrupted" and result.exit_code == 143 and runner.calls == ["a"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": 1, "failed": 0, "left": 2} and summary["state"] == "interrupted"
    assert "## Left (run the same command again to continue): 2" in (out / "summary.md").read_text()
    end = [json.loads(line) for line in stream.getvalue().splitlines() if '"end"' in line][-1]
    assert end["state"] == "interrupted" and end["done"] == 1 and end["left"] == 2
    rest = Brighten()
    result, _ = _run([str(folder)], rest, out)
    assert result.exit_code == 0 and sorted(rest.calls) == ["b", "c"]


def test_progress_json_lines(folder, tmp_path):
    result, stream = _run([str(folder)], Brighten(), tmp_path / "out", progress="json", json_interval_s=0.0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "message" and "start" in kinds and kinds[-1] == "end"
    start = next(e for e in lines if e["event"] == "start")
    assert start["photos"] == 3 and start["pending"] == 3 and start["processes"] == 1
    photos = [e for e in lines if e["event"] == "photo"]
    assert [e["done"] for e in photos] == [1, 2, 3] and all(e["total"] == 3 and e["process"] == 0 for e in photos)
    assert photos[-1]["eta_s"] == 0.0 and photos[0]["elapsed_s"] >= 0
    steps = [e for e in lines if e["event"] == "step"]
    assert [(e["step"], e["steps"]) for e in steps[:2]] == [(1, 2), (2, 2)]


def test_job_folder_outputs_are_not_read_back_as_inputs(folder, tmp_path):
    out = folder  # protect a folder into itself: the outputs land next to the photos
    _run([str(folder)], Brighten(), out)
    again = Brighten()
    result, stream = _run([str(folder)], again, out)
    assert again.calls == [] and "its own outputs are not inputs" in stream.getvalue()


# -- the plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_plan_gives_every_photo_to_exactly_one_process(count):
    pending = [f"p{i:02d}" for i in range(11)]
    saved = [{"photos": ["p03", "p04"], "latest": ("search", 20)}, {"photos": ["p07", "pXX"], "latest": ("search", 5)}]
    plans = [plan_batches(pending, 2, saved, i, count) for i in range(count)]
    got = [p for plan in plans for b in plan for p in b.photos]
    assert sorted(got) == pending  # each once; a saved batch with a photo not pending is not resumed
    resumed = [b for plan in plans for b in plan if b.saved]
    assert [(b.photos, b.start) for b in resumed] == [(("p03", "p04"), ("search", 20))]
    fresh = [p for plan in plans for b in plan if not b.saved for p in b.photos]
    assert fresh == [p for p in pending if p not in ("p03", "p04")]  # contiguous shares, in order
    lock = [plan_batches(pending, 2, saved, i, count, lockstep=True) for i in range(count)]
    assert len({len(p) for p in lock}) == 1  # every process runs as many batches
    assert len({tuple(p[k].start or () for p in lock) for k in range(len(lock[0]))}) >= 1
    for k in range(len(lock[0])):
        assert len({p[k].start for p in lock}) == 1  # the k-th batches of all processes start together


def test_stems_stay_unique_and_stable():
    stems = assign_stems(set(), {"/a/x.jpg": "/a/x.jpg", "/b/x.png": "/b/x.png", "/c/y.jpg": "/c/y.jpg"})
    assert stems["/c/y.jpg"] == "y" and stems["/a/x.jpg"] != stems["/b/x.png"]
    assert stems["/a/x.jpg"].startswith("x-") and len(set(stems.values())) == 3
    later = assign_stems(set(stems.values()), {"/d/y.jpg": "/d/y.jpg"})
    assert later["/d/y.jpg"].startswith("y-")  # "y" is taken: the old photo keeps its name


# -- output-path errors (one line each, before any network is loaded) ------------------------------

def test_output_path_errors_are_one_clear_line(folder, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [(a_file, "exists and is not a folder"), (a_file / "sub", "cannot create output folder")]
    if os.geteuid() != 0:  # root writes into read-only folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((ro, "is not writable"))
    for out, message in cases:
        rc = main(["protect", "--method", "pgd", str(folder), "-o", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.count("\n") == 0 and err.startswith("error: ") and message in err, err
    rc = main(["protect", "--method", "pgd", str(folder / "*.gif"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"error: no photo matches '{folder / '*.gif'}'"
    rc = main(["protect", "--method", "pgd", str(folder), "-o", str(tmp_path / "o"), "--coordinator", "h:1"])
    assert rc == 2 and "go together" in capsys.readouterr().err
