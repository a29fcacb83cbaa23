"""Checkpoints: atomic saves, safe loads, and errors that say what is wrong.

Three promises:

1. **A save never leaves a broken file behind.** :func:`save_checkpoint` writes to a temporary file in
   the same directory, flushes and fsyncs it, then ``os.replace``-s it over the target. ``os.replace``
   is atomic on one file system, so a crash (a killed Colab runtime, a full disk) in the middle of a
   save leaves the *previous* checkpoint exactly as it was.
2. **A load runs no code from the file.** :func:`load_checkpoint` uses ``torch.load(weights_only=True)``,
   which only rebuilds tensors and plain Python values (dict, list, tuple, str, int, float, bool, None).
   That is why a checkpoint here stores random-number-generator states as tensors and lists rather than
   NumPy arrays: :func:`save_checkpoint` refuses anything else up front, so the problem shows at save
   time and not when you try to resume.
3. **Errors name the file and the fix.** A truncated or garbled file, or weights that do not fit the
   model (missing keys, unexpected keys, shape mismatches with both shapes) raise
   :class:`CheckpointError` with the path in the message.

On Colab the runtime's disk disappears with the session. To keep checkpoints, mount Google Drive
(``from google.colab import drive; drive.mount('/content/drive')``) and use a directory on it as the
checkpoint directory, e.g. ``TrainConfig(ckpt_dir="/content/drive/MyDrive/t2i-book/ch02")``. It is just
a path: nothing else changes, and the atomic save matters more there, since Drive syncs in the
background.

In multi-process (``torchrun``) runs only rank 0 writes; the other ranks' calls return without writing.

:func:`save_weights` / :func:`load_weights` export and import the model alone as ``.safetensors``: no
optimizer, no pickle, loadable from any framework.

Defined in Chapter 1 (every chapter's training run checkpoints through it).
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from t2i_lib import env
from t2i_lib.storage.atomic import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, unsafe to load, or does not fit the model."""


def _is_main_process() -> bool:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env.rank() == 0


# Exact types, not subclasses: np.float64 is a float and torch.__version__ a str, yet a safe load refuses both.
_PLAIN = (str, int, float, bool, type(None), torch.Size, torch.dtype, torch.device)


def _check_plain(obj, where: str = "state") -> None:
    """Raise TypeError naming the first value that torch.load(weights_only=True) would refuse."""
    if isinstance(obj, (torch.Tensor, nn.Parameter)) or type(obj) in _PLAIN:
        return
    if type(obj) in (dict, OrderedDict):
        for k, v in obj.items():
            if type(k) not in (str, int, float, bool, tuple):
                raise TypeError(f"{where} has a key of type {type(k).__name__}: {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, np.ndarray):
        hint = " (convert NumPy arrays with torch.from_numpy or .tolist())"
    elif isinstance(obj, (str, int, float, np.generic)):
        hint = " (a subclass of a plain type: convert it with str(), int() or float())"
    else:
        hint = ""
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a safe load "
        f"(torch.load(weights_only=True)) will not rebuild. Store tensors and plain Python values only{hint}.")


def save_checkpoint(path: str | os.PathLike, state: dict, *, all_ranks: bool = False) -> Path | None:
    """Write ``state`` to ``path`` atomically (temp file in the same dir, fsync, ``os.replace``).

    ``state`` may hold tensors and plain Python values only (see the module docstring). Parent
    directories are created. In a multi-process run only rank 0 writes (returns None elsewhere) unless
    ``all_ranks=True``. Returns the path written.

    Defined in Chapter 1.
    """
    if not all_ranks and not _is_main_process():
        return None
    _check_plain(state)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(Path(path), write)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Raises FileNotFoundError if there is no file, and :class:`CheckpointError` (naming the file) if it is
    corrupt or incomplete, or holds objects a safe load refuses.

    Defined in Chapter 1.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {path}. Train first (a run with TrainConfig(ckpt_dir=...) writes "
            f"last.pt there), or check the path; on Colab, mount Google Drive before using a Drive path.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # A weights-only refusal means "a real checkpoint with objects we will not rebuild" only if the file
        # is the zip archive torch.save writes; random bytes can trip the same check, and those are damage.
        msg = str(e).lower()
        if ("weights only" in msg or "weights_only" in msg) and zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} holds Python objects beyond tensors and plain values, so t2i_lib will not load "
                f"it (a safe load never runs code from a file). If you wrote it yourself and trust it, "
                f"load it with torch.load(path, weights_only=False).\nDetails: {e}") from e
        raise CheckpointError(_corrupt_message(path, e)) from e
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, IndexError) as e:
        raise CheckpointError(_corrupt_message(path, e)) from e


