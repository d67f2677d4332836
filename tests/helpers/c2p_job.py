"""A CLIP2Protect job on the small configuration (:mod:`helpers.c2p_small`): the runner with a
fixed-face detector and a stand-in for e4e, and a worker entry point for multi-process tests:

    python -m helpers.c2p_job OUT INPUTS TARGET [--coordinator H:P --num-processes N --process-id I]
        [--batch-size B] [--finetune-steps F] [--steps S] [--step-delay SECONDS]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

SIZE = 8


class FixedFace:
    """The detector of the small configuration: one face in the middle of every photo."""

    def detect(self, photo):
        from jaxprotect.detect.mtcnn_cascade import Detections

        h, w = np.asarray(photo).shape[:2]
        box = np.array([[0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h]], np.float32)
        marks = np.array([[[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]]], np.float32) * [w, h]
        return Detections(box, np.ones(1, np.float32), marks.astype(np.float32))


def encoder(frames):
    """Stand-in for e4e: a W+ code drawn from each frame's pixels (deterministic)."""
    from helpers.c2p_small import small_networks

    nets, _ = small_networks()
    out = []
    for f in np.asarray(frames):
        rng = np.random.default_rng(int(f.astype(np.int64).sum()))
        out.append(rng.standard_normal((nets.synthesis.n_latent, 512)).astype(np.float32))
    return np.stack(out)


def small_runner(target: str, *, finetune_steps: int = 4, steps: int = 6, batch_size: int = 4):
    """A :class:`Clip2ProtectRunner` on the small networks; photos are aligned to the 8 px frame
    (``target``'s face box is fixed for 24x24 photos)."""
    from helpers.c2p_small import small_config, small_networks

    from jaxprotect.methods.clip2protect.config import ExecutionConfig
    from jaxprotect.methods.clip2protect.run import Clip2ProtectRunner, Clip2ProtectSettings

    nets, _ = small_networks()
    cfg = small_config(finetune_steps=finetune_steps, steps=steps, execution=ExecutionConfig(batch_size=batch_size))
    settings = Clip2ProtectSettings(cfg, {}, target, target_box=(4.0, 5.0, 20.0, 19.0))
    return Clip2ProtectRunner(settings, nets=nets, detector=FixedFace(), encoder=encoder)


class _PacedControl:
    """A batch control that waits ``delay`` seconds at every step (where the pipeline asks whether
    to stop), so that a test can signal a process while it is inside a stage."""

    def __init__(self, control, delay: float):
        self._control, self._delay = control, delay

    def __getattr__(self, name):
        return getattr(self._control, name)

    def stop_requested(self) -> bool:
        time.sleep(self._delay)
        return self._control.stop_requested()


class PacedRunner:
    """``runner`` with every step slowed down by ``delay`` seconds (see :class:`_PacedControl`)."""

    def __init__(self, runner, delay: float):
        self._runner, self._delay = runner, delay

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def protect(self, tasks, progress, control=None):
        return self._runner.protect(tasks, progress, None if control is None else _PacedControl(control, self._delay))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("inputs")
    ap.add_argument("target")
    ap.add_argument("--coordinator")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--finetune-steps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--step-delay", type=float, default=0.0)
    args = ap.parse_args(argv)
    from jaxprotect.jobs import JobOptions, initialize, run_job

    info = initialize(args.coordinator, args.num_processes, args.process_id)  # before any JAX computation
    runner = small_runner(args.target, finetune_steps=args.finetune_steps, steps=args.steps,
                          batch_size=args.batch_size)
    if args.step_delay:
        runner = PacedRunner(runner, args.step_delay)
    result = run_job([args.inputs], runner, args.out, options=JobOptions(seed=1, progress="json"), info=info)
    if result.leave_now:
        result.leave()
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
