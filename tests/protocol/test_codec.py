"""The one JSON codec every side shares (protocol.codec)."""

from __future__ import annotations

import subprocess
import sys

from protocol import codec


def test_models_sets_and_numpy_values_serialise() -> None:
    import numpy as np

    from protocol import SetPrefetch

    value = {"model": SetPrefetch(prefetch=3), "tags": {"a"}, "array": np.arange(3),
             "score": np.float32(0.5)}
    assert codec.loads(codec.dumps(value)) == {
        "model": {"op": "set_prefetch", "prefetch": 3}, "tags": ["a"], "array": [0, 1, 2],
        "score": 0.5}


def test_serialising_never_imports_numpy_into_a_process_without_it() -> None:
    """A gateway never holds an array; numpy would cost it 13 MiB of RSS."""
    probe = ("import sys; from protocol import codec, Replayed\n"
             "codec.dumps({'command': Replayed(), 'ids': {1, 2}})\n"
             "print('numpy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"
