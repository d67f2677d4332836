"""runtime.configure_cpu_dispatch: inline CPU execution by default, before the backends exist only."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxprotect.runtime import configure_cpu_dispatch

_PROBE = """
import json, jax
from jax._src import xla_bridge
from jaxprotect.runtime import configure_cpu_dispatch
first = configure_cpu_dispatch()
flag = xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value
jax.numpy.ones(2).block_until_ready()
print(json.dumps({"first": first, "async_flag": flag, "after_backend": configure_cpu_dispatch()}))
"""


def _probe(env_value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAXPROTECT_CPU_DISPATCH"}
    if env_value is not None:
        env["JAXPROTECT_CPU_DISPATCH"] = env_value
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env_value,mode", [(None, "inline"), ("async", "async"), ("inline", "inline")])
def test_mode_is_set_before_the_backend_and_refused_after(env_value, mode):
    got = _probe(env_value)
    assert got["first"] == mode
    assert got["async_flag"] is (mode == "async")
    assert got["after_backend"] is None  # the CPU client already exists: nothing changed


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="inline.*async"):
        configure_cpu_dispatch("eager")
