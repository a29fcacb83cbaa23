"""Restricted unpickling: stand-ins are inert, unknown globals are refused, a missing private torch API says so."""

from __future__ import annotations

import io
import pickle
import types

import pytest
import torch

from t2i_lib.storage.checkpoint import CheckpointError
from t2i_lib.storage.unpickle import (PickledObject, collect_tensors, make_standin, restricted_pickle_module,
                                      torch_allowed_globals)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)


def _old_format_bytes(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)  # PyTorch's pre-1.6 format
    buf.seek(0)
    return buf


def test_standins_store_attributes_and_collect_tensors():
    names = (f"{__name__}.Net", "torch.nn.modules.linear.Linear")
    standins = {n: make_standin(n) for n in names}
    net = Net()
    root = torch.load(_old_format_bytes(net), weights_only=False, pickle_module=restricted_pickle_module(standins))
    assert isinstance(root, PickledObject) and type(root).__qualname__ == "Net"
    out = {}
    collect_tensors(root, "", out)
    assert set(out) == {"lin.weight", "lin.bias"}
    assert torch.equal(out["lin.weight"], net.lin.weight.detach())


def test_a_global_not_allowed_is_refused_and_nothing_runs():
    class Boom:
        def __reduce__(self):
            return (print, ("this must never run",))

    data = pickle.dumps(Boom())
    unpickler = restricted_pickle_module({}).Unpickler(io.BytesIO(data))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print is not on the allow-list"):
        unpickler.load()


def test_missing_private_torch_allow_list_says_what_to_do(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch._weights_only_unpickler", types.ModuleType("gone"))
    with pytest.raises(CheckpointError, match=r"_get_allowed_globals.*Install a PyTorch"):
        torch_allowed_globals()
    monkeypatch.undo()
    assert "collections.OrderedDict" in torch_allowed_globals()
