"""History: records, series, records added by callbacks, and the state a checkpoint keeps."""

import pytest

from t2i_lib.train.history import History, LivePlot


def test_history_roundtrip():
    h = History()
    h.log(10, "train", 1.5, 0.1, kl=0.2)
    h.log(10, "eval", 1.7, 0.1)
    h2 = History(h.state_dict())
    assert h2.records == h.records and h2.last("kl") == 0.2 and h2.series("loss", "eval") == ([10], [1.7])
    assert "1 train records, 1 eval records" in repr(h2)


def test_records_from_callbacks_need_no_loss():
    h = History()
    h.log(3, "train", 1.0, 0.1)
    h.add(3, "callback", fid=31.5, n=2)
    h.add(6, "callback", fid=30.0)
    assert h.series("fid", "callback") == ([3, 6], [31.5, 30.0]) and h.last("n", "callback") == 2.0
    assert h.keys("callback") == ["fid", "n"] and h.records[1] == {"step": 3, "split": "callback", "fid": 31.5,
                                                                   "n": 2.0}
    assert "1 train records, 0 eval records, 2 other records" in repr(h)
    assert History(h.state_dict()).records == h.records
    ax = h.plot()  # the plot draws train and eval only; a loss-less record does not break it
    assert len(ax.lines) == 1
    with pytest.raises(KeyError, match="keys logged"):
        h.last("fid")  # the train split has no fid


def test_live_plot_skips_records_without_a_loss(monkeypatch):
    from t2i_lib.train import history as history_mod

    monkeypatch.setattr(history_mod, "in_notebook", lambda: False)
    h = History()
    h.add(1, "callback", fid=3.0)
    LivePlot(True).update(h, force=True)  # disabled outside a notebook: nothing happens, nothing raises
    assert LivePlot(True).enabled is False
