"""The CLIP2Protect batch sharded over 8 (virtual CPU) devices equals the single-device run.

``--xla_force_host_platform_device_count`` must be set before jax initialises, so the runs happen
in a fresh subprocess. Six photos (padded to eight on the 8-device mesh), fine-tuning with
per-photo generator weights, then the search: both stages shard over the batch axis.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import jax, numpy as np
assert len(jax.devices()) == 8, jax.devices()
from helpers.c2p_small import small_inputs, small_networks
from helpers.c2p_small import photo_keys, small_config
from jaxprotect.methods.clip2protect.pipeline import protect_batch
from jaxprotect.runtime import batch_mesh

cfg = small_config(finetune_steps=1, steps=3)
nets, _ = small_networks()
photos, boxes, w0, temb, eemb = small_inputs(nets, 6)
keys = photo_keys(0, range(6))
runs = {}
for name, mesh in (("one", batch_mesh(jax.devices()[:1])), ("eight", batch_mesh())):
    runs[name] = protect_batch(nets, photos, boxes, keys, temb, eemb, cfg, w0=w0, mesh=mesh)
out = {k: float(np.abs(runs["one"][k] - runs["eight"][k]).max())
       for k in ("protected", "reconstruction", "w", "finetune_loss")}
out["loss"] = float(np.abs(runs["one"]["loss"]["loss"] - runs["eight"]["loss"]["loss"]).max())
out["shape"] = list(runs["eight"]["protected"].shape)
out["frozen_equal"] = bool(np.array_equal(runs["eight"]["w"][:, :2], w0[:, :2]))
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_eight_device_run_equals_single_device_run():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(HERE)], env=env, capture_output=True, text=True,
                          timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["shape"] == [6, 8, 8, 3]
    assert res["frozen_equal"]
    assert res["finetune_loss"] <= 1e-6 and res["reconstruction"] <= 1e-5
    assert res["w"] <= 1e-5 and res["protected"] <= 1e-4 and res["loss"] <= 1e-4
