"""StyleGAN2 generator: ops, gradients, noise handling, loading and conversion (golden parity: test_golden_parity)."""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import jaxprotect
from helpers.golden import golden_path
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models import stylegan2_ops as ops
from jaxprotect.models.stylegan2 import buffer_shapes, load_stylegan2
from helpers.stylegan2_helpers import small_state_dict

HERE = Path(__file__).parent


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------
# ops against direct implementations of the upstream formulas


def _conv_transpose_ref(x, w):
    # conv_transpose2d(stride 2, padding 0) == conv of the 2x-dilated input with the flipped kernel
    k = w.shape[0]
    return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((k - 1, k - 1),) * 2, lhs_dilation=(2, 2),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize("pad", [(1, 1), (2, 1), (0, 0), (-1, 2)])
def test_separable_fir_matches_upfirdn2d(pad):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 7, 3)), jnp.float32)
    k2 = ops.make_kernel([1, 3, 3, 1]) * 4
    np.testing.assert_allclose(ops.fir_filter(x, [1, 3, 3, 1], pad, 4.0), ops.upfirdn2d(x, k2, pad=pad), atol=2e-6)
    np.testing.assert_allclose(ops.fir_upsample2x(x, [1, 3, 3, 1], pad, 4.0), ops.upfirdn2d(x, k2, up=2, pad=pad),
                               atol=2e-6)


def test_upfirdn2d_is_a_true_convolution():
    # an asymmetric kernel shows the flip: upfirdn2d_native convolves with torch.flip(kernel)
    x = jnp.zeros((1, 5, 5, 1)).at[0, 2, 2, 0].set(1.0)
    k = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    out = np.asarray(ops.upfirdn2d(x, k, pad=(1, 1)))[0, :, :, 0]
    np.testing.assert_array_equal(out[1:4, 1:4], k)


