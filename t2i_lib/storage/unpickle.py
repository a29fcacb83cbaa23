"""Restricted unpickling: reading tensors out of a pickle without running any code it names.

A pickle is a program: loading one the ordinary way imports whatever classes it names and calls whatever
functions it asks for. Some weights are only published as pickles of whole modules (OpenAI's DALL-E dVAE,
Chapter 5). This module reads such files with every global refused except PyTorch's own weights-only
allow-list and *stand-ins*: inert classes registered under the exact names the pickle uses, which only
store the pickled attributes. :func:`collect_tensors` then walks the tree of stand-ins and copies out the
parameters and buffers under the usual dotted names.

It relies on ``torch._weights_only_unpickler._get_allowed_globals``, a private PyTorch function (there is
no public one that returns the allow-list). :func:`torch_allowed_globals` says clearly what to do when a
PyTorch version lacks it.

Defined in Chapter 5.
"""

from __future__ import annotations

import pickle

import torch

from t2i_lib.storage.checkpoint import CheckpointError


def torch_allowed_globals() -> dict:
    """PyTorch's allow-list for ``weights_only`` loading: full name -> object.

    Raises :class:`~t2i_lib.storage.checkpoint.CheckpointError` with what to do when the installed PyTorch lacks the private function
    that returns it (``torch._weights_only_unpickler._get_allowed_globals``).
    """
    try:
        from torch._weights_only_unpickler import _get_allowed_globals
    except ImportError as e:  # the module or the function is gone in this PyTorch
        raise CheckpointError(
            f"This PyTorch ({torch.__version__}) has no torch._weights_only_unpickler._get_allowed_globals, "
            f"which the restricted unpickler of t2i_lib.storage.unpickle needs for files in PyTorch's "
            f"pre-1.6 format. Install a PyTorch between 2.4 and the version pinned in constraints.txt, or "
            f"convert the file to safetensors on a machine that has one.") from e
    return _get_allowed_globals()

class PickledObject:
    """Base of the inert stand-ins that replace pickled classes. Building one runs no code of ours or the
    file's beyond storing the pickled attributes in ``__dict__``."""

    _pickled_name = "?"
    # Read by torch.load for pre-1.6 files when the class source saved in the file differs from the
    # installed one (it will: that source is from 2021's torch and dall_e): False means "just warn".
    dump_patches = False

    def __setstate__(self, state):  # defined explicitly so behaviour does not depend on the Python version
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state), as pickle allows
            state, slots = state
            state = {**(state or {}), **(slots or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of type {type(state).__name__} for "
                                         f"{self._pickled_name}")
        self.__dict__.update(state)


def make_standin(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    # The class's own module/qualname match the pickled name too, so that messages (and PyTorch's
    # name lookup, on versions that key by __module__.__qualname__) see the name the file uses.
    return type(name, (PickledObject,), {"__module__": module, "__qualname__": name, "_pickled_name": full_name})


class _RestrictedUnpickler(pickle.Unpickler):
    standins: dict[str, type] = {}  # set per load by restricted_pickle_module()

    """Python's unpickler with every global refused except PyTorch's weights-only allow-list and our
    stand-ins (the restriction the ``pickle`` documentation recommends, via ``find_class``)."""

    def find_class(self, module: str, name: str):
        import _compat_pickle  # protocol-2 pickles name Python 2 modules (__builtin__.set); map them

        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        allowed = torch_allowed_globals()
        if full in allowed:
            return allowed[full]
        if full in self.standins:
            return self.standins[full]
        raise pickle.UnpicklingError(f"Unsupported global: {full} is not on the allow-list")


def restricted_pickle_module(standins: dict[str, type]):
    """A ``pickle_module`` for ``torch.load`` of pre-1.6 files: every global the file names must be on
    PyTorch's weights-only allow-list or be one of ``standins`` (full pickled name -> stand-in class)."""
    unpickler = type("RestrictedUnpickler", (_RestrictedUnpickler,), {"standins": dict(standins)})
    return type("RestrictedPickle", (_RestrictedPickle,), {"Unpickler": unpickler})


class _RestrictedPickle:
    """Passed to ``torch.load`` as its ``pickle_module`` for files in PyTorch's pre-1.6 format.

    In that format ``torch.save`` of a whole module also stores the class's source code under a
    ``("module", class, file, source)`` record, which PyTorch's ``weights_only`` loader rejects outright.
    With this module ``torch.load`` still does its usual storage handling, but every global the pickle
    names goes through :class:`_RestrictedUnpickler` (the source text is only compared, never run).
    """

    Unpickler = _RestrictedUnpickler

    @classmethod
    def load(cls, f, **kwargs):
        return cls.Unpickler(f, **kwargs).load()


def collect_tensors(node, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """Walk a tree of stand-in modules and gather parameters and persistent buffers under dotted names."""
    where = prefix[:-1] or "<root>"
    if not isinstance(node, PickledObject):
        raise CheckpointError(f"expected a pickled module at {where}, found a {type(node).__name__}")
    if depth > 64:
        raise CheckpointError(f"modules nested more than 64 deep at {where}; not a dVAE file")
    state = node.__dict__
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        entries = state.get(kind) or {}
        if not isinstance(entries, dict):
            raise CheckpointError(f"{where}.{kind} is a {type(entries).__name__}, not a dict")
        for name, t in entries.items():
            if t is None or (kind == "_buffers" and name in non_persistent):
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t.detach().contiguous()
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"{where}._modules is a {type(children).__name__}, not a dict")
    for name, child in children.items():
        if child is not None:
            collect_tensors(child, f"{prefix}{name}.", out, depth + 1)
