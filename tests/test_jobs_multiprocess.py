"""A job over two local processes (``jax.distributed`` on localhost, gloo collectives, two CPU
devices each) protecting a folder of 6 real photos with PGD (1 step, the shipped surrogate):
one process is killed with SIGKILL mid-run and the other stopped with SIGTERM; the job is then
finished by ONE process. Every photo is done exactly once, nothing partial or temporary is left,
and the outputs equal those of an uninterrupted single-process run."""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.golden import asset_path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ("img5.jpg", "img12.jpg", "img25.jpg", "img46.jpg", "img50.jpg", "img51.jpg")  # small, one face each
TIMEOUT = 300


def _env(cache: Path) -> dict:
    env = dict(os.environ)
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
               # the processes share compiled executables (each would compile MTCNN and PGD again)
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               TF_CPP_MIN_LOG_LEVEL="2")
    return env


def _command(inputs, out, *extra):
    return [sys.executable, "-m", "jaxprotect.cli", "protect", "--method", "pgd", "--steps", "1", "--seed", "3",
            str(inputs), "-o", str(out), "--progress", "json", *extra]


class Proc:
    """A running ``jaxprotect protect`` whose stderr JSON lines are read in a thread."""

    def __init__(self, cmd, env):
        self.p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                  cwd=ROOT)
        self.lines: list[str] = []
        self.events: queue.Queue = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line)
            if line.startswith("{"):
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    pass

    def wait_event(self, kind: str, timeout: float = TIMEOUT) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                e = self.events.get(timeout=1)
            except queue.Empty:
                if self.p.poll() is not None and self.events.empty():
                    break
                continue
            if e.get("event") == kind:
                return e
        raise AssertionError(f"no {kind!r} event; output:\n{''.join(self.lines)[-4000:]}")

    def drain(self) -> None:
        """Forget the events seen so far (the next :meth:`wait_event` waits for a new one)."""
        while not self.events.empty():
            self.events.get()

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError(f"process did not end; output:\n{''.join(self.lines)[-4000:]}")
        self._t.join(timeout=10)
        return rc


def _port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _pair(inputs, out, env):
    port = _port()
    return [Proc(_command(inputs, out, "--coordinator", f"localhost:{port}", "--num-processes", "2",
                          "--process-id", str(i)), env) for i in range(2)]


def _signal_after_first_photo(signals: dict, timeout: float = TIMEOUT) -> None:
    """Send each process its signal as soon as it reports a photo done (or has ended)."""
    waiting = dict(signals)
    end = time.monotonic() + timeout
    while waiting and time.monotonic() < end:
        for proc, sig in list(waiting.items()):
            done = False
            while not proc.events.empty():
                done |= proc.events.get().get("event") == "photo"
            if done or proc.p.poll() is not None:
                if proc.p.poll() is None:
                    proc.p.send_signal(sig)
                del waiting[proc]
        time.sleep(0.05)
    assert not waiting, "no photo done in time"


def _leftovers(out: Path) -> list:
    """Temporary or partial files anywhere in the job folder."""
    return [str(p) for p in out.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        # The central square at 320 px: one photo size, so MTCNN compiles its pyramid once.
        img = Image.open(asset_path(f"faces/deepface/{name}")).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img.crop((left, top, left + side, top + side)).resize((320, 320), Image.Resampling.BILINEAR).save(
            folder / name, quality=95)
    return folder


def test_killed_and_stopped_processes_then_one_process_finish_every_photo_once(inputs, tmp_path):
    env = _env(tmp_path / "xla")
    reference = tmp_path / "reference"
    ref = Proc(_command(inputs, reference), env)
    assert ref.finish() == 0, "".join(ref.lines)[-3000:]  # also fills the compilation cache the others read
    out = tmp_path / "job"

    # Run 1, two processes, each with 3 photos: SIGKILL process 1 as soon as it has done one photo,
    # SIGTERM process 0 as soon as it has done one.
    p0, p1 = _pair(inputs, out, env)
    _signal_after_first_photo({p0: signal.SIGTERM, p1: signal.SIGKILL})
    assert p0.finish() == 143, "".join(p0.lines)[-3000:]
    assert p1.finish() == -signal.SIGKILL
    run1 = json.loads((out / "job.json").read_text())
    done1 = sum(p["status"] == "done" for p in run1["photos"])
    assert 1 <= done1 < len(PHOTOS)

    # Run 2, ONE process: resumes what the two left and finishes the job.
    last = Proc(_command(inputs, out), env)
    start = last.wait_event("start")
    assert last.finish() == 0, "".join(last.lines)[-3000:]
    assert start["processes"] == 1 and start["pending"] == len(PHOTOS) - done1

    manifest = json.loads((out / "job.json").read_text())
    assert [r["processes"] for r in manifest["runs"]] == [2, 1]
    for p in manifest["photos"]:
        dones = [h for h in p["history"] if h["status"] == "done"]
        assert p["status"] == "done" and len(dones) == 1, p
    assert _leftovers(out) == [] and not (out / ".jaxprotect").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"done": len(PHOTOS), "failed": 0, "left": 0}

    for name in PHOTOS:
        stem = Path(name).stem
        a = np.asarray(Image.open(reference / f"{stem}.pgd.png"))
        b = np.asarray(Image.open(out / f"{stem}.pgd.png"))
        np.testing.assert_array_equal(a, b)
        ra = json.loads((reference / f"{stem}.pgd.json").read_text())
        rb = json.loads((out / f"{stem}.pgd.json").read_text())
        assert ra["faces"] == rb["faces"] and ra["key"] == rb["key"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["job.json", "summary.json", "summary.md"]
                           + [f"{Path(n).stem}.pgd{s}" for n in PHOTOS for s in (".png", ".side_by_side.png", ".json")])


