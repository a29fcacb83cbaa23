"""What does each chapter's colab recipe cost per step? (A measurement, not a test.)

For every colab-profile training recipe of Chapters 1-5, builds the model that chapter trains, at the
recipe's batch size, on a synthetic batch of the real shapes, and prints one row per recipe.

On any machine (the CPU is enough):

- ``GFLOP/step``: floating-point operations of one optimizer step (forward and backward of the model's
  ``loss``), counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products;
  element-wise work is not counted).
- ``act MiB``: what autograd saves for the backward pass, summed over the distinct tensors it keeps
  (``saved_tensors_hooks``), in fp32. Under fp16 autocast most of it is stored in half precision.
- ``state MiB``: weights, gradients and AdamW's two moments in fp32 (4 + 4 + 8 bytes per trained
  parameter, 4 per frozen one).
- ``floor min``: the recipe's steps x FLOPs at an assumed sustained 20 TFLOP/s (about 30% of a T4's fp16
  tensor-core peak). A lower bound on a T4's time, never an estimate of it: small models are bound by
  kernel launches and data loading, not arithmetic.

On a CUDA GPU (or on the CPU with ``--time-on-cpu``) it also trains each model for real through
``t2i_lib.train.train`` (``--warmup`` steps, then three runs of ``--timed`` steps; the profile's precision,
or ``--precision fp16`` for the T4's fp16 + loss scaler on a newer GPU) and adds ``ms/step`` (the median),
``peak MiB`` (``torch.cuda.max_memory_allocated``, GPU only) and ``min``: the recipe's steps at the
measured rate. Those are measurements of that machine, not of a T4.

    python benchmarks/colab_budget.py                    # every recipe
    python benchmarks/colab_budget.py --only ch04        # one chapter (or one recipe: ch04/prior)
    python benchmarks/colab_budget.py --precision fp16   # on a GPU: the T4's precision
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from t2i_lib.models import AEConfig, ConvAutoencoder, LinearAutoencoder
from t2i_lib.models.dvae import DVAE, DVAEConfig
from t2i_lib.models.pixelcnn import GatedPixelCNN
from t2i_lib.models.vae import ConvVAE, ResNetVAE, SpatialVAE, VAEConfig
from t2i_lib.models.vae_sf import ScoreFunctionVAE
from t2i_lib.models.vqvae import VQVAE, ResNetVQVAE, VQVAEConfig
from t2i_lib.profiles import get_profile
from t2i_lib.recipes import recipe
from t2i_lib.train.trainer import train

ASSUMED_T4_FLOPS = 20e12
MNIST_VAE = VAEConfig(latent_dim=16, likelihood="bernoulli", binarize=True)
SHAPES_SMALL = dict(num_hiddens=32, num_residual_hiddens=16, embedding_dim=16, num_codes=64)


@dataclasses.dataclass(frozen=True)
class Run:
    chapter: str
    name: str
    model: Callable[[], torch.nn.Module]  # the model the chapter trains with this recipe
    item: Callable[[torch.Generator], object]  # one synthetic dataset item of the real shape and type
    note: str = ""


def image_label(c: int, s: int):
    return lambda g: (torch.rand(c, s, s, generator=g), 0)


def shapes_item(s: int = 32):
    return lambda g: {"image": torch.rand(3, s, s, generator=g)}


RUNS = [
    Run("ch01", "linear_ae", lambda: LinearAutoencoder(784, 10), image_label(1, 28)),
    Run("ch01", "conv_ae", lambda: ConvAutoencoder(AEConfig(in_channels=1, image_size=28, latent_dim=16)),
        image_label(1, 28)),
    Run("ch01", "conv_ae_2d", lambda: ConvAutoencoder(AEConfig(latent_dim=2)), image_label(1, 28)),
    Run("ch02", "vae", lambda: ConvVAE(MNIST_VAE), image_label(1, 28)),
    Run("ch02", "collapse", lambda: ConvVAE(MNIST_VAE, latent_dim=32, beta=8.0), image_label(1, 28), "x4 settings"),
    Run("ch02", "resnet_vae", lambda: ResNetVAE(latent_dim=128, pretrained=False, freeze_encoder=True),
        image_label(3, 32), "trunk frozen"),
    Run("ch02", "spatial_vae", lambda: SpatialVAE(), image_label(3, 32)),
    Run("ch03", "vae_estimators", lambda: ScoreFunctionVAE(latent_dim=16, likelihood="bernoulli", binarize=True,
                                                            estimator="score_function", n_samples=4),
        image_label(1, 28), "x3 estimators"),
    Run("ch04", "collapse", lambda: VQVAE(VQVAEConfig(**SHAPES_SMALL, kmeans_init=True, dead_code_threshold=2.0)),
        shapes_item(), "x2 settings"),
    Run("ch04", "vqvae", lambda: VQVAE(VQVAEConfig(ema=True, data_variance=0.06)), image_label(3, 32)),
    Run("ch04", "vqvae_shapes", lambda: VQVAE(VQVAEConfig.small(kmeans_init=True, dead_code_threshold=2.0)),
        shapes_item()),
    Run("ch04", "resnet_vqvae_mnist", lambda: ResNetVQVAE(image_size=32, pretrained=False, freeze_encoder=True),
        image_label(3, 32), "trunk frozen"),
    Run("ch04", "resnet_vqvae_cifar10", lambda: ResNetVQVAE(image_size=32, pretrained=False, freeze_encoder=True),
        image_label(3, 32), "trunk frozen"),
    Run("ch04", "resnet_vqvae_coco", lambda: ResNetVQVAE(image_size=64, pretrained=False, freeze_encoder=True),
        shapes_item(64), "trunk frozen"),
    Run("ch04", "prior", lambda: GatedPixelCNN(num_codes=64, hidden=128, num_layers=10, out_hidden=256,
                                              first_kernel_size=7),
        lambda g: (torch.randint(0, 64, (8, 8), generator=g),)),
    Run("ch05", "dvae", lambda: DVAE(DVAEConfig()), image_label(3, 32)),
    Run("ch05", "vqvae", lambda: VQVAE(VQVAEConfig(kmeans_init=True, dead_code_threshold=2.0)), image_label(3, 32)),
]


class Synthetic(Dataset):
    """``n`` items drawn once from ``item`` with a fixed seed (real shapes and types, random values)."""

    def __init__(self, item, n: int):
        g = torch.Generator().manual_seed(0)
        self.items = [item(g) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def cpu_counts(run: Run, batch_size: int) -> dict:
    """FLOPs of one forward + backward, autograd's saved bytes, and the parameter state, on the CPU."""
    torch.manual_seed(0)
    model = run.model().train()
    batch = torch.utils.data.default_collate(Synthetic(run.item, batch_size).items)
    saved: dict[int, int] = {}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            saved[key] = max(saved.get(key, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. wrapped) are skipped
            pass
        return t

    with FlopCounterMode(display=False) as flops, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = model.loss(batch)
        loss.backward()
    n_all = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": n_all, "trained": n_train, "flops": flops.get_total_flops(),
            "act_mib": sum(saved.values()) / 2**20, "state_mib": (4 * n_all + 12 * n_train) / 2**20}


