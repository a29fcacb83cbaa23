"""Results tables that the book renders as HTML tables (never a wide block of fixed-width text that the
column would clip) and a notebook without a browser prints as aligned text.

``Table(columns, rows)`` holds already formatted cells; ``display(table)`` shows it. The chapters' tables
are built from the cells their experiments format (``bound_table``, ``estimator_table``), so the text and
the HTML forms say the same thing.

Defined in Chapter 2.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from t2i_lib.experiments.bound import BOUND_COLUMNS, bound_cells
from t2i_lib.experiments.estimators import ESTIMATOR_COLUMNS, estimator_cells

__all__ = ["Table", "bound_table", "estimator_table"]


@dataclass
class Table:
    """A table of strings: ``columns`` names, ``rows`` of cells (one per column), an optional ``title``.
    The first column is text (left-aligned), the others numbers (right-aligned).

    Defined in Chapter 2.
    """

    columns: list[str]
    rows: list[list[str]]
    title: str | None = None
    highlight: set[int] = field(default_factory=set)  # rows to mark (e.g. an interval that missed)

    def __post_init__(self):
        self.columns = [str(c) for c in self.columns]
        self.rows = [[str(v) for v in row] for row in self.rows]
        bad = [i for i, row in enumerate(self.rows) if len(row) != len(self.columns)]
        if bad:
            raise ValueError(f"rows {bad} do not have one cell for each of the {len(self.columns)} columns")

    def __str__(self) -> str:
        widths = [max(len(c), *(len(r[j]) for r in self.rows)) if self.rows else len(c)
                  for j, c in enumerate(self.columns)]

        def line(cells):
            return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths)))

        out = [self.title] if self.title else []
        out += [line(self.columns), "  ".join("-" * w for w in widths)] + [line(r) for r in self.rows]
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f'<th style="text-align:{"left" if j == 0 else "right"}">{esc(c)}</th>'
                       for j, c in enumerate(self.columns))
        body = []
        for i, row in enumerate(self.rows):
            style = ' style="background:#fde8e8"' if i in self.highlight else ""
            cells = "".join(f'<td style="text-align:{"left" if j == 0 else "right"}">{esc(c)}</td>'
                            for j, c in enumerate(row))
            body.append(f"<tr{style}>{cells}</tr>")
        caption = f"<caption>{esc(self.title)}</caption>" if self.title else ""
        return (f'<table class="t2i-table">{caption}<thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>')


def bound_table(rows: list[dict]) -> Table:
    """The rows of :func:`t2i_lib.experiments.bound.check_bound` as a table. Defined in Chapter 2."""
    return Table(list(BOUND_COLUMNS), [bound_cells(r) for r in rows])


def estimator_table(rows, title: str | None = None) -> Table:
    """The rows of :func:`t2i_lib.experiments.estimators.summarize` as a table; a row whose 99% interval
    misses the exact value is highlighted. Defined in Chapter 3."""
    return Table(list(ESTIMATOR_COLUMNS), [estimator_cells(r) for r in rows], title=title,
                 highlight={i for i, r in enumerate(rows) if r.covers is False})
