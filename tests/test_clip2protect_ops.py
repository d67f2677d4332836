"""CLIP2Protect numerics against PyTorch: clamp gradient, FR crop + bilinear resize, nearest
resize of the tuning loss, banker's rounding of the box, the noise/row partitions at 1024."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprotect.face_conventions import box_slices
from jaxprotect.methods.clip2protect.config import FinetuneConfig, SearchConfig
from jaxprotect.methods.clip2protect.finetune import resize_for_loss
from jaxprotect.methods.clip2protect.generator import Synthesis
from jaxprotect.methods.clip2protect.inversion import e4e_input
from jaxprotect.methods.clip2protect.ops import clamp_torch, crop_resize, crop_resize_matrices, to_unit_interval
from jaxprotect.methods.clip2protect.search import noise_split, row_mask

torch = pytest.importorskip("torch")


def test_clamp_gradient_is_pytorchs_at_the_boundary():
    x = np.array([-0.5, 0.0, 1e-7, 0.5, 1.0, 1.0 + 1e-6, 2.0], np.float32)
    t = torch.tensor(x, requires_grad=True)
    t.clamp(0, 1).sum().backward()
    got = jax.grad(lambda v: jnp.sum(clamp_torch(v, 0.0, 1.0)))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(got), t.grad.numpy())
    np.testing.assert_array_equal(np.asarray(got), [0, 1, 1, 1, 1, 0, 0])  # boundaries inclusive
    # jnp.clip would give 0.5 at exact ties: the custom rule is what makes the difference
    assert float(jax.grad(lambda v: jnp.sum(jnp.clip(v, 0.0, 1.0)))(jnp.asarray(x))[1]) == 0.5
    raw = jnp.asarray([-1.0, 1.0, 3.0])  # generator output: (x+1)/2 hits 0 and 1 exactly
    g = jax.grad(lambda v: jnp.sum(to_unit_interval(v)))(raw)
    np.testing.assert_array_equal(np.asarray(g), [0.5, 0.5, 0.0])


@pytest.mark.parametrize("box,out", [((12.4, 7.6, 51.5, 58.5), 112), ((3.0, 0.4, 60.7, 44.5), 20)])
def test_crop_resize_matrices_equal_crop_then_interpolate(box, out):
    x = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    rows, cols = crop_resize_matrices(box, 1, 64, 64, out)
    got = np.asarray(crop_resize((jnp.asarray(x) - 0.5) * 2, rows, cols))
    r0, r1, c0, c1 = box_slices(box, (64, 64), 1)
    crop = torch.from_numpy(x).permute(2, 0, 1)[None][:, :, r0:r1, c0:c1]
    want = torch.nn.functional.interpolate((crop - 0.5) * 2, size=(out, out), mode="bilinear")
    np.testing.assert_allclose(got, want[0].permute(1, 2, 0).numpy(), atol=2e-6)


def test_tuning_resize_is_torch_default_nearest():
    cfg = FinetuneConfig()
    assert cfg.resize == "nearest" and cfg.size == 256
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1024, 1024, 3)).astype(np.float32)
    got = np.asarray(resize_for_loss(jnp.asarray(x), cfg))
    want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=256)
    np.testing.assert_array_equal(got, want.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(got[0], x[0, ::4, ::4])  # nearest picks every 4th pixel, no averaging


def test_e4e_input_is_pil_bilinear_then_normalize():
    from PIL import Image

    photo = np.random.default_rng(2).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    got = e4e_input(photo)
    want = np.asarray(Image.fromarray(photo).resize((256, 256), Image.Resampling.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(got, (want - 0.5) / 0.5, atol=0)
    assert got.shape == (256, 256, 3) and got.min() >= -1 and got.max() <= 1


def test_1024_partitions_match_upstream():
    res = [2 ** ((i + 5) // 2) for i in range(17)]
    syn = Synthesis(apply=None, noise_shapes=tuple((r, r, 1) for r in res), size=1024, n_latent=18)
    opt, fixed = noise_split(syn, SearchConfig())
    assert opt == tuple(range(13)) and fixed == (13, 14, 15, 16)  # res 4..256 move, 512 and 1024 stay
    assert sum(res[i] ** 2 for i in opt) == 174_736  # the count in the performance notes
    assert noise_split(syn, SearchConfig(noise_optimize=False)) == ((), tuple(range(17)))
    mask = np.asarray(row_mask(18, 8))[:, 0]
    np.testing.assert_array_equal(mask, [False] * 8 + [True] * 10)
    assert SearchConfig().surrogates == ("facenet", "ir152", "irse50")  # calculate_loss order, mobile_face held out