def timed_steps(run: Run, cfg, device: str, precision: str | None, warmup: int, timed: int) -> dict:
    """Train for ``warmup`` then 3 x ``timed`` steps through t2i_lib.train; median ms per step, and on CUDA
    the peak of allocated memory."""
    profile = get_profile("colab", device=device, precision=precision)
    cuda = profile.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    model = run.model().to(profile.device)
    data = Synthetic(run.item, cfg.batch_size * 4)
    base = dataclasses.replace(cfg, log_every=10**9, eval_every=0, ckpt_dir=None, ckpt_every=0, num_workers=0,
                               warmup_steps=0, schedule="constant")
    train(model, data, dataclasses.replace(base, steps=warmup), profile=profile, progress=False)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(3):  # three timed runs: the median resists one slow start
        t0 = time.perf_counter()
        train(model, data, dataclasses.replace(base, steps=timed), profile=profile, progress=False)
        sync()
        times.append((time.perf_counter() - t0) / timed)
    return {"ms": 1e3 * statistics.median(times),
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
            "precision": profile.precision}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=None, help="a chapter (ch04) or one recipe (ch04/prior)")
    ap.add_argument("--precision", default=None, choices=["fp16", "bf16", "fp32"], help="GPU precision (default: the profile's)")
    ap.add_argument("--warmup", type=int, default=5, help="GPU: untimed steps first")
    ap.add_argument("--timed", type=int, default=20, help="GPU: steps per timed run")
    ap.add_argument("--time-on-cpu", action="store_true", help="also time the steps on the CPU (slow; no peak memory)")
    args = ap.parse_args()
    runs = [r for r in RUNS if args.only in (None, r.chapter, f"{r.chapter}/{r.name}")]
    if not runs:
        sys.exit(f"--only {args.only!r} matches no recipe; recipes: {', '.join(f'{r.chapter}/{r.name}' for r in RUNS)}")
    cuda = torch.cuda.is_available()
    timing = cuda or args.time_on_cpu
    where = f"CUDA: {torch.cuda.get_device_name()}" if cuda else f"CPU only ({torch.get_num_threads()} threads)"
    print(f"colab recipes, per optimizer step at the recipe's batch size; {where}")
    head = (f"{'recipe':<26}{'steps':>7}{'batch':>6}{'params':>11}{'trained':>11}{'GFLOP/step':>11}{'act MiB':>9}"
            f"{'state MiB':>10}{'floor min':>10}")
    if timing:
        head += f"{'ms/step':>9}{'peak MiB':>10}{'min':>7}"
    print(head + "  note")
    for run in runs:
        cfg = recipe(run.chapter, run.name, "colab")
        c = cpu_counts(run, cfg.batch_size)
        floor = cfg.steps * c["flops"] / ASSUMED_T4_FLOPS / 60
        row = (f"{run.chapter + '/' + run.name:<26}{cfg.steps:>7}{cfg.batch_size:>6}{c['params']:>11,}{c['trained']:>11,}"
               f"{c['flops'] / 1e9:>11.2f}{c['act_mib']:>9.1f}{c['state_mib']:>10.1f}{floor:>10.2f}")
        if timing:
            g = timed_steps(run, cfg, "cuda" if cuda else "cpu", args.precision, args.warmup, args.timed)
            row += f"{g['ms']:>9.1f}{g['peak_mib']:>10.0f}{cfg.steps * g['ms'] / 6e4:>7.1f}"
        print(row + (f"  {run.note}" if run.note else ""), flush=True)
    print(f"floor min: steps x FLOPs at an assumed {ASSUMED_T4_FLOPS / 1e12:.0f} TFLOP/s; a lower bound, not a T4 time."
          + (f" ms/step, peak MiB and min: measured on this machine ({where})." if timing else ""))


if __name__ == "__main__":
    main()