def _corrupt_message(path: Path, err: BaseException) -> str:
    size = path.stat().st_size if path.exists() else 0
    return (f"Checkpoint {path} is corrupt or incomplete ({size} bytes; reading it failed with "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).\n"
            f"t2i_lib's saves are atomic, so an interrupted save keeps the previous checkpoint rather than "
            f"leaving a half-written file; a file like this one usually comes from an interrupted copy or "
            f"an unfinished Drive sync. Restore a good copy, or delete it (or pass resume=False) to start "
            f"training from scratch.")


# Prefixes that wrappers add to parameter names: DDP ("module.") and torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrapper_prefixes(sd: dict, model_keys: set) -> dict:
    for prefix in _WRAPPER_PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd) and not any(k.startswith(prefix) for k in model_keys):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(int(d)) for d in s) + ")"


def load_model_state(model: nn.Module, state_dict: dict, path: str | os.PathLike | None = None,
                     strict: bool = True) -> nn.Module:
    """Load ``state_dict`` into ``model``, or raise :class:`CheckpointError` saying exactly what differs.

    The error names the file (``path``), then lists missing keys (in the model, not in the file),
    unexpected keys (in the file, not in the model) and shape mismatches with the model's shape and
    the file's shape. ``strict=False`` tolerates missing/unexpected keys but never a shape mismatch.
    Prefixes added by DDP (``module.``) or ``torch.compile`` (``_orig_mod.``) are removed first.

    Defined in Chapter 1.
    """
    expected = model.state_dict()
    sd = _strip_wrapper_prefixes(dict(state_dict), set(expected))
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [(k, tuple(expected[k].shape), tuple(sd[k].shape)) for k in expected
                  if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if mismatched or (strict and (missing or unexpected)):
        src = f"Checkpoint {path}" if path is not None else "The state dict"
        lines = [f"{src} does not fit {type(model).__name__}:"]
        if strict and missing:
            lines.append(f"  missing keys ({len(missing)}; in the model, not in the file): " + ", ".join(missing))
        if strict and unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}; in the file, not in the model): "
                         + ", ".join(unexpected))
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}):")
            lines += [f"    {k}: model expects {_fmt_shape(e)}, file has {_fmt_shape(f)}" for k, e, f in mismatched]
        lines.append("The file was most likely saved from a model built with a different configuration "
                     "(sizes, number of layers) or a different model class: build the model the same way "
                     "it was built when the file was saved.")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(sd, strict=strict)
    return model


def capture_rng_state(device: torch.device | str | None = None) -> dict:
    """Python, NumPy and torch CPU RNG states (plus the CUDA one for ``device`` if it is a GPU).

    Only the given CUDA device's state is taken, not every GPU's: asking for all of them would start
    a CUDA context on each GPU from every process of a multi-GPU run.
    """
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np.asarray(np_state[1], dtype=np.int64).copy()),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device | str | None = None) -> None:
    """Undo :func:`capture_rng_state`: put every generator back where it was."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    device = torch.device(device) if device is not None else None
    if state.get("cuda") is not None and device is not None and device.type == "cuda" \
            and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None,
                 *, all_ranks: bool = False) -> Path | None:
    """Export the model's weights (only) to a ``.safetensors`` file, atomically.

    Tied weights (one tensor under two names) are stored once, which safetensors requires.
    ``metadata`` is a small dict of strings kept in the file's header (e.g. the model config).

    Defined in Chapter 1.
    """
    from safetensors.torch import save_model

    if not all_ranks and not _is_main_process():
        return None

    def write(tmp: Path) -> None:
        save_model(model, str(tmp), metadata=metadata)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    return atomic_write(Path(path), write)


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                 device: str | torch.device = "cpu") -> nn.Module:
    """Load a ``.safetensors`` file written by :func:`save_weights` into ``model``.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for a corrupt one or one
    whose tensors do not fit the model (see :func:`load_model_state`).

    Defined in Chapter 1.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    try:
        sd = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(_corrupt_message(path, e)) from e
    # Names dropped because they shared storage with another name (tied weights): refill them from the
    # name that was kept, by matching storage inside the model itself.
    expected = model.state_dict()
    by_ptr: dict[tuple, list[str]] = {}
    for k, v in expected.items():
        if v.numel():
            key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()))
            by_ptr.setdefault(key, []).append(k)
    for names in by_ptr.values():
        present = [n for n in names if n in sd]
        if present:
            for n in names:
                sd.setdefault(n, sd[present[0]])
    return load_model_state(model, sd, path, strict=strict)
