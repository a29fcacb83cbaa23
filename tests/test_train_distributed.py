"""Data-parallel training: two CPU processes under torchrun (gloo, 127.0.0.1) against one process.

The script below is ordinary chapter-style code: it does not know it may run in several processes.
"""

import os
import runpy
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from t2i_lib.storage.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from t2i_lib.profiles import get_profile
    from t2i_lib.train import TrainConfig, train

    out, batch_size, steps, ckpt_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    # Each process builds its model from a different seed: DDP must start them all from rank 0's weights.
    torch.manual_seed(100 + rank)

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

        def loss(self, batch):
            x, y = batch
            err = self.net(x).squeeze(-1) - y  # (B,)
            return (err ** 2).mean(), {"mae": err.abs().mean()}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    data = TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))
    model = Regressor()
    cfg = TrainConfig(steps=steps, batch_size=batch_size, grad_accum=2, lr=1e-2, clip_grad_norm=1.0,
                      schedule="constant", warmup_steps=2, log_every=2, ckpt_every=3, ckpt_dir=ckpt_dir,
                      ema_decay=0.8)
    hist = train(model, data, cfg, profile=get_profile("quick", device="cpu"), eval_dataset=data)
    torch.save({"weights": model.state_dict(), "records": hist.records, "ema": hist.ema.state_dict()["shadow"]},
               os.path.join(out, f"rank{rank}.pt"))
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_in_process(script, args, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [str(script)] + [str(a) for a in args])
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        torch.set_num_threads(threads)


def test_two_processes_match_each_other_and_one_process(tmp_path, monkeypatch):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    ddp_out, one_out = tmp_path / "ddp", tmp_path / "one"
    ddp_out.mkdir(), one_out.mkdir()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "T2I_PROFILE": "quick"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           str(script), str(ddp_out), "4", "6", str(tmp_path / "ckpt_ddp")]  # 2 processes x batch 4
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # only rank 0 prints its summary lines
    assert proc.stdout.count("train: Regressor") == 1 and proc.stdout.count("done: ") == 1, proc.stdout

    run_in_process(script, [one_out, 8, 6, tmp_path / "ckpt_one"], monkeypatch)  # 1 process x batch 8

    r0, r1 = (torch.load(ddp_out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    one = torch.load(one_out / "rank0.pt", weights_only=True)
    for k in r0["weights"]:
        assert torch.equal(r0["weights"][k], r1["weights"][k]), f"ranks disagree on {k}"
        torch.testing.assert_close(r0["weights"][k], one["weights"][k], rtol=1e-5, atol=1e-6)
    # the EMA starts from rank 0's weights (after DDP's broadcast), so it agrees across ranks and with one process
    for k in r0["ema"]:
        assert torch.equal(r0["ema"][k], r1["ema"][k]), f"ranks disagree on the EMA of {k}"
        torch.testing.assert_close(r0["ema"][k], one["ema"][k], rtol=1e-5, atol=1e-6)
    # the logged losses are global means too (averaged over the processes)
    for a, b in zip(r0["records"], one["records"]):
        assert a["step"] == b["step"] and a["split"] == b["split"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["mae"] == pytest.approx(b["mae"], rel=1e-5)
    assert [r["split"] for r in r0["records"]].count("eval") == 1 and r1["records"][-1]["split"] == "train"

    # only rank 0 wrote the checkpoint; it holds both ranks' random states and resumes in one process
    assert sorted(os.listdir(tmp_path / "ckpt_ddp")) == ["last.pt"]
    state = load_checkpoint(tmp_path / "ckpt_ddp" / "last.pt")
    assert state["step"] == 6 and len(state["rng"]) == 2 and state["world_size"] == 2
    for k in r0["weights"]:
        assert torch.equal(state["model"][k], r0["weights"][k])
        assert torch.equal(state["ema"]["shadow"][k], r0["ema"][k])

    # world size 2 -> 1 with the same global batch: the resumed run continues on the same examples
    shutil.copytree(tmp_path / "ckpt_ddp", tmp_path / "ckpt_resume")
    (tmp_path / "resumed").mkdir()
    run_in_process(script, [tmp_path / "resumed", 8, 9, tmp_path / "ckpt_resume"], monkeypatch)
    (tmp_path / "one9").mkdir()
    run_in_process(script, [tmp_path / "one9", 8, 9, tmp_path / "ckpt_one9"], monkeypatch)
    resumed = torch.load(tmp_path / "resumed" / "rank0.pt", weights_only=True)
    straight = torch.load(tmp_path / "one9" / "rank0.pt", weights_only=True)
    for k in resumed["weights"]:
        torch.testing.assert_close(resumed["weights"][k], straight["weights"][k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(resumed["ema"][k], straight["ema"][k], rtol=1e-5, atol=1e-6)