def _worker(out, inputs, target, env, *extra):
    cmd = [sys.executable, "-m", "helpers.c2p_job", str(out), str(inputs), str(target), *extra]
    env = dict(env, PYTHONPATH=str(ROOT / "tests") + os.pathsep + env["PYTHONPATH"])
    return Proc(cmd, env)


@pytest.mark.slow
def test_clip2protect_batches_span_two_processes(tmp_path):
    """CLIP2Protect (small configuration) with its batches spread over the 4 devices of 2 processes
    (global arrays from each process's photos, a stand-in filling the second process's batch)
    gives exactly the photos of a one-process run on 2 devices; stopped with SIGTERM during the
    search, both processes save the round and exit 143; run again on two processes it resumes
    from the saved step, and on one process (another count) its photos start again; both end
    exactly as the uninterrupted run."""
    from helpers.c2p_small import small_photos

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, img in enumerate(small_photos(3, 24, seed=5)):
        Image.fromarray(img).save(inputs / f"p{i}.png")
    target = tmp_path / "target.png"
    Image.fromarray(small_photos(1, 24, seed=9)[0]).save(target)
    env = _env(tmp_path / "xla")
    ref = _worker(tmp_path / "ref", inputs, target, env, "--steps", "6")
    assert ref.finish() == 0, "".join(ref.lines)[-3000:]

    def pair(out, stop_in_search=False):
        port = _port()
        # Stopped runs take 1 s a step, so the signal surely lands inside the search (6 s long).
        paced = ("--step-delay", "1.0") if stop_in_search else ()
        procs = [_worker(out, inputs, target, env, "--steps", "6", "--coordinator", f"localhost:{port}",
                         "--num-processes", "2", "--process-id", str(i), *paced) for i in range(2)]
        if stop_in_search:
            while True:
                e = procs[0].wait_event("stage")
                if e["stage"].endswith(": search"):
                    break
            time.sleep(0.5)
            for p in procs:
                p.p.send_signal(signal.SIGTERM)
        return [p.finish() for p in procs], procs

    def same_as_reference(out):
        for i in range(3):
            a = np.asarray(Image.open(tmp_path / "ref" / f"p{i}.clip2protect.png"))
            np.testing.assert_array_equal(a, np.asarray(Image.open(out / f"p{i}.clip2protect.png")))
            ra = json.loads((tmp_path / "ref" / f"p{i}.clip2protect.json").read_text())
            rb = json.loads((out / f"p{i}.clip2protect.json").read_text())
            assert ra["loss_curve"] == rb["loss_curve"] and ra["victim"] == rb["victim"]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"] == {"done": 3, "failed": 0, "left": 0}

    codes, procs = pair(tmp_path / "job")
    assert codes == [0, 0], "".join(procs[0].lines + procs[1].lines)[-4000:]
    same_as_reference(tmp_path / "job")  # each device computes the same one-photo shard either way

    for out, finish in ((tmp_path / "again", "two"), (tmp_path / "one", "one")):
        codes, procs = pair(out, stop_in_search=True)
        assert codes == [143, 143], "".join(procs[0].lines + procs[1].lines)[-4000:]
        rounds = list((out / ".jaxprotect" / "rounds").iterdir())
        assert len(rounds) == 1 and (rounds[0] / "search").is_dir()  # the round saved its search state
        if finish == "two":
            codes, procs = pair(out)
            assert codes == [0, 0], "".join(procs[0].lines + procs[1].lines)[-4000:]
            searched = [e for e in procs[0].lines if '"stage": "2 photos: search"' in e and '"step"' in e]
            assert json.loads(searched[0])["step"] > 1  # resumed inside the search
        else:
            last = _worker(out, inputs, target, env, "--steps", "6")
            assert last.finish() == 0, "".join(last.lines)[-3000:]
            assert any("another number of processes" in line for line in last.lines)
        same_as_reference(out)
