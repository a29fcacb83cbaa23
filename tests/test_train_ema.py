"""The EMA of the weights: the update rule, swapping it in, and exact resume."""

import math

import pytest
import torch
from torch import nn

from t2i_lib.profiles import Profile
from t2i_lib.storage.checkpoint import load_checkpoint
from t2i_lib.train.ema import EMA
from t2i_lib.train.trainer import train

from test_train_trainer import CPU, Regressor, assert_bitwise_equal, fresh, quiet, regression_data, resume_cfg, weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ema_follows_the_hand_computed_average():
    model = fresh(0)
    start = weights(model)
    after = []  # the weights after each update (a callback sees them after the optimizer step)
    decay = 0.6
    hist = train(model, regression_data(), quiet(steps=4, ema_decay=decay), profile=CPU,
                 callbacks=[lambda s: after.append(weights(s.model))], progress=False)
    expected = dict(start)
    for w in after:
        expected = {k: decay * expected[k] + (1 - decay) * w[k] for k in expected}
    ema = hist.ema
    assert isinstance(ema, EMA) and ema.updates == 4 and ema.decay == decay
    assert ema.shadow.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(ema.shadow[k], expected[k], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(ema.shadow["net.0.weight"], after[-1]["net.0.weight"])  # it lags the weights


def test_ema_is_off_by_default_and_checks_its_decay():
    hist = train(fresh(0), regression_data(), quiet(steps=2), profile=CPU, progress=False)
    assert hist.ema is None
    with pytest.raises(ValueError, match="ema_decay must be in"):
        train(fresh(0), regression_data(), quiet(ema_decay=1.0), profile=CPU, progress=False)
    with pytest.raises(ValueError, match="decay must be in"):
        EMA(fresh(0), -0.1)


def test_swapped_in_and_copy_of_leave_the_model_its_own_weights():
    model = fresh(0)
    hist = train(model, regression_data(), quiet(steps=5, ema_decay=0.8), profile=CPU, progress=False)
    own = weights(model)
    with hist.ema.swapped_in(model) as m:
        assert m is model
        for k, v in hist.ema.shadow.items():
            assert torch.equal(model.state_dict()[k], v)
    assert_bitwise_equal(weights(model), own)
    with pytest.raises(RuntimeError, match="inside"):
        with hist.ema.swapped_in(model):
            raise RuntimeError("inside")
    assert_bitwise_equal(weights(model), own)  # back even after an error
    copy = hist.ema.copy_of(model)
    assert copy is not model and torch.equal(copy.net[0].weight, hist.ema.shadow["net.0.weight"])
    assert_bitwise_equal(weights(model), own)


def test_ema_resumes_bitwise_after_a_crash(tmp_path):
    reference = fresh(0)
    hist_ref = train(reference, regression_data(), resume_cfg(tmp_path / "ref", ema_decay=0.9), profile=CPU,
                     progress=False)

    def crash(state):
        if state.step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(fresh(0), regression_data(), resume_cfg(tmp_path / "run", ema_decay=0.9), profile=CPU,
              callbacks=[crash], progress=False)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 10 and saved["ema"]["updates"] == 10 and saved["ema"]["decay"] == 0.9
    assert saved["ema"]["shadow"].keys() == weights(reference).keys()

    torch.manual_seed(123)
    resumed = fresh(7)
    hist = train(resumed, regression_data(), resume_cfg(tmp_path / "run", ema_decay=0.9), profile=CPU,
                 progress=False)
    assert_bitwise_equal(weights(resumed), weights(reference))
    assert_bitwise_equal(hist.ema.shadow, hist_ref.ema.shadow)
    assert hist.ema.updates == hist_ref.ema.updates == 14 and hist.records == hist_ref.records

    # a finished run hands back its EMA too
    again = train(fresh(3), regression_data(), resume_cfg(tmp_path / "run", ema_decay=0.9), profile=CPU,
                  progress=False)
    assert_bitwise_equal(again.ema.shadow, hist_ref.ema.shadow)


def test_ema_does_not_change_the_training_run():
    plain = fresh(0)
    train(plain, regression_data(), quiet(), profile=CPU, progress=False)
    averaged = fresh(0)
    train(averaged, regression_data(), quiet(ema_decay=0.99), profile=CPU, progress=False)
    assert_bitwise_equal(weights(averaged), weights(plain))


def test_a_step_the_fp16_scaler_skips_does_not_move_the_ema():
    class InfOnce(Regressor):
        """Infinite gradients on the 3rd update only (sqrt at 0), which the fp16 scaler skips."""

        def __init__(self):
            super().__init__(dropout=0.0)
            self.calls = 0

        def loss(self, batch):
            loss, m = super().loss(batch)
            self.calls += 1
            if self.calls == 3:
                loss = loss + (self.net[0].weight * 0).sqrt().sum()
            return loss, m

    fp16 = Profile(name="quick", device=torch.device("cpu"), precision="fp16")
    torch.manual_seed(0)
    model = InfOnce()
    seen = [(0, {k: v.clone() for k, v in EMA(model, 0.5).shadow.items()}, 0.0)]  # the EMA before any step
    hist = train(model, regression_data(), quiet(steps=12, ema_decay=0.5), profile=fp16,
                 callbacks=[lambda s: seen.append((s.ema.updates, {k: v.clone() for k, v in s.ema.shadow.items()},
                                                   s.grad_norm))], progress=False)
    finite = [math.isfinite(g) for _, _, g in seen[1:]]
    assert not finite[2] and sum(finite) >= 6  # step 3 was skipped (and the scaler may skip a few early on)
    assert [u for u, _, _ in seen[1:]] == [sum(finite[:i + 1]) for i in range(12)] and hist.ema.updates == sum(finite)
    for (_, before, _), (_, after, g) in zip(seen, seen[1:]):
        if math.isfinite(g):
            assert not torch.equal(after["net.0.weight"], before["net.0.weight"])
        else:
            assert_bitwise_equal(after, before)


def test_ema_averages_float_buffers_and_leaves_integer_ones():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = EMA(model, 0.5)
    assert "1.running_mean" in ema.shadow and "1.num_batches_tracked" not in ema.shadow
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].running_mean.fill_(4.0)
    before = ema.shadow["0.weight"].clone()
    ema.update(model)
    torch.testing.assert_close(ema.shadow["0.weight"], 0.5 * before + 0.5 * model[0].weight.detach())
    assert torch.equal(ema.shadow["1.running_mean"], torch.full((3,), 2.0))
    state = ema.state_dict()
    other = EMA(model, 0.1)
    other.load_state_dict(state)
    assert other.decay == 0.5 and other.updates == 1 and torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])
    with pytest.raises(KeyError, match="does not fit"):
        EMA(nn.Linear(3, 3), 0.5).load_state_dict(state)
