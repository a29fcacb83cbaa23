"""Learning-rate schedules: closed-form values, including the source report's restart recipe."""

import math

import pytest

from t2i_lib.train.schedules import Constant, LinearWithRestarts, WarmupCosine, WarmupLinear, make_schedule


def report_schedule():
    # The report's text-to-image run: 10 warm-up steps to 0.003, linear decay, restarts at 0.0018
    # (step 10,000) and 0.0015 (step 25,000), every piece heading for 0 at step 50,000.
    return LinearWithRestarts(total_steps=50_000, warmup_steps=10, restarts=((10_000, 0.0018), (25_000, 0.0015)))


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),                                   # warm-up starts at 0 (Hugging Face convention)
    (5, 0.0015),                                # half-way through warm-up
    (10, 0.003),                                # peak at the end of warm-up
    (9_999, 0.003 * (50_000 - 9_999) / (50_000 - 10)),
    (10_000, 0.0018),                           # first restart
    (17_500, 0.0018 * 32_500 / 40_000),         # 7,500 of the 40,000 steps of this piece are gone
    (24_999, 0.0018 * (50_000 - 24_999) / 40_000),
    (25_000, 0.0015),                           # second restart
    (37_500, 0.00075),                          # half-way from the restart to the end
    (49_999, 0.0015 / 25_000),
    (50_000, 0.0),
    (60_000, 0.0),                              # past the end it stays at 0, never negative
])
def test_report_recipe_values(step, expected):
    assert report_schedule()(step, 0.003) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_report_recipe_shape():
    s = report_schedule()
    lrs = s.values(0.003, 50_001)
    # monotone non-increasing inside each piece, jumps exactly at the restarts
    for a, b in ((10, 10_000), (10_000, 25_000), (25_000, 50_001)):
        piece = lrs[a:b]
        assert all(x >= y for x, y in zip(piece, piece[1:]))
    # the first restart is a drop (0.0024 -> 0.0018), the second a rise (0.001125 -> 0.0015)
    assert lrs[9_999] - lrs[10_000] == pytest.approx(0.003 * 40_001 / 49_990 - 0.0018)
    assert lrs[25_000] - lrs[24_999] == pytest.approx(0.0015 - 0.0018 * 25_001 / 40_000)
    assert max(lrs) == pytest.approx(0.003)


def test_linear_and_cosine_closed_form():
    lin = WarmupLinear(total_steps=100, warmup_steps=10)
    assert lin(0, 1.0) == 0.0 and lin(4, 1.0) == pytest.approx(0.4)
    assert lin(10, 1.0) == pytest.approx(1.0)
    assert lin(55, 1.0) == pytest.approx(0.5)
    assert lin(100, 1.0) == 0.0 and lin(200, 1.0) == 0.0
    cos = WarmupCosine(total_steps=110, warmup_steps=10, final_frac=0.1)
    assert cos(10, 2.0) == pytest.approx(2.0)
    assert cos(60, 2.0) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))   # half-way: the cosine is at its midpoint
    assert cos(35, 2.0) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert cos(110, 2.0) == pytest.approx(0.2) and cos(500, 2.0) == pytest.approx(0.2)
    const = Constant(warmup_steps=4)
    assert [const(t, 1.0) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]


def test_make_schedule_names_and_errors():
    assert isinstance(make_schedule("linear", 100, 5), WarmupLinear)
    assert make_schedule("Cosine", 100).total_steps == 100
    s = report_schedule()
    assert make_schedule(s, 10) is s
    with pytest.raises(ValueError, match="constant, linear, cosine"):
        make_schedule("exponential", 100)
    with pytest.raises(ValueError, match="longer than the whole run"):
        make_schedule("linear", 10, warmup_steps=20)
    with pytest.raises(ValueError, match="strictly between"):
        LinearWithRestarts(total_steps=100, warmup_steps=10, restarts=((50, 0.1), (40, 0.1)))


def test_state_dict_is_plain():
    d = report_schedule().state_dict()
    assert d == {"kind": "LinearWithRestarts", "total_steps": 50_000, "warmup_steps": 10,
                 "restarts": [[10_000, 0.0018], [25_000, 0.0015]]}
