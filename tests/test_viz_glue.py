"""t2i_lib.viz.glue: the run's numbers, recorded for the prose (Chapter 4)."""

from __future__ import annotations

import numpy as np
import torch

from t2i_lib.viz.glue import glue, plain_number


def test_plain_number_makes_python_scalars():
    assert type(plain_number(np.float64(0.5))) is float and plain_number(np.float64(0.5)) == 0.5
    assert type(plain_number(torch.tensor(3))) is int
    assert type(plain_number(np.int64(7))) is int
    assert plain_number(True) is True and plain_number("x") == "x"


def test_glue_records_a_readable_number(monkeypatch):
    import myst_nb

    seen = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: seen.append((name, value, display)))
    assert glue("t", np.float32(0.25)) is None
    glue("n", torch.tensor(4))
    assert seen == [("t", 0.25, False), ("n", 4, False)]
    assert type(seen[0][1]) is float and repr(seen[0][1]) == "0.25"  # what {glue:text} reads back
