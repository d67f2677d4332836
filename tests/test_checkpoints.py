"""The torch-file reader never runs pickled code; state dicts are checked key by key."""
import argparse
import collections
import os

import numpy as np
import pytest

from jaxprotect.checkpoints.state_dict import (
    CheckpointKeyError,
    check_keys,
    flatten,
    load_state_dict,
    save_flat,
    unflatten,
)
from jaxprotect.checkpoints.torch_pickle import UnsafeCheckpointError, read_torch_file, tensors_of

torch = pytest.importorskip("torch")


def _state():
    return collections.OrderedDict(
        conv=torch.randn(4, 3, 3, 3),
        transposed=torch.randn(5, 4).t(),  # non-contiguous strides
        half=torch.randn(6).half(),
        bf16=torch.randn(3).bfloat16(),
        count=torch.tensor(7),
        ints=torch.arange(5),
        sliced=torch.randn(10)[2:6],  # storage offset
    )


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_nested_checkpoint_like_torch(tmp_path, zip_format):
    state = _state()
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"g_ema": state, "latent_avg": torch.randn(512), "args": argparse.Namespace(size=1024)},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    flat = tensors_of(read_torch_file(path))
    assert set(flat) == {f"g_ema.{k}" for k in state} | {"latent_avg"}
    for k, v in state.items():
        np.testing.assert_array_equal(flat[f"g_ema.{k}"].astype(np.float64), v.float().numpy().astype(np.float64))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode()}, path)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_torch_file(path)
    with pytest.raises(UnsafeCheckpointError):
        load_state_dict(path)


def test_torchscript_archive_tensors_are_read_without_running_it(tmp_path):
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    path = tmp_path / "scripted.pt"
    module.save(str(path))
    flat = tensors_of(read_torch_file(path))
    expected = {k: v.numpy() for k, v in module.state_dict().items()}
    assert set(flat) == set(expected)
    for k in expected:
        np.testing.assert_array_equal(flat[k], expected[k])


def test_check_keys_names_every_offender():
    expected = {"a.weight": (2, 3), "a.bias": (2,), "b.weight": (4,)}
    given = {
        "a.weight": np.zeros((2, 3)),
        "b.weight": np.zeros((5,)),
        "c.extra": np.zeros(1),
        "bn.num_batches_tracked": np.array(3),
    }
    with pytest.raises(CheckpointKeyError) as err:
        check_keys(given, expected, what="test.pth")
    message = str(err.value)
    assert "test.pth" in message
    assert "a.bias" in message and "c.extra" in message and "b.weight" in message
    assert "num_batches_tracked" not in message


def test_check_keys_returns_float32_exactly_the_expected_keys():
    out = check_keys({"w": np.ones((2,), np.float64), "n.num_batches_tracked": np.array(1)}, {"w": (2,)})
    assert list(out) == ["w"] and out["w"].dtype == np.float32


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_flat_cache_round_trip(tmp_path, suffix):
    tree = {"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}, "c": np.ones(2, np.float32)}
    path = tmp_path / f"cache{suffix}"
    save_flat(path, flatten(tree))
    back = unflatten(load_state_dict(path))
    np.testing.assert_array_equal(back["a"]["b"], tree["a"]["b"])
    assert not list(tmp_path.glob("*.tmp"))


def test_mapping_input_with_prefix_and_torch_tensors():
    flat = load_state_dict({"encoder": {"w": torch.ones(2)}, "decoder": {"w": np.zeros(1)}}, prefix="encoder.")
    assert list(flat) == ["w"] and isinstance(flat["w"], np.ndarray)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-there.pth"):
        load_state_dict(tmp_path / "not-there.pth")
