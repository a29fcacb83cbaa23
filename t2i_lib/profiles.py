"""Run profiles: one code path, two sizes.

A *profile* decides how big a chapter's run is and where it runs:

- ``quick``: the CPU, offline datasets (Digits, Shapes), a few minutes per chapter. What ``make book``
  and CI run.
- ``colab``: a CUDA GPU (Colab's T4), the real datasets (MNIST, CIFAR-10, COCO), at most ~30-45 min
  per chapter.

The choice is automatic (CUDA present -> ``colab``, else ``quick``) and the environment variable
``T2I_PROFILE`` overrides it. Precision follows the hardware: fp32 on the CPU; bf16 autocast on GPUs
that support it (Ampere and newer); fp16 autocast with a loss scaler on the T4, which has no bf16.

Defined in Chapter 1 (every chapter's first code cell calls :func:`setup`).
"""

from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from t2i_lib import env

PROFILES = ("quick", "colab")
ENV_VAR = env.PROFILE


@dataclass(frozen=True)
class Profile:
    name: str  # "quick" or "colab"
    device: torch.device  # where tensors live
    precision: str  # "fp32", "fp16" or "bf16"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None when running in full precision."""
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)

    @property
    def use_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none."""
        return self.precision == "fp16"

    @property
    def is_quick(self) -> bool:
        return self.name == "quick"

    def autocast(self):
        """Context manager for the forward pass: autocast on GPU in fp16/bf16, nothing on fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def pick(self, quick, colab):
        """Return ``quick`` or ``colab`` according to this profile (recipes use this)."""
        return quick if self.is_quick else colab


def choose_precision(device: torch.device) -> str:
    """fp32 on CPU; bf16 where the GPU supports it; fp16 (with a loss scaler) otherwise, e.g. a T4."""
    if device.type != "cuda":
        return "fp32"
    if torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp16"


def get_profile(name: str | None = None, device: str | torch.device | None = None,
                precision: str | None = None) -> Profile:
    """Resolve the run profile.

    Order: the ``name`` argument, then ``$T2I_PROFILE``, then automatic (CUDA -> colab, else quick).
    ``device`` and ``precision`` may be forced (tests do this); otherwise they follow the hardware.
    """
    has_cuda = torch.cuda.is_available()
    name = name or env.profile_name() or ("colab" if has_cuda else "quick")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown run profile {name!r} (from {ENV_VAR} or the argument). "
            f"Valid profiles: {', '.join(PROFILES)}. Example: export {ENV_VAR}=quick")
    if device is None:
        device = "cuda" if has_cuda else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not has_cuda:
        raise RuntimeError("device='cuda' was asked for but torch sees no CUDA GPU. "
                           "On Colab: Runtime > Change runtime type > T4 GPU.")
    precision = precision or choose_precision(device)
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be 'fp32', 'fp16' or 'bf16', got {precision!r}")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast is a GPU feature here; use precision='fp32' on the CPU.")
    return Profile(name=name, device=device, precision=precision)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def in_colab() -> bool:
    return "google.colab" in sys.modules


def banner(chapter: str, profile: Profile, dataset: str, expected_minutes: float | str) -> str:
    """The line every chapter prints first: what runs, where, on what, and for how long."""
    dev = profile.device.type
    if dev == "cuda":
        dev = f"cuda ({torch.cuda.get_device_name(profile.device)})"
    threads = torch.get_num_threads()
    lines = [
        f"t2i-book | {chapter}",
        f"  profile   : {profile.name}  (set {ENV_VAR}=quick|colab to override)",
        f"  device    : {dev}, {threads} CPU threads",
        f"  precision : {profile.precision}" + ("  (autocast + loss scaler)" if profile.use_grad_scaler
                                                 else "  (autocast)" if profile.amp_dtype else ""),
        f"  dataset   : {dataset}",
        f"  expected  : about {expected_minutes} min in this profile",
        f"  torch     : {torch.__version__}",
    ]
    return "\n".join(lines)


def setup(chapter: str, dataset: dict | str, expected_minutes: dict | float | str, seed: int = 0,
          profile: str | None = None) -> Profile:
    """Resolve the profile, seed everything and print the chapter banner. Returns the profile.

    ``dataset`` and ``expected_minutes`` may be dicts keyed by profile name.
    """
    prof = get_profile(profile)
    seed_everything(seed)
    ds = dataset[prof.name] if isinstance(dataset, dict) else dataset
    mins = expected_minutes[prof.name] if isinstance(expected_minutes, dict) else expected_minutes
    print(banner(chapter, prof, ds, mins))
    return prof
