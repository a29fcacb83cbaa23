"""One rule for every model's ``__init__(cfg=None, **overrides)``.

``Model()`` uses the config's defaults, ``Model(cfg)`` uses ``cfg``, and ``Model(cfg, latent_dim=2)`` or
``Model(latent_dim=2)`` changes single fields; a config of a parent class (a ``VAEConfig`` given to a
model that wants a ``ScoreFunctionVAEConfig``) is upgraded, keeping its values.
"""

from __future__ import annotations

from dataclasses import fields


def resolve_config(cls, cfg=None, overrides: dict | None = None):
    """Return an instance of the dataclass ``cls`` built from ``cfg`` (or the defaults) and ``overrides``."""
    overrides = overrides or {}
    if cfg is None:
        return cls(**overrides)
    if isinstance(cfg, cls) and not overrides:
        return cfg
    return cls(**{**{f.name: getattr(cfg, f.name) for f in fields(cfg)}, **overrides})
