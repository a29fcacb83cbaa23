"""Checkpoints: atomic saves survive crashes, loads are safe, and errors name the file and the problem."""

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from t2i_lib.storage import checkpoint as ckpt
from t2i_lib.storage.checkpoint import (CheckpointError, capture_rng_state, load_checkpoint, load_model_state,
                                        load_weights, restore_rng_state, save_checkpoint, save_weights)


def small_state(value: float) -> dict:
    return {"step": 3, "model": {"w": torch.full((4, 4), value)}, "note": "hello", "lrs": [0.1, 0.2]}


def test_roundtrip_and_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    assert save_checkpoint(path, small_state(1.0)) == path
    got = load_checkpoint(path)
    assert got["step"] == 3 and got["note"] == "hello" and torch.equal(got["model"]["w"], torch.ones(4, 4))
    assert sorted(os.listdir(path.parent)) == ["last.pt"]


@pytest.mark.parametrize("where", ["torch.save", "os.replace"])
def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch, where):
    path = tmp_path / "last.pt"
    save_checkpoint(path, small_state(1.0))
    before = path.read_bytes()

    if where == "torch.save":
        real_save = torch.save

        def crashing_save(obj, f, *a, **k):  # write part of the file, then "crash"
            real_save(obj, f, *a, **k)
            f.truncate(f.tell() // 2)
            raise OSError("simulated crash during write (disk full)")
        monkeypatch.setattr(ckpt.torch, "save", crashing_save)
    else:
        def crashing_replace(src, dst):
            raise OSError("simulated crash before the rename")
        monkeypatch.setattr(ckpt.os, "replace", crashing_replace)

    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, small_state(2.0))
    monkeypatch.undo()
    assert path.read_bytes() == before                      # unchanged, byte for byte
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(4, 4))
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]      # the half-written temp file was removed


def test_stale_temp_file_from_a_killed_process_is_cleaned(tmp_path):
    path = tmp_path / "last.pt"
    (tmp_path / ".last.pt.tmp-99999").write_bytes(b"half a checkpoint")
    save_checkpoint(path, small_state(1.0))
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_raises_checkpoint_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(path, small_state(1.0))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(2000), "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "corrupt or incomplete" in msg and "previous checkpoint" in msg


def test_missing_file_is_a_clear_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")


class Custom:  # an arbitrary object: a safe load must not rebuild it
    pass


def test_unsafe_objects_refused_at_save_and_at_load(tmp_path):
    with pytest.raises(TypeError, match=r"state\['rng'\] is a numpy.ndarray.*tolist"):
        save_checkpoint(tmp_path / "a.pt", {"rng": np.zeros(3)})
    assert not (tmp_path / "a.pt").exists()

    bad = tmp_path / "b.pt"
    torch.save({"x": Custom()}, bad)
    with pytest.raises(CheckpointError, match="beyond tensors and plain values"):
        load_checkpoint(bad)


class Net(nn.Module):
    def __init__(self, hidden=8, extra=False):
        super().__init__()
        self.fc1 = nn.Linear(4, hidden)
        self.fc2 = nn.Linear(hidden, 2)
        if extra:
            self.head = nn.Linear(2, 2)


def test_load_model_state_lists_every_difference(tmp_path):
    src = Net(hidden=8, extra=True).state_dict()
    del src["fc1.bias"]
    model = Net(hidden=16)
    with pytest.raises(CheckpointError) as info:
        load_model_state(model, src, tmp_path / "ch02" / "last.pt")
    msg = str(info.value)
    assert str(tmp_path / "ch02" / "last.pt") in msg
    assert "missing keys (1; in the model, not in the file): fc1.bias" in msg
    assert "unexpected keys (2; in the file, not in the model): head.weight, head.bias" in msg
    assert "fc1.weight: model expects (16, 4), file has (8, 4)" in msg
    assert "fc2.weight: model expects (2, 16), file has (2, 8)" in msg


def test_load_model_state_ok_and_strips_ddp_prefix():
    a, b = Net(), Net()
    load_model_state(b, {f"module.{k}": v for k, v in a.state_dict().items()})
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_rng_state_roundtrip_through_a_safe_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state("cpu")})
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], "cpu")
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1] and torch.equal(first[2], again[2])


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight  # weight tying, as in GPT-2


def test_safetensors_weights_roundtrip_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    a, b = Tied(), Tied()
    path = save_weights(a, tmp_path / "w.safetensors", metadata={"chapter": "6"})
    load_weights(b, path)
    assert torch.equal(a.emb.weight, b.emb.weight) and b.out.weight is b.emb.weight
    with pytest.raises(CheckpointError, match="emb.weight: model expects"):
        bigger = Tied()
        bigger.emb = nn.Embedding(12, 4)
        bigger.out.weight = bigger.emb.weight
        load_weights(bigger, path)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        load_weights(b, tmp_path / "bad.safetensors")


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert save_checkpoint(tmp_path / "last.pt", small_state(1.0)) is None
    assert not (tmp_path / "last.pt").exists()
    assert save_checkpoint(tmp_path / "mine.pt", small_state(1.0), all_ranks=True) is not None
