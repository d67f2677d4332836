"""The LFW .bin reader decodes the golden's faces and refuses pickles that name other globals."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from jaxprotect.io.lfw_bin import decode_jpegs, load_lfw_bin
from helpers.golden import asset_path, load_golden


def test_reads_small_lfw_like_the_golden():
    buffers, issame = load_lfw_bin(asset_path("faces/lfw_aligned/small_lfw.bin"))
    gold = load_golden("mobilefacenet_foamliu_real.npz")
    np.testing.assert_array_equal(issame, gold["issame"])
    np.testing.assert_array_equal(decode_jpegs(buffers), gold["images_uint8"])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [
    ([_Evil()], [True]),
    ([np.zeros(3, np.float64), np.zeros(3, np.float64)], [True]),
])
def test_refuses_other_globals_and_dtypes(tmp_path, payload):
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(pickle.UnpicklingError):
        load_lfw_bin(path)
