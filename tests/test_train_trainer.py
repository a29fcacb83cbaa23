"""The training loop: learning, accumulation, clipping, precision, exact resume, the NaN guard, plots."""

import math
import types

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from t2i_lib.train import history as history_mod
from t2i_lib.profiles import Profile, get_profile
from t2i_lib.storage.checkpoint import CheckpointError, load_checkpoint
from t2i_lib.train.schedules import LinearWithRestarts
from t2i_lib.train.trainer import (NonFiniteLossError, StopTraining, TrainConfig, evaluate, to_device,
                                   train)
from t2i_lib.train.update import total_norm

CPU = get_profile("quick", device="cpu")


pytestmark = pytest.mark.usefixtures("one_thread")
W_TRUE = torch.tensor([1.0, -2.0, 0.5, 3.0])


def regression_data(n=44, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ W_TRUE + 0.01 * torch.randn(n, generator=g)
    return TensorDataset(x, y)


class Regressor(nn.Module):
    """A small MLP with dropout (so exact resume needs the RNG state) and a noisy metric."""

    def __init__(self, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1))

    def loss(self, batch):
        x, y = batch
        pred = self.net(x).squeeze(-1)  # (B,)
        mse = ((pred - y) ** 2).mean()
        return mse, {"mae": (pred - y).abs().mean().detach(), "noise": torch.randn(()).abs()}


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs (max abs diff {(a[k] - b[k]).abs().max().item():.3g})"


def fresh(seed):
    torch.manual_seed(seed)
    return Regressor()


def quiet(**kw):
    base = dict(steps=12, batch_size=4, lr=1e-2, log_every=3)
    base.update(kw)
    return TrainConfig(**base)


# ---- learning --------------------------------------------------------------------------------------

def test_loss_falls_and_history_records_everything(tmp_path):
    torch.manual_seed(0)
    model = Regressor(dropout=0.0)
    data, held_out = regression_data(256, seed=0), regression_data(64, seed=1)
    first = evaluate(model, held_out, batch_size=32, profile=CPU)["loss"]
    cfg = TrainConfig(steps=300, batch_size=32, lr=1e-2, schedule="cosine", warmup_steps=20, eval_every=100,
                      log_every=25)
    hist = train(model, data, cfg, profile=CPU, eval_dataset=held_out, progress=False)
    assert hist.last("loss", "eval") < 0.05 * first     # it learned the linear map
    steps, losses = hist.series("loss", "train")
    assert steps == list(range(25, 301, 25)) and losses[-1] < losses[0]
    assert hist.series("loss", "eval")[0] == [100, 200, 300]
    rec = hist.records[0]
    assert {"step", "split", "loss", "lr", "mae", "noise", "grad_norm"} <= rec.keys()
    assert all(isinstance(v, float) for k, v in rec.items() if k not in ("step", "split"))
    with pytest.raises(KeyError, match="keys logged"):
        hist.last("accuracy")
    ax = hist.plot(["loss", "mae"], logy=True)
    assert len(ax.lines) == 4 and ax.get_yscale() == "log"


def test_grad_accum_matches_one_big_batch():
    # 2 micro-batches of 4 average to exactly the gradient of one batch of 8 (same examples, same order).
    runs = []
    for bs, acc in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = Regressor(dropout=0.0)
        train(model, regression_data(48), quiet(batch_size=bs, grad_accum=acc, steps=10), profile=CPU,
              progress=False)
        runs.append(weights(model))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=1e-5, atol=1e-6)


def test_clipping_bounds_the_norm_and_reports_the_raw_one():
    torch.manual_seed(0)
    model = Regressor(dropout=0.0)
    loss, _ = model.loss(regression_data(16)[:])
    loss.backward()
    params = list(model.parameters())
    raw = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params))
    assert raw > 0.5
    returned = total_norm(params, 0.5)
    assert float(returned) == pytest.approx(raw, rel=1e-5)
    assert math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params)) == pytest.approx(0.5, rel=1e-4)

    hist = train(fresh(0), regression_data(), quiet(clip_grad_norm=1e-3, log_every=1, steps=3), profile=CPU,
                 progress=False)
    assert min(hist.series("grad_norm")[1]) > 1e-3  # the logged norm is measured before clipping


