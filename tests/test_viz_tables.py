"""Results tables: HTML in the book (so nothing is clipped), aligned text without a browser."""

from __future__ import annotations

import pytest

from t2i_lib.experiments.estimators import compare_estimators
from t2i_lib.viz.tables import Table, estimator_table


def test_text_and_html_hold_the_same_cells():
    t = Table(["run", "ELBO", "PSNR"], [["spatial <VAE>", "2861", "22.1"], ["ResNet", "-1798", "16.1"]], title="t")
    text = str(t).splitlines()
    assert text[0] == "t" and text[1].startswith("run") and text[1].endswith("PSNR")
    assert text[3].endswith("22.1") and text[4].split() == ["ResNet", "-1798", "16.1"]
    assert len({len(line) for line in text[1:]}) == 1  # aligned
    html = t._repr_html_()
    assert "<caption>t</caption>" in html and "spatial &lt;VAE&gt;" in html and html.count("<tr") == 3


def test_a_row_without_a_cell_for_each_column_is_refused():
    with pytest.raises(ValueError, match=r"rows \[1\] do not have one cell for each of the 2 columns"):
        Table(["a", "b"], [["1", "2"], ["3"]])


def test_estimator_table_marks_a_missed_interval():
    rows = compare_estimators("step", 1.0, 0.3, 10_000)  # the pathwise estimate of a step function is 0
    table = estimator_table(rows)
    missed = {i for i, r in enumerate(rows) if r.covers is False}
    assert missed and table.highlight == missed
    assert table._repr_html_().count('style="background:#fde8e8"') == len(missed)
    assert all(table.rows[i][-1] == "NO" for i in missed)