@pytest.mark.parametrize("k", [3, 5])
def test_conv_transpose2x_blur(k):
    rng = np.random.default_rng(k)
    x = jnp.asarray(rng.standard_normal((2, 6, 5, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 4, 3)), jnp.float32)
    p0, p1 = ops._upsample_blur_pad(k, (1, 3, 3, 1))
    ref = ops.upfirdn2d(_conv_transpose_ref(x, w), ops.make_kernel([1, 3, 3, 1]) * 4, pad=(p0, p1))
    out = ops.conv_transpose2x_blur(x, jnp.transpose(w, (3, 2, 0, 1)))  # takes (O, I, k, k)
    assert out.shape == ref.shape == (2, 12, 10, 3)
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("k", [3, 5])
def test_conv_transpose2x_blur_gradients_equal_autodiff_of_the_reference(k):
    # the phases' hand-written VJP (_place_taps) against autodiff of zero insertion + upfirdn2d
    rng = np.random.default_rng(10 + k)
    x = jnp.asarray(rng.standard_normal((2, 6, 5, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, 4, 3)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((2, 12, 10, 3)), jnp.float32)
    p0, p1 = ops._upsample_blur_pad(k, (1, 3, 3, 1))

    def ref(x, w):
        return jnp.vdot(ops.upfirdn2d(_conv_transpose_ref(x, w), ops.make_kernel([1, 3, 3, 1]) * 4, pad=(p0, p1)), ct)

    def ours(x, w):
        return jnp.vdot(ops.conv_transpose2x_blur(x, jnp.transpose(w, (3, 2, 0, 1))), ct)

    for got, want in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _modconv_reference(x, weight, style, demodulate, upsample):
    # models/stylegan2/model.py ModulatedConv2d.forward, one sample at a time (= the grouped conv)
    _, o, i, k, _ = weight.shape
    wmod = (1 / np.sqrt(i * k * k)) * weight * style[:, None, :, None, None]
    if demodulate:
        wmod = wmod * (1 / np.sqrt((wmod**2).sum((2, 3, 4)) + 1e-8))[:, :, None, None, None]
    outs = []
    for b in range(x.shape[0]):
        w_hwio = jnp.transpose(jnp.asarray(wmod[b], jnp.float32), (2, 3, 1, 0))
        if upsample:
            y = _conv_transpose_ref(x[b:b + 1], w_hwio)
            y = ops.upfirdn2d(y, ops.make_kernel([1, 3, 3, 1]) * 4, pad=(1, 1))
        else:
            y = lax.conv_general_dilated(x[b:b + 1], w_hwio, (1, 1), ((k // 2, k // 2),) * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=lax.Precision.HIGHEST)
        outs.append(y)
    return np.concatenate(outs)


@pytest.mark.parametrize("mode", ops.MODCONV_MODES)
@pytest.mark.parametrize("k,demodulate,upsample", [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv2d(mode, k, demodulate, upsample):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 6)), jnp.float32)
    weight = rng.standard_normal((1, 5, 6, k, k)).astype(np.float32)
    style = (1 + 0.3 * rng.standard_normal((2, 6))).astype(np.float32)
    out = ops.modulated_conv2d(x, jnp.asarray(weight), jnp.asarray(style), demodulate=demodulate,
                               upsample=upsample, mode=mode)
    ref = _modconv_reference(x, weight.astype(np.float64), style.astype(np.float64), demodulate, upsample)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", ["skinny", "einsum"])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (3, 4), (5, 1)])
def test_matmul_weight_gradient_equals_autodiff_of_the_convolution(k, stride, path, monkeypatch):
    # skinny: per-tap 2-D products (shifted rows at stride 1); einsum: XLA's 4-D contraction (wide layers)
    monkeypatch.setattr(ops, "_SKINNY_WGRAD", 0 if path == "einsum" else 4096)
    rng = np.random.default_rng(k * 10 + stride)
    x = jnp.asarray(rng.standard_normal((2, 8, 12, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 5, k, k)), jnp.float32)
    r = jnp.asarray(rng.standard_normal((2, 8 // stride, 12 // stride, 4)), jnp.float32)

    def plain(x, w):
        return jnp.sum(r * ops._xla_conv_same(x, w, stride))

    def custom(x, w):
        return jnp.sum(r * ops.conv_same_matmul_wgrad(x, w, stride))

    np.testing.assert_array_equal(ops.conv_same_matmul_wgrad(x, w, stride), ops._xla_conv_same(x, w, stride))
    np.testing.assert_array_equal(ops._conv_same(x, w, stride), ops._xla_conv_same(x, w, stride))
    ref = jax.grad(plain, argnums=(0, 1))(x, w)
    out = jax.jit(jax.grad(custom, argnums=(0, 1)))(x, w)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], ref[1], rtol=1e-5, atol=1e-4)
    # strided = the full convolution's weight gradient with the cotangent on every s-th pixel only
    full_g = jnp.zeros((2, 8, 12, 4)).at[:, ::stride, ::stride].set(r)
    full = jax.grad(lambda w: jnp.sum(full_g * ops._xla_conv_same(x, w, 1)))(w)
    np.testing.assert_allclose(out[1], full, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 4])
def test_tap_major_layout_gives_the_same_convolution_and_gradients(stride):
    # the fine-tuning step's weight mode keeps kernels as (k, k, O, I)
    rng = np.random.default_rng(7 + stride)
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((4, 5, 3, 3)), jnp.float32)
    r = jnp.asarray(rng.standard_normal((1, 8 // stride, 8 // stride, 4)), jnp.float32)
    w_tap = jnp.transpose(w, (2, 3, 0, 1))
    np.testing.assert_allclose(ops._conv_same(x, w_tap, stride, layout="HWOI"), ops._xla_conv_same(x, w, stride),
                               rtol=1e-6, atol=1e-5)
    ref = jax.grad(lambda x, w: jnp.sum(r * ops._xla_conv_same(x, w, stride)), argnums=(0, 1))(x, w)
    out = jax.jit(jax.grad(lambda x, w: jnp.sum(r * ops._conv_same(x, w, stride, layout="HWOI")), argnums=(0, 1)))(
        x, w_tap)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], jnp.transpose(ref[1], (2, 3, 0, 1)), rtol=1e-5, atol=1e-4)


def test_matmul_weight_gradient_under_vmap():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 1, 6, 6, 2)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 4, 2, 3, 3)), jnp.float32)

    def loss(conv, x, w):
        return jnp.sum(jnp.sin(conv(x, w, 1)))

    per = jax.vmap(jax.grad(functools.partial(loss, ops.conv_same_matmul_wgrad), argnums=1))(x, w)
    ref = jax.vmap(jax.grad(functools.partial(loss, ops._xla_conv_same), argnums=1))(x, w)
    np.testing.assert_allclose(per, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# small generator: loading, noise, gradients, remat, composability


@pytest.fixture(scope="module")
def small():
    return small_state_dict(seed=0)


@pytest.fixture(scope="module")
def g_small(small):
    return load_stylegan2(small)


def _wplus(g, n=2, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, g.n_latent, g.style_dim)), jnp.float32)


