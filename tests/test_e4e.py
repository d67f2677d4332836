"""e4e encoder (omertov/encoder4editing ``Encoder4Editing(50, 'ir_se')``): contracts, checkpoint layouts, converter.

Golden parity is in test_golden_parity.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxprotect import load_network
from jaxprotect.checkpoints.state_dict import CheckpointKeyError, flatten, save_flat
from jaxprotect.models.e4e import Encoder4Editing, load_e4e, n_styles_for
from jaxprotect.nn.torch_layers import param_shapes
from helpers import parity
from helpers.golden import load_golden

OPTS = {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True,
        "checkpoint_path": None, "lpips_type": "alex", "w_discriminator_lambda": 0.1}


@pytest.fixture(scope="module")
def golden():
    return load_golden("e4e_1024.npz")


@pytest.fixture(scope="module")
def e():
    """e4e loaded from the rule-generated encoder state dict + ``latent_avg`` (the golden's key list; ~1 GB)."""
    return parity.network("e4e_1024.npz")


@pytest.fixture(scope="module")
def labelled(golden):
    """The golden's state-dict keys, each holding its own index as a constant (broadcast views: no memory).

    Enough to check where every key lands without a second gigabyte of weights; int64 ``num_batches_tracked``
    buffers are included as in a real file.
    """
    out = {}
    for i, (k, s) in enumerate(zip(golden["keys"], golden["shapes"])):
        shape = tuple(int(v) for v in str(s).split(",")) if str(s) else ()
        out[str(k)] = np.int64(5) if str(k).endswith("num_batches_tracked") else np.broadcast_to(np.float32(i), shape)
    return out


@pytest.fixture(scope="module")
def x(golden):
    return np.ascontiguousarray(np.transpose(golden["input"], (0, 2, 3, 1)))


@pytest.fixture(scope="module")
def outputs(e):
    """(codes, raw codes) of ``e`` on the golden input, computed by the golden parity test's producer."""
    return parity.ours("e4e_1024.npz", "codes"), parity.ours("e4e_1024.npz", "codes_raw")


def _psp_checkpoint(weights, latent_avg=None, opts=OPTS, **extra):
    """The e4e_ffhq_encode.pt layout (training/coach.py): pSp state dict with encoder./decoder. prefixes."""
    state = {f"encoder.{k}": v for k, v in weights.items() if k != "latent_avg"}
    state["decoder.style.1.weight"] = np.ones((512, 512), np.float32)
    state["decoder.noises.noise_0"] = np.ones((1, 1, 4, 4), np.float32)
    avg = weights["latent_avg"] if latent_avg is None else latent_avg
    return {"state_dict": state, "latent_avg": avg, "opts": opts, **extra}


def _assert_params(params, expected, skip=()):
    flat = flatten(params)
    assert flat.keys() == {k for k in expected if not k.endswith("num_batches_tracked")}
    for k in flat:
        if k not in skip:
            np.testing.assert_array_equal(np.asarray(flat[k]), np.asarray(expected[k]), err_msg=k)


def test_contract(e, outputs, golden, x):
    assert e.n_styles == 18 and e.input_size == (256, 256) and e.input_range == (-1.0, 1.0)
    assert e.info["stylegan_size"] == 1024
    np.testing.assert_array_equal(np.asarray(e.params["latent_avg"]), golden["latent_avg"])
    codes, raw = outputs
    assert codes.shape == (2, 18, 512)
    np.testing.assert_allclose(codes - raw, np.broadcast_to(golden["latent_avg"], codes.shape), atol=1e-6)
    with pytest.raises(ValueError, match="256, 256, 3"):
        e.apply(e.params, np.zeros((1, 128, 128, 3), np.float32))
    assert [n_styles_for(s) for s in (256, 512, 1024)] == [14, 16, 18]


@pytest.mark.parametrize("latent_avg_shape", [(18, 512), (512,)])
def test_top_level_pt_layout(labelled, latent_avg_shape):
    avg = np.arange(np.prod(latent_avg_shape), dtype=np.float32).reshape(latent_avg_shape)
    loaded = load_e4e(_psp_checkpoint(labelled, latent_avg=avg, global_step=np.int64(9000), best_val_loss=None))
    assert loaded.n_styles == 18 and loaded.info["opts"]["encoder_type"] == "Encoder4Editing"
    _assert_params(loaded.params, labelled, skip=("latent_avg",))
    np.testing.assert_array_equal(np.asarray(loaded.params["latent_avg"]), np.broadcast_to(avg, (18, 512)))


def test_flat_psp_state_dict(labelled):
    flat = {**_psp_checkpoint(labelled)["state_dict"], "latent_avg": labelled["latent_avg"]}
    _assert_params(load_e4e(flat).params, labelled)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["state_dict"].pop("encoder.styles.17.linear.bias"), "missing keys (1): styles.17.linear.bias"),
        (lambda c: c["state_dict"].update({"discriminator.0.weight": np.zeros(3)}),
         "unexpected keys (1) outside encoder./decoder.: discriminator.0.weight"),
        (lambda c: c["state_dict"].update({"encoder.styles.18.linear.bias": np.zeros(512)}),
         "unexpected keys (1): styles.18.linear.bias"),
        (lambda c: c.update({"latent": np.zeros(512)}), "unexpected top-level entries: latent"),
        (lambda c: c.pop("latent_avg"), "missing keys (1): latent_avg"),
        (lambda c: c.update({"latent_avg": np.zeros((14, 512))}),
         "latent_avg: checkpoint (14, 512) != expected (18, 512)"),
        (lambda c: c.update({"opts": {**OPTS, "stylegan_size": 512}}),
         "styles.16.convs.0.bias, styles.16.convs.0.weight"),
    ],
    ids=["missing", "unexpected-prefix", "unexpected-encoder-key", "top-level", "no-latent-avg", "latent-avg-shape",
         "opts-size"],
)
def test_converter_names_offending_keys(labelled, edit, message):
    ckpt = _psp_checkpoint(labelled)
    ckpt["state_dict"] = dict(ckpt["state_dict"])
    edit(ckpt)
    with pytest.raises(CheckpointKeyError) as err:
        load_e4e(ckpt)
    assert message in str(err.value)


