"""How fast is one training step, and how much memory does it take? (A measurement, not a test.)

Trains a small convolutional autoencoder on random 3x32x32 images through ``t2i_lib.train.train`` -- the
same loop the chapters use, progress bar and bookkeeping included -- for a few batch sizes and every
precision this machine offers (fp32; on a GPU also bf16 where supported, and fp16 with the loss scaler),
and prints one table row per combination:

    python benchmarks/train_step.py                      # defaults: batch sizes 16 64 256
    python benchmarks/train_step.py --batch-sizes 32 128 --steps 50 --device cpu

Columns: milliseconds per optimizer step (median over the timed steps, after a few warm-up steps),
examples per second, and peak memory: on a GPU the peak of ``torch.cuda.max_memory_allocated`` for that
row; on the CPU the largest resident set size (RSS) seen during the row. RSS belongs to the whole
process and the allocator keeps freed memory, so CPU rows are an upper bound that can carry over from
the row before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from t2i_lib.profiles import Profile
from t2i_lib.train.trainer import TrainConfig, train


class ConvAutoencoder(nn.Module):
    """About 0.3 M parameters: two strided convolutions down, two transposed convolutions up."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.ReLU(),          # (B, w, 16, 16)
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.ReLU(),  # (B, 2w, 8, 8)
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(),  # (B, w, 16, 16)
            nn.ConvTranspose2d(width, 3, 4, 2, 1),                      # (B, 3, 32, 32)
        )

    def loss(self, batch):
        x = batch  # (B, 3, 32, 32)
        recon = self.dec(self.enc(x))
        return nn.functional.mse_loss(recon.float(), x), {}


class RandomImages(Dataset):
    def __init__(self, n: int):
        self.x = torch.rand(n, 3, 32, 32)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            import os
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the process-wide peak
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def precisions(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["fp32", "bf16"]  # CPU autocast runs bf16; the quick profile itself uses fp32
    out = ["fp32"]
    if torch.cuda.is_bf16_supported():
        out.append("bf16")
    out.append("fp16")
    return out


def measure(device: torch.device, precision: str, batch_size: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = ConvAutoencoder()
    data = RandomImages(batch_size * 4)
    profile = Profile(name="quick" if device.type == "cpu" else "colab", device=device, precision=precision)
    stamps: list[float] = []
    peak_rss = [rss_bytes()]

    def clock(state):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        peak_rss.append(rss_bytes())

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    cfg = TrainConfig(steps=warmup + steps, batch_size=batch_size, lr=1e-3, log_every=10_000)
    train(model, data, cfg, profile=profile, callbacks=[clock], progress=False)
    times = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]  # the timed steps only
    ms = 1000 * statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else max(peak_rss)
    return {"ms": ms, "per_s": batch_size / (ms / 1000), "peak_mb": peak / 2**20}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    mem = "peak CUDA MB" if device.type == "cuda" else "peak RSS MB"
    print(f"train step benchmark: ConvAutoencoder on 3x32x32, {name}, torch {torch.__version__}")
    print(f"{'precision':>9} | {'batch':>5} | {'ms/step':>8} | {'samples/s':>10} | {mem:>12}")
    print("-" * 57)
    for prec in precisions(device):
        for bs in args.batch_sizes:
            r = measure(device, prec, bs, args.steps, max(1, args.warmup))
            print(f"{prec:>9} | {bs:>5} | {r['ms']:>8.2f} | {r['per_s']:>10.0f} | {r['peak_mb']:>12.1f}", flush=True)


if __name__ == "__main__":
    main()