def test_small_generator_attributes(g_small, small):
    g = g_small
    assert (g.size, g.n_latent, g.num_layers, g.style_dim) == (8, 4, 3, 32)
    assert g.noise_shapes == [(1, 4, 4, 1), (1, 8, 8, 1), (1, 8, 8, 1)]
    for i, nz in enumerate(g.noise):
        np.testing.assert_array_equal(np.asarray(nz), np.transpose(small[f"noises.noise_{i}"], (0, 2, 3, 1)))
    assert set(flatten(g.params)) == {k for k in small if not k.startswith("noises.")}
    img = g(_wplus(g, 2))
    assert img.shape == (2, 8, 8, 3) and img.dtype == jnp.float32
    assert np.isfinite(np.asarray(img)).all()


def test_w_is_broadcast_to_every_layer(g_small):
    w = _wplus(g_small)[:, 0]
    wplus = jnp.broadcast_to(w[:, None], (2, g_small.n_latent, g_small.style_dim))
    np.testing.assert_array_equal(np.asarray(g_small(w)), np.asarray(g_small(wplus)))


def test_stored_noise_is_the_default(g_small):
    w = _wplus(g_small)
    np.testing.assert_array_equal(np.asarray(g_small(w)), np.asarray(g_small(w, noise=g_small.noise)))
    other = [jnp.zeros_like(n) for n in g_small.noise]
    assert not np.array_equal(np.asarray(g_small(w)), np.asarray(g_small(w, noise=other)))


def test_fresh_noise_is_deterministic_per_key(g_small):
    w = _wplus(g_small, 2)
    a = np.asarray(g_small(w, key=jax.random.key(0)))
    b = np.asarray(g_small(w, key=jax.random.key(0)))
    c = np.asarray(g_small(w, key=jax.random.key(1)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    maps = g_small.make_noise(jax.random.key(0), batch=2)
    assert [m.shape for m in maps] == [(2,) + s[1:] for s in g_small.noise_shapes]
    np.testing.assert_array_equal(a, np.asarray(g_small(w, noise=maps)))
    with pytest.raises(ValueError, match="either noise or key"):
        g_small(w, noise=maps, key=jax.random.key(0))


def test_noise_layout_is_checked(g_small):
    nchw = [jnp.transpose(n, (0, 3, 1, 2)) for n in g_small.noise]
    with pytest.raises(ValueError, match="NHWC"):
        g_small(_wplus(g_small), noise=nchw)
    with pytest.raises(ValueError, match="expected 3 noise maps"):
        g_small(_wplus(g_small), noise=g_small.noise[:-1])


def test_checkpoint_without_noise_buffers(small):
    g = load_stylegan2({k: v for k, v in small.items() if not k.startswith("noises.")})
    assert g.noise is None
    w = _wplus(g)
    with pytest.raises(ValueError, match="no stored noise maps"):
        g(w)
    full = load_stylegan2(small)
    np.testing.assert_array_equal(np.asarray(g(w, noise=full.noise)), np.asarray(full(w)))
    assert np.isfinite(np.asarray(g(w, key=jax.random.key(3)))).all()


@functools.lru_cache(maxsize=None)
def _value_and_grads(g, remat: bool):
    """jit(value_and_grad) of mean(image**2) w.r.t. (params, W+, noise); one compile per (g, remat)."""
    loss = lambda p, w, n: jnp.mean(g.synthesis_apply(p, w, n, remat=remat) ** 2)  # noqa: E731
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def test_remat_gives_same_values_and_gradients(g_small):
    w = _wplus(g_small)
    plain = _value_and_grads(g_small, False)(g_small.params, w, g_small.noise)
    remat = _value_and_grads(g_small, True)(g_small.params, w, g_small.noise)
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(remat[1]), jax.tree_util.tree_leaves(plain[1])):
        # recomputation may fuse differently: float rounding only
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()) + 1e-30)


