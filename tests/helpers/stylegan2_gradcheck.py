"""Float64 finite-difference check of StyleGAN2 gradients w.r.t. W+ and the noise maps.

Run as a script (x64 must be enabled before JAX starts, so tests call it in a subprocess)::

    python tests/helpers/stylegan2_gradcheck.py small        # size-8 generator, rule weights
    python tests/helpers/stylegan2_gradcheck.py GOLDEN.npz   # the golden's generator (e.g. stylegan2_256)

Loss: mean(image * R) for a fixed random R. Compares ``jax.grad`` with central differences at
single coordinates of W+ and of two noise maps, and along one random direction in W+ and one
in noise space. Prints one JSON line: {name: [autodiff, finite difference], ...}.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository (jaxprotect)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (helpers)

from jaxprotect.models.stylegan2 import load_stylegan2  # noqa: E402
from helpers.stylegan2_helpers import small_state_dict  # noqa: E402
from helpers.weight_rule import rule_weights  # noqa: E402

EPS = 1e-7  # leaky-ReLU kinks make larger steps inexact along random directions


def main(which: str) -> dict:
    if which == "small":
        g = load_stylegan2(small_state_dict(seed=3, size=8))
        wplus = np.random.default_rng(5).standard_normal((1, g.n_latent, g.style_dim))
    else:
        golden = dict(np.load(which, allow_pickle=False))
        g = load_stylegan2(rule_weights(golden))
        wplus = golden["wplus"][:1]
    f64 = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)  # noqa: E731
    params, noise = f64(g.params), f64(list(g.noise))
    w0 = jnp.asarray(wplus, jnp.float64)
    rng = np.random.default_rng(1)
    r = jnp.asarray(rng.standard_normal((1, g.size, g.size, 3)))

    def loss(w, nz):
        return jnp.mean(g.synthesis_apply(params, w, nz) * r)

    value = jax.jit(loss)
    gw, gn = jax.jit(jax.grad(loss, argnums=(0, 1)))(w0, noise)

    def central(plus, minus):
        return (float(value(*plus)) - float(value(*minus))) / (2 * EPS)

    out = {}
    last = g.num_layers - 1
    for row, col in ((0, 3), (g.n_latent // 2, 17), (g.n_latent - 1, g.style_dim - 5)):
        e = jnp.zeros_like(w0).at[0, row, col].set(EPS)
        out[f"wplus[{row},{col}]"] = [float(gw[0, row, col]), central((w0 + e, noise), (w0 - e, noise))]
    for i in (1, last):
        r_i = noise[i].shape[1]
        idx = (0, r_i // 2, r_i // 3, 0)
        plus = [n.at[idx].add(EPS) if j == i else n for j, n in enumerate(noise)]
        minus = [n.at[idx].add(-EPS) if j == i else n for j, n in enumerate(noise)]
        out[f"noise{i}{list(idx)}"] = [float(gn[i][idx]), central((w0, plus), (w0, minus))]
    vw = jnp.asarray(rng.standard_normal(w0.shape))
    vn = [jnp.asarray(rng.standard_normal(n.shape)) for n in noise]
    out["direction_wplus"] = [float(jnp.sum(gw * vw)), central((w0 + EPS * vw, noise), (w0 - EPS * vw, noise))]
    plus = [a + EPS * b for a, b in zip(noise, vn)]
    minus = [a - EPS * b for a, b in zip(noise, vn)]
    out["direction_noise"] = [float(sum(jnp.sum(a * b) for a, b in zip(gn, vn))), central((w0, plus), (w0, minus))]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