def test_fp16_with_loss_scaler_unscales_before_clipping(tmp_path):
    # CPU autocast supports fp16, which lets the GradScaler path run here; a T4 takes the same path.
    fp16 = Profile(name="quick", device=torch.device("cpu"), precision="fp16")
    assert fp16.use_grad_scaler
    norms = {}
    for name, prof in (("fp32", CPU), ("fp16", fp16)):
        torch.manual_seed(0)
        hist = train(Regressor(dropout=0.0), regression_data(), quiet(steps=6, log_every=1, clip_grad_norm=10.0,
                     ckpt_dir=tmp_path / name), profile=prof, progress=False)
        norms[name] = hist.series("grad_norm")[1][0]
    # unscaled: the same size as in fp32 (not 65,536 times larger)
    assert norms["fp16"] == pytest.approx(norms["fp32"], rel=0.05)
    scaler = load_checkpoint(tmp_path / "fp16" / "last.pt")["scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler


def test_bf16_autocast_trains():
    bf16 = Profile(name="quick", device=torch.device("cpu"), precision="bf16")
    torch.manual_seed(0)
    hist = train(Regressor(dropout=0.0), regression_data(128), quiet(steps=120, batch_size=16, log_every=20),
                 profile=bf16, progress=False)
    assert hist.last() < 0.3 * hist.series()[1][0]


# ---- exact resume ----------------------------------------------------------------------------------

def resume_cfg(ckpt_dir, **kw):
    # 44 examples / batch 4 = 11 micro-batches per epoch; with grad_accum=2 updates straddle epochs.
    base = dict(steps=14, batch_size=4, grad_accum=2, lr=5e-3, weight_decay=0.01, clip_grad_norm=1.0,
                schedule=LinearWithRestarts(total_steps=14, warmup_steps=2, restarts=((8, 3e-3),)),
                log_every=3, ckpt_every=5, ckpt_dir=str(ckpt_dir))
    base.update(kw)
    return TrainConfig(**base)


def test_resume_after_a_crash_is_bitwise_identical(tmp_path):
    reference = fresh(0)
    hist_ref = train(reference, regression_data(), resume_cfg(tmp_path / "ref"), profile=CPU,
                     eval_dataset=regression_data(12, seed=3), progress=False)

    def crash(state):
        if state.step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(fresh(0), regression_data(), resume_cfg(tmp_path / "run"), profile=CPU, callbacks=[crash],
              eval_dataset=regression_data(12, seed=3), progress=False)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["step"] == 10 and saved["data"] == {**saved["data"], "epoch": 1, "index": 9}

    torch.manual_seed(123)  # the restarted process is in a different random state: the checkpoint fixes that
    resumed = fresh(7)      # and its model starts from different weights
    hist = train(resumed, regression_data(), resume_cfg(tmp_path / "run"), profile=CPU,
                 eval_dataset=regression_data(12, seed=3), progress=False)
    assert_bitwise_equal(weights(resumed), weights(reference))
    assert hist.records == hist_ref.records


def test_resume_from_a_shorter_run_is_bitwise_identical(tmp_path):
    cfg = dict(schedule="constant", grad_accum=3, ckpt_every=0)
    reference = fresh(0)
    train(reference, regression_data(), resume_cfg(tmp_path / "ref", **cfg), profile=CPU, progress=False)
    first = fresh(0)
    train(first, regression_data(), resume_cfg(tmp_path / "run", steps=5, **cfg), profile=CPU, progress=False)
    resumed = fresh(1)
    train(resumed, regression_data(), resume_cfg(tmp_path / "run", **cfg), profile=CPU, progress=False)
    assert_bitwise_equal(weights(resumed), weights(reference))
    # and the dropout really mattered: a run that is not restored to the same RNG state ends elsewhere
    torch.manual_seed(0)
    other = Regressor()
    torch.manual_seed(99)
    train(other, regression_data(), resume_cfg(tmp_path / "other", **cfg), profile=CPU, progress=False)
    assert not torch.equal(weights(other)["net.0.weight"], weights(reference)["net.0.weight"])


def test_finished_run_just_loads_its_weights(tmp_path, capsys):
    done = fresh(0)
    hist = train(done, regression_data(), resume_cfg(tmp_path), profile=CPU, progress=False)
    again = fresh(5)
    hist2 = train(again, regression_data(), resume_cfg(tmp_path), profile=CPU)
    assert "nothing left to train" in capsys.readouterr().out
    assert_bitwise_equal(weights(again), weights(done))
    assert hist2.records == hist.records


def test_corrupt_checkpoint_stops_instead_of_silently_restarting(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        train(fresh(0), regression_data(), resume_cfg(tmp_path), profile=CPU, progress=False)


def test_evaluation_and_callbacks_do_not_change_the_training_run(tmp_path):
    plain = fresh(0)
    train(plain, regression_data(), quiet(), profile=CPU, progress=False)
    busy = fresh(0)
    hist = train(busy, regression_data(), quiet(eval_every=2), profile=CPU, eval_dataset=regression_data(8, 4),
                 callbacks=[lambda s: torch.rand(100)], progress=False)
    assert_bitwise_equal(weights(busy), weights(plain))
    # evaluation noise is seeded: the same model evaluates to the same numbers
    a = evaluate(busy, regression_data(8, 4), batch_size=4, profile=CPU)
    b = evaluate(busy, regression_data(8, 4), batch_size=4, profile=CPU)
    assert a == b and len(hist.series("loss", "eval")[0]) == 6


# ---- failures --------------------------------------------------------------------------------------

class Explodes(Regressor):
    """Its loss turns NaN from the 8th optimizer step on (micro-batch 15 with grad_accum=2)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def loss(self, batch):
        loss, metrics = super().loss(batch)
        self.calls += 1
        if self.calls >= 15:
            loss = loss * float("nan")
            metrics["mae"] = torch.tensor(float("inf"))
        return loss, metrics


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = Explodes()
    snap = {}

    def remember(state):
        if state.step == 5:
            snap["bytes"] = (tmp_path / "last.pt").read_bytes()
        snap["weights"] = weights(state.model)

    with pytest.raises(NonFiniteLossError) as info:
        train(model, regression_data(), resume_cfg(tmp_path, ckpt_every=5), profile=CPU, callbacks=[remember],
              progress=False)
    msg = str(info.value)
    assert "step 8" in msg and "the loss is nan" in msg and "mae=inf" in msg and str(tmp_path / "last.pt") in msg
    assert (tmp_path / "last.pt").read_bytes() == snap["bytes"]      # untouched: still the step-5 file
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 5
    assert_bitwise_equal(weights(model), snap["weights"])            # the NaN step changed nothing


def test_infinite_gradient_with_finite_loss_stops():
    class SqrtAtZero(Regressor):
        def loss(self, batch):
            loss, m = super().loss(batch)
            return loss + (self.net[0].weight * 0).sqrt().sum(), m  # d sqrt(x)/dx at 0 is infinite

    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError, match="gradient norm is nan"):
        train(SqrtAtZero(), regression_data(), quiet(), profile=CPU, progress=False)


def test_fp16_scaler_gives_up_after_twenty_skipped_steps():
    class SqrtAtZero(Regressor):
        def loss(self, batch):
            loss, m = super().loss(batch)
            return loss + (self.net[0].weight * 0).sqrt().sum(), m

    fp16 = Profile(name="quick", device=torch.device("cpu"), precision="fp16")
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError, match="20 steps in a row"):
        train(SqrtAtZero(), regression_data(), quiet(steps=30), profile=fp16, progress=False)


def test_stale_gradients_from_before_training_are_cleared():
    clean = fresh(0)
    torch.manual_seed(5)
    train(clean, regression_data(), quiet(), profile=CPU, progress=False)
    dirty = fresh(0)
    dirty.loss(regression_data()[:])[0].mul(1000).backward()  # leaves .grad on every parameter
    torch.manual_seed(5)
    train(dirty, regression_data(), quiet(), profile=CPU, progress=False)
    assert_bitwise_equal(weights(dirty), weights(clean))


def test_helpful_errors_for_bad_inputs():
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        train(fresh(0), regression_data(10), quiet(batch_size=64), profile=CPU, progress=False)

    class NoLoss(nn.Linear):
        pass
    with pytest.raises(TypeError, match="no loss\\(batch\\) method"):
        train(NoLoss(2, 2), regression_data(), quiet(), profile=CPU, progress=False)

    class VectorLoss(Regressor):
        def loss(self, batch):
            x, y = batch
            return (self.net(x).squeeze(-1) - y) ** 2, {}
    with pytest.raises(TypeError, match=r"scalar loss tensor; got \(4,\)"):
        train(VectorLoss(), regression_data(), quiet(), profile=CPU, progress=False)
    with pytest.raises(ValueError, match="grad_accum must be >= 1"):
        train(fresh(0), regression_data(), quiet(grad_accum=0), profile=CPU, progress=False)


# ---- callbacks, batches, plots ---------------------------------------------------------------------

def test_stop_training_ends_cleanly_with_a_checkpoint(tmp_path):
    def stop(state):
        if state.step == 4:
            raise StopTraining("good enough")

    hist = train(fresh(0), regression_data(), resume_cfg(tmp_path, log_every=3), profile=CPU, callbacks=[stop],
                 progress=False)
    assert hist.series()[0] == [3, 4]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4


class Captioned(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {"image": torch.full((1, 2, 2), float(i)), "caption": f"shape number {i}"}


class CaptionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def loss(self, batch):
        assert isinstance(batch["caption"], list) and all(isinstance(c, str) for c in batch["caption"])
        assert batch["image"].shape == (4, 1, 2, 2)
        target = batch["image"].mean()
        return (self.w - target) ** 2, {}


def test_dict_batches_with_strings_and_to_device():
    hist = train(CaptionModel(), Captioned(), quiet(lr=0.5, steps=40, log_every=40), profile=CPU, progress=False)
    assert hist.last() < 30  # E[(w - mean)^2] after learning w ~ 7.5: the spread of batch means only
    nt = types.SimpleNamespace
    batch = to_device({"x": [torch.ones(2), ("a", torch.zeros(1))], "s": "text", "n": nt(a=1)}, torch.device("cpu"))
    assert batch["s"] == "text" and isinstance(batch["x"][1], tuple) and batch["x"][1][0] == "a"


def test_live_plot_only_in_a_notebook(monkeypatch):
    import IPython.display

    shown = []

    class Handle:
        def __init__(self):
            self.updates = 0

        def update(self, obj):
            self.updates += 1

    def fake_display(obj, display_id=None):
        shown.append((obj, display_id))
        handle = Handle()
        shown.append(handle)
        return handle

    monkeypatch.setattr(IPython.display, "display", fake_display)
    train(fresh(0), regression_data(), quiet(), profile=CPU, live_plot=True, progress=False)
    assert shown == []  # not in a notebook: no plot at all

    monkeypatch.setattr(history_mod, "in_notebook", lambda: True)
    train(fresh(0), regression_data(), quiet(eval_every=4), profile=CPU, live_plot=True,
          eval_dataset=regression_data(8, 5), progress=False)
    image, display_id = shown[0]
    assert display_id is True and image.data[:4] == b"\x89PNG"
    assert shown[1].updates >= 3  # redrawn in place (evals are always drawn), not appended


def test_a_format_1_checkpoint_still_resumes_exactly(tmp_path, capsys):
    from t2i_lib.storage.checkpoint import save_checkpoint

    cfg = dict(schedule="constant", ckpt_every=0)
    reference = fresh(0)
    train(reference, regression_data(), resume_cfg(tmp_path / "ref", **cfg), profile=CPU, progress=False)
    train(fresh(0), regression_data(), resume_cfg(tmp_path / "run", steps=5, **cfg), profile=CPU, progress=False)
    old = load_checkpoint(tmp_path / "run" / "last.pt")
    assert old["format"] == 2 and old["ema"] is None and old["skipped_in_a_row"] == 0
    for key in ("ema", "skipped_in_a_row"):  # what format 1 did not have
        del old[key]
    save_checkpoint(tmp_path / "run" / "last.pt", {**old, "format": 1})
    resumed = fresh(1)
    hist = train(resumed, regression_data(), resume_cfg(tmp_path / "run", ema_decay=0.9, **cfg), profile=CPU)
    assert_bitwise_equal(weights(resumed), weights(reference))
    assert "has no EMA of the weights; the EMA starts from the weights at step 5" in capsys.readouterr().out
    assert hist.ema.updates == 9