def test_pure_functions_compose_with_vmap(g_small):
    w = _wplus(g_small, 2)
    per_sample = jax.jit(jax.vmap(lambda wi: g_small.synthesis_apply(g_small.params, wi[None], g_small.noise)[0]))
    np.testing.assert_allclose(per_sample(w), g_small(w), rtol=1e-5, atol=1e-5)
    z = w[:, 0]
    np.testing.assert_allclose(jax.vmap(lambda zi: g_small.mapping_apply(g_small.params, zi[None])[0])(z),
                               g_small.mapping(z), rtol=1e-6, atol=1e-6)


def test_gradients_match_finite_differences_float64():
    out = _gradcheck("small")
    for name, (autodiff, fd) in out.items():
        assert abs(autodiff - fd) <= 1e-4 * abs(fd), (name, autodiff, fd)
        assert abs(fd) > 1e-9, (name, fd)  # each probe actually reaches the output


@pytest.mark.slow
def test_gradients_match_finite_differences_float64_256():
    out = _gradcheck(str(golden_path("stylegan2_256.npz")))
    for name, (autodiff, fd) in out.items():
        # random directions cross leaky-ReLU kinks of the rule weights: 3e-4 relative at eps 1e-6
        assert abs(autodiff - fd) <= 1e-3 * abs(fd), (name, autodiff, fd)


def _gradcheck(which: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "helpers" / "stylegan2_gradcheck.py"), which],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_frozen_weights_get_no_update(g_small, small):
    before = {k: np.array(v) for k, v in flatten(g_small.params).items()}
    trainable = {"wplus": _wplus(g_small), "noise": list(g_small.noise)}
    opt = optax.adam(0.01)
    _, (_, g_w, g_n) = _value_and_grads(g_small, False)(g_small.params, trainable["wplus"], trainable["noise"])
    updates, _ = opt.update({"wplus": g_w, "noise": g_n}, opt.init(trainable))
    new = optax.apply_updates(trainable, updates)
    assert not np.array_equal(np.asarray(new["wplus"]), np.asarray(trainable["wplus"]))
    assert all(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(new["noise"], trainable["noise"]))
    after = flatten(g_small.params)
    assert set(after) == set(before)
    for k, v in before.items():
        np.testing.assert_array_equal(np.asarray(after[k]), v, err_msg=k)
        np.testing.assert_array_equal(v, small[k], err_msg=k)


def test_params_are_differentiable_for_fine_tuning(g_small):
    _, (g_p, _, _) = _value_and_grads(g_small, False)(g_small.params, _wplus(g_small), g_small.noise)
    grads = flatten(g_p)
    assert set(grads) == set(flatten(g_small.params))
    z = _wplus(g_small)[:, 0]
    mapping_grads = flatten(jax.grad(lambda p: jnp.sum(g_small.mapping_apply(p, z) ** 2))(g_small.params))
    for k, v in grads.items():
        v = np.asarray(mapping_grads[k] if k.startswith("style.") else v)  # synthesis does not use the mapping
        assert np.isfinite(v).all() and np.abs(v).max() > 0, k


