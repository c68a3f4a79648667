"""train.compile with torch.compile's default backend (inductor, C++ code generated and built on the CPU): the
compiled run trains and its loss curve matches the eager run's. tests/unit/test_knobs.py checks, with the cheap
eager backend, which forward the compiled steps run and that their lengths are padded to a multiple of 64."""
import numpy as np
import torch

from tests.conftest import easy_rows, train_in_process
from tests.unit.test_knobs import FAST, curve


def test_compile_with_inductor_trains_like_eager(tmp_path, tiny_base, monkeypatch):
    backends = []
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, **kw: backends.append(kw.get("backend", "inductor"))
                        or real_compile(m, **kw))
    runs = {on: curve(train_in_process(tmp_path / str(on), tiny_base, easy_rows(16), train=dict(FAST, compile=on)))
            for on in (True, False)}
    assert backends == ["inductor"] and len(runs[True]) == len(runs[False]) == 2
    assert np.allclose([r["loss"] for r in runs[True]], [r["loss"] for r in runs[False]], rtol=0, atol=1e-4)
