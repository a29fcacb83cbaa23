"""Callbacks: Every(n, fn) runs at the right steps, records into the History, and survives resume."""

import pytest
import torch

from t2i_lib.storage.checkpoint import load_checkpoint
from t2i_lib.train.callbacks import Every, StopTraining, call_hook
from t2i_lib.train.trainer import train

from test_train_trainer import CPU, assert_bitwise_equal, fresh, quiet, regression_data, resume_cfg, weights

pytestmark = pytest.mark.usefixtures("one_thread")


class Scorer:
    """fn(model, state) for Every: remembers the steps it ran at and how the model looked; returns metrics."""

    def __init__(self):
        self.steps, self.modes, self.grad = [], [], []

    def __call__(self, model, state):
        self.steps.append(state.step)
        self.modes.append(model.training)
        self.grad.append(torch.is_grad_enabled())
        torch.rand(50)  # sampling draws random numbers: that must not change the training run
        return {"score": 0.5 * state.step, "width": torch.tensor(3.0)}


def test_every_runs_at_multiples_of_n_and_records_what_it_returns():
    fn = Scorer()
    model = fresh(0)
    hist = train(model, regression_data(), quiet(steps=12), profile=CPU, callbacks=[Every(3, fn)], progress=False)
    assert fn.steps == [3, 6, 9, 12]
    assert fn.modes == [False] * 4 and fn.grad == [False] * 4  # eval mode, no gradients ...
    assert model.training  # ... and training mode back afterwards
    assert hist.series("score", "callback") == ([3, 6, 9, 12], [1.5, 3.0, 4.5, 6.0])
    assert hist.last("width", "callback") == 3.0 and isinstance(hist.last("width", "callback"), float)
    assert hist.series()[0] == [3, 6, 9, 12]  # the train records are still there, unchanged


def test_every_does_not_change_the_training_run():
    plain = fresh(0)
    train(plain, regression_data(), quiet(), profile=CPU, progress=False)
    busy = fresh(0)
    train(busy, regression_data(), quiet(), profile=CPU, callbacks=[Every(2, Scorer()), Every(5, lambda m, s: None)],
          progress=False)
    assert_bitwise_equal(weights(busy), weights(plain))


def test_every_survives_a_crash_and_resume_without_running_a_step_twice(tmp_path):
    ref_fn = Scorer()
    reference = fresh(0)
    hist_ref = train(reference, regression_data(), resume_cfg(tmp_path / "ref"), profile=CPU,
                     callbacks=[Every(2, ref_fn)], progress=False)
    assert ref_fn.steps == [2, 4, 6, 8, 10, 12, 14]

    def crash(state):
        if state.step == 10:
            raise RuntimeError("simulated crash")

    first = Scorer()
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(fresh(0), regression_data(), resume_cfg(tmp_path / "run"), profile=CPU,
              callbacks=[Every(2, first), crash], progress=False)
    assert first.steps == [2, 4, 6, 8, 10]
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 10  # and the step-10 measurement is in it: it ran before the save
    assert [r["step"] for r in saved["history"] if r["split"] == "callback"] == [2, 4, 6, 8, 10]

    second = Scorer()
    torch.manual_seed(123)
    resumed = fresh(7)
    hist = train(resumed, regression_data(), resume_cfg(tmp_path / "run"), profile=CPU,
                 callbacks=[Every(2, second)], progress=False)
    assert second.steps == [12, 14]  # not 10 again
    assert hist.records == hist_ref.records
    assert_bitwise_equal(weights(resumed), weights(reference))


def test_a_crash_between_checkpoints_measures_the_redone_steps_once_in_the_history(tmp_path):
    def crash(state):
        if state.step == 9:
            raise RuntimeError("simulated crash")

    hist_ref = train(fresh(0), regression_data(), resume_cfg(tmp_path / "ref"), profile=CPU,
                     callbacks=[Every(3, Scorer())], progress=False)
    with pytest.raises(RuntimeError):
        train(fresh(0), regression_data(), resume_cfg(tmp_path / "run"), profile=CPU,
              callbacks=[Every(3, Scorer()), crash], progress=False)
    again = Scorer()
    hist = train(fresh(1), regression_data(), resume_cfg(tmp_path / "run"), profile=CPU,
                 callbacks=[Every(3, again)], progress=False)
    assert again.steps == [6, 9, 12]  # the checkpoint was at step 5: 6 and 9 are redone, so measured again
    steps = [r["step"] for r in hist.records if r["split"] == "callback"]
    assert steps == [3, 6, 9, 12] and hist.records == hist_ref.records  # ... but recorded once each


def test_every_with_ema_sees_the_averaged_weights():
    seen = {}

    def look(model, state):
        seen[state.step] = all(torch.equal(model.state_dict()[k], v) for k, v in state.ema.shadow.items())

    plain = fresh(0)
    train(plain, regression_data(), quiet(steps=6, ema_decay=0.9), profile=CPU, progress=False)
    model = fresh(0)
    train(model, regression_data(), quiet(steps=6, ema_decay=0.9), profile=CPU, callbacks=[Every(2, look, ema=True)],
          progress=False)
    assert seen == {2: True, 4: True, 6: True}
    assert_bitwise_equal(weights(model), weights(plain))  # the model's own weights came back each time
    with pytest.raises(ValueError, match="ema_decay"):
        train(fresh(0), regression_data(), quiet(steps=2), profile=CPU, callbacks=[Every(2, look, ema=True)],
              progress=False)


def test_stop_training_from_every_saves_its_record(tmp_path):
    def enough(model, state):
        if state.step == 4:
            raise StopTraining("score reached")
        return {"score": float(state.step)}

    hist = train(fresh(0), regression_data(), resume_cfg(tmp_path, log_every=3), profile=CPU,
                 callbacks=[Every(2, enough)], progress=False)
    assert hist.series()[0] == [3, 4] and hist.series("score", "callback") == ([2], [2.0])
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


def test_hooks_dispatch_and_every_checks_n():
    calls = []

    class Both:
        def on_step(self, state):
            calls.append(("on_step", state))

        def __call__(self, state):
            calls.append(("call", state))

    call_hook(Both(), "on_step", 1)
    call_hook(lambda s: calls.append(("fn", s)), "on_step", 2)
    call_hook(lambda s: calls.append(("never", s)), "on_end", 3)
    assert calls == [("on_step", 1), ("fn", 2)]
    with pytest.raises(ValueError, match="positive int"):
        Every(0, lambda m, s: None)

    def score(model, state):
        return None
    assert repr(Every(5, score, split="x", ema=True)) == "Every(5, score, split='x', ema=True)"