def test_no_shipped_weights():
    with pytest.raises(ValueError, match="e4e_ffhq_encode.pt"):
        load_e4e(None)


def test_real_pt_file(tmp_path):
    """A torch.save'd e4e training checkpoint (state_dict + opts + latent_avg + training state) loads from its path.

    ``opts['stylegan_size'] = 256`` must give 14 styles. Weights are small random tensors expanded along the input
    channels (stride 0), so the file stays a few MB while every key still holds its own values.
    """
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    module = Encoder4Editing(n_styles_for(256))
    shapes = param_shapes(module, np.zeros((1, 256, 256, 3), np.float32))

    def tensor(shape):
        if len(shape) < 2:
            return torch.randn(shape, generator=gen)
        return torch.randn((shape[0], 1, *shape[2:]), generator=gen).expand(shape)

    state = {f"encoder.{k}": tensor(s) for k, s in shapes.items() if k != "latent_avg"}
    state.update({k.replace("running_var", "num_batches_tracked"): torch.tensor(5)
                  for k in list(state) if k.endswith("running_var")})
    state["decoder.convs.0.conv.weight"] = tensor((1, 512, 512, 3, 3))
    state["decoder.input.input"] = tensor((1, 512, 4, 4))
    latent_avg = torch.randn((14, 512), generator=gen)
    path = tmp_path / "e4e_256.pt"
    torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": {**OPTS, "stylegan_size": 256},
                "global_step": 300000, "best_val_loss": None}, path)
    assert path.stat().st_size < 20e6
    loaded = load_network("e4e", str(path))
    assert loaded.n_styles == 14 and loaded.info["stylegan_size"] == 256
    expected = {k[len("encoder."):]: v.numpy() for k, v in state.items()
                if k.startswith("encoder.") and not k.endswith("num_batches_tracked")}
    expected["latent_avg"] = latent_avg.numpy()
    flat = flatten(loaded.params)
    assert flat.keys() == expected.keys()
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(flat[k]), v, err_msg=k)


def test_convert_round_trip(e, outputs, x, tmp_path):
    path = tmp_path / "e4e.npz"
    save_flat(path, flatten(e.params))
    again = load_network("e4e", path)
    assert again.module == e.module and again.n_styles == 18
    _assert_params(again.params, flatten(e.params))
    with jax.default_matmul_precision("highest"):
        np.testing.assert_array_equal(np.asarray(again(x)), outputs[0])
