import pytest
import torch

from t2i_lib import profiles
from t2i_lib.profiles import get_profile, seed_everything, setup


def test_default_on_cpu_is_quick_fp32(monkeypatch):
    monkeypatch.delenv("T2I_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    p = get_profile()
    assert (p.name, p.device.type, p.precision, p.amp_dtype, p.use_grad_scaler) == ("quick", "cpu", "fp32", None, False)


def test_env_override_and_bad_name(monkeypatch):
    monkeypatch.setenv("T2I_PROFILE", "colab")
    assert get_profile(device="cpu").name == "colab"
    monkeypatch.setenv("T2I_PROFILE", "fast")
    with pytest.raises(ValueError, match="quick, colab"):
        get_profile()


def test_t4_gets_fp16_with_scaler_newer_gets_bf16(monkeypatch):
    dev = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert profiles.choose_precision(dev) == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert profiles.choose_precision(dev) == "bf16"
    assert profiles.choose_precision(torch.device("cpu")) == "fp32"


def test_cuda_requested_without_gpu_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="T4 GPU"):
        get_profile("colab", device="cuda")


def test_seeding_repeats_exactly():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_banner_names_profile_device_dataset(capsys, monkeypatch):
    monkeypatch.setenv("T2I_PROFILE", "quick")
    p = setup("Chapter 1", dataset={"quick": "Digits", "colab": "MNIST"}, expected_minutes={"quick": 1, "colab": 20})
    out = capsys.readouterr().out
    assert p.name == "quick" and "Digits" in out and "fp32" in out and "about 1 min" in out