def test_truncation(g_small, small):
    z = _wplus(g_small, 2)[:, 0]
    t = jnp.asarray(np.random.default_rng(4).standard_normal(g_small.style_dim), jnp.float32)
    w = g_small.mapping(z)
    np.testing.assert_allclose(g_small.truncate(w, 0.7, t), t + 0.7 * (w - t), rtol=1e-6)
    expected = g_small(jnp.broadcast_to((t + 0.7 * (w - t))[:, None], (2, g_small.n_latent, g_small.style_dim)))
    np.testing.assert_allclose(g_small.from_z(z, truncation=0.7, truncation_latent=t), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="latent_avg"):
        g_small.truncate(w, 0.7)
    g_avg = load_stylegan2({**small, "latent_avg": np.asarray(t)})
    np.testing.assert_allclose(g_avg.truncate(w, 0.5), t + 0.5 * (w - t), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# checkpoint loading errors and conversion


def test_architecture_is_inferred_from_the_keys():
    sd = small_state_dict(size=64, channel_multiplier=1, style_dim=32, n_mlp=3)
    g = load_stylegan2(sd)
    assert (g.size, g.config.channel_multiplier, g.style_dim, g.config.n_mlp, g.n_latent) == (64, 1, 32, 3, 10)


@pytest.mark.parametrize(
    "edit,names",
    [
        (lambda sd: sd.pop("convs.1.conv.weight"), ["missing", "convs.1.conv.weight"]),
        (lambda sd: sd.update({"convs.1.conv.extra": np.zeros(2, np.float32)}), ["unexpected", "convs.1.conv.extra"]),
        (lambda sd: sd.update({"to_rgb1.bias": np.zeros(3, np.float32)}), ["to_rgb1.bias", "(3,)"]),
        (lambda sd: sd.pop("noises.noise_2"), ["noises.noise_2"]),
        (lambda sd: sd.update({"convs.0.conv.blur.kernel": np.ones((4, 4), np.float32)}), ["convs.0.conv.blur.kernel"]),
        (lambda sd: sd.update({"latent_avg": np.zeros((18, 32), np.float32)}), ["latent_avg"]),
    ],
    ids=["missing", "unexpected", "shape", "partial-noise", "kernel-value", "latent-avg-shape"],
)
def test_bad_checkpoints_name_the_key(edit, names):
    sd = small_state_dict(kernels=True)
    edit(sd)
    with pytest.raises(CheckpointKeyError) as err:
        load_stylegan2(sd)
    for name in names:
        assert name in str(err.value)


def test_fir_buffers_are_optional_and_checked(small):
    with_kernels = small_state_dict(seed=0, kernels=True)
    assert set(with_kernels) - set(small) == set(buffer_shapes(load_stylegan2(small).config)[0])
    w = _wplus(load_stylegan2(small))
    np.testing.assert_array_equal(np.asarray(load_stylegan2(with_kernels)(w)), np.asarray(load_stylegan2(small)(w)))


def test_top_level_checkpoint_layout(small):
    top = {f"g_ema.{k}": v for k, v in small.items()}
    top.update({"latent_avg": np.ones(32, np.float32), "g.style.1.weight": np.zeros((32, 32), np.float32),
                "d.convs.0.0.weight": np.zeros((8, 3, 1, 1), np.float32)})
    g = load_stylegan2(top)
    np.testing.assert_array_equal(np.asarray(g.latent_avg), np.ones(32, np.float32))
    with pytest.raises(CheckpointKeyError, match="ema_decay"):
        load_stylegan2({**top, "ema_decay": np.float32(0.9)})


def test_missing_checkpoint_says_where_to_get_it():
    with pytest.raises(FileNotFoundError, match="stylegan2-ffhq-config-f.pt"):
        jaxprotect.load_network("stylegan2")


def test_convert_round_trip(tmp_path, small):
    from jaxprotect.commands import convert

    src = tmp_path / "g.npz"
    save_flat(src, {**{f"g_ema.{k}": v for k, v in small.items()}, "latent_avg": np.ones(32, np.float32)})
    out = tmp_path / "converted.npz"
    assert convert.run(argparse.Namespace(kind="stylegan2", source=str(src), output=str(out))) == 0
    g, g2 = load_stylegan2(src), load_stylegan2(out)
    for k, v in flatten(g.params).items():
        np.testing.assert_array_equal(np.asarray(flatten(g2.params)[k]), np.asarray(v), err_msg=k)
    w = _wplus(g)
    np.testing.assert_array_equal(np.asarray(g2(w, noise=g.noise)), np.asarray(g(w)))
    # to_flat keeps what flatten(params) cannot: the noise buffers and latent_avg
    full = tmp_path / "full.safetensors"
    save_flat(full, g.to_flat())
    g3 = load_stylegan2(full)
    np.testing.assert_array_equal(np.asarray(g3(w)), np.asarray(g(w)))
    np.testing.assert_array_equal(np.asarray(g3.latent_avg), np.asarray(g.latent_avg))


def test_loads_a_torch_checkpoint_with_training_entries(tmp_path, small):
    torch = pytest.importorskip("torch")
    path = tmp_path / "stylegan2-small.pt"
    torch.save({
        "g_ema": {k: torch.from_numpy(v) for k, v in small.items()},
        "g": {"style.1.weight": torch.zeros(32, 32)},
        "d": {"convs.0.0.weight": torch.zeros(8, 3, 1, 1)},
        "latent_avg": torch.ones(32),
        "args": argparse.Namespace(size=8, channel_multiplier=1),
    }, path)
    g = load_stylegan2(path)
    ref = load_stylegan2(small)
    w = _wplus(g)
    np.testing.assert_array_equal(np.asarray(g(w)), np.asarray(ref(w)))
    assert g.latent_avg.shape == (32,)


@pytest.mark.parametrize("stride", [2, 4])
def test_output_stride_is_the_subsampled_image(g_small, stride):
    w = _wplus(g_small)
    full = g_small.synthesis_apply(g_small.params, w, g_small.noise)
    kept = g_small.synthesis_apply(g_small.params, w, g_small.noise, output_stride=stride)
    assert kept.shape == (2, 8 // stride, 8 // stride, 3)
    np.testing.assert_allclose(kept, full[:, ::stride, ::stride], rtol=1e-6, atol=1e-6)

    def loss(p, s):
        img = g_small.synthesis_apply(p, w, g_small.noise, output_stride=s)
        return jnp.mean(img[:, :: stride // s, :: stride // s] ** 2)

    strided = flatten(jax.grad(loss)(g_small.params, stride))
    plain = flatten(jax.grad(loss)(g_small.params, 1))
    for k, v in plain.items():
        np.testing.assert_allclose(strided[k], v, rtol=0, atol=1e-5 * float(np.abs(v).max()) + 1e-30, err_msg=k)
    with pytest.raises(ValueError, match="stride"):
        g_small.synthesis_apply(g_small.params, w, g_small.noise, output_stride=3)


@pytest.mark.parametrize("stride", [1, 2])
def test_frozen_layout_gives_the_same_images_and_latent_gradients(g_small, stride):
    # the search's laid-out weights (scale folded in, HWIO kernels, tap groups, squared sums) against the
    # checkpoint layout: the same ops on the same values
    w = _wplus(g_small)
    frozen = jax.jit(g_small.frozen_layout)(g_small.params)
    assert isinstance(frozen["convs"]["0"]["conv"]["weight"], ops.FrozenModConv)
    assert g_small.params["convs"]["0"]["conv"]["weight"].ndim == 5  # the input tree is left as it was

    def loss(p, w, n):
        return jnp.mean(g_small.synthesis_apply(p, w, n, output_stride=stride) ** 2)

    for got, want in zip(jax.value_and_grad(loss, argnums=(1, 2))(frozen, w, g_small.noise),
                         jax.value_and_grad(loss, argnums=(1, 2))(g_small.params, w, g_small.noise)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * float(np.abs(b).max()) + 1e-30)
    with pytest.raises(ValueError, match="activation formulation"):
        g_small.synthesis_apply(frozen, w, g_small.noise, modconv="weight")
