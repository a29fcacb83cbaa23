"""What a run logged: :class:`History` (records, series, a plot) and :class:`LivePlot` (redrawn in place).

Defined in Chapter 1 (records from callbacks, :meth:`History.add`, in Chapter 7).
"""

from __future__ import annotations

import io
import math
import time
from typing import Any, Iterable

__all__ = ["History", "LivePlot", "in_notebook", "LIVE_PLOT_INTERVAL_S"]

LIVE_PLOT_INTERVAL_S = 1.0  # least time between two redraws of the live plot (evaluations always redraw)
LIVE_PLOT_SIZE = (6, 3.5)  # inches
LIVE_PLOT_DPI = 90


class History:
    """Logged values: a list of dicts ``{"step", "split" ("train"|"eval"), "loss", "lr", **metrics}``.

    Train records are means over the ``log_every`` steps before ``step``; eval records are means over the
    evaluation set at ``step``. Callbacks may add records of their own split (``{"step", "split", **values}``,
    see :meth:`add`). After :func:`t2i_lib.train.trainer.train`, ``ema`` is the run's
    :class:`t2i_lib.train.ema.EMA` of the weights (None unless ``TrainConfig(ema_decay=...)``).
    Defined in Chapter 1.
    """

    def __init__(self, records: Iterable[dict] | None = None):
        self.records: list[dict] = [dict(r) for r in (records or [])]
        self.ema: Any = None  # set by train(): the EMA of the weights, if the run kept one

    def log(self, step: int, split: str, loss: float, lr: float, **metrics: float) -> dict:
        rec = {"step": int(step), "split": split, "loss": float(loss), "lr": float(lr)}
        rec.update({k: float(v) for k, v in metrics.items()})
        self.records.append(rec)
        return rec

    def add(self, step: int, split: str, **values: float) -> dict:
        """Record ``values`` (numbers) at ``step`` under ``split`` (e.g. ``"callback"``); no loss needed."""
        rec = {"step": int(step), "split": split}
        rec.update({k: float(v) for k, v in values.items()})
        self.records.append(rec)
        return rec

    def series(self, key: str = "loss", split: str = "train") -> tuple[list[int], list[float]]:
        """(steps, values) of ``key`` in ``split``'s records. Empty lists if that split has no records."""
        rows = [r for r in self.records if r["split"] == split]
        pairs = [(r["step"], r[key]) for r in rows if key in r]
        if rows and not pairs:
            raise KeyError(f"No {split!r} record has {key!r}; keys logged for {split!r}: {self.keys(split)}")
        return [s for s, _ in pairs], [v for _, v in pairs]

    def last(self, key: str = "loss", split: str = "train") -> float:
        """The most recent value of ``key`` in ``split``."""
        for r in reversed(self.records):
            if r["split"] == split and key in r:
                return r[key]
        raise KeyError(f"No {split!r} record has {key!r} yet; keys logged for {split!r}: {self.keys(split)}")

    def keys(self, split: str = "train") -> list[str]:
        out: dict[str, None] = {}
        for r in self.records:
            if r["split"] == split:
                out.update(dict.fromkeys(k for k in r if k not in ("step", "split")))
        return list(out)

    def plot(self, keys: str | Iterable[str] = ("loss",), ax=None, logy: bool = False):
        """Train curves as lines and eval values as dots, one pair per key. Returns the matplotlib Axes."""
        if ax is None:
            import matplotlib.pyplot as plt
            _, ax = plt.subplots(figsize=LIVE_PLOT_SIZE)
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        for key in keys:
            for split, style in (("train", "-"), ("eval", "o--")):
                rows = [(r["step"], r[key]) for r in self.records if r["split"] == split and key in r]
                if rows:
                    ax.plot([s for s, _ in rows], [v for _, v in rows], style, ms=4, label=f"{split} {key}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
        if logy:
            ax.set_yscale("log")
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
        return ax

    def state_dict(self) -> list[dict]:
        return [dict(r) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        n_train = sum(r["split"] == "train" for r in self.records)
        n_eval = sum(r["split"] == "eval" for r in self.records)
        n_other = len(self.records) - n_train - n_eval
        other = f", {n_other} other records" if n_other else ""
        tail = f", last train loss {self.last():.4g}" if n_train else ""
        return f"History({n_train} train records, {n_eval} eval records{other}{tail})"

def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a plot can be displayed and redrawn)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class LivePlot:
    """A loss plot that redraws in place in a notebook (one output, updated through its display_id)."""

    def __init__(self, enabled: bool, min_interval_s: float = LIVE_PLOT_INTERVAL_S):
        self.enabled = enabled and in_notebook()
        self.handle = None
        self.min_interval_s = min_interval_s
        self._last = -math.inf

    def update(self, history: History, force: bool = False) -> None:
        losses = [r for r in history.records if "loss" in r]  # callback records may have no loss
        if not self.enabled or not losses:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            return
        self._last = now
        from IPython.display import Image, display
        from matplotlib.figure import Figure

        # A bare Figure (not pyplot) so the inline backend does not also show it when the cell ends.
        fig = Figure(figsize=LIVE_PLOT_SIZE)
        ax = fig.add_subplot()
        history.plot(ax=ax)
        last = losses[-1]
        ax.set_title(f"step {last['step']}: {last['split']} loss {last['loss']:.4g}", fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=LIVE_PLOT_DPI, bbox_inches="tight")
        img = Image(data=buf.getvalue(), format="png")
        if self.handle is None:
            self.handle = display(img, display_id=True)
        else:
            self.handle.update(img)

