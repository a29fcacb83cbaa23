"""TrainConfig: its checks name the setting, and it turns into plain values for a checkpoint."""

import numpy as np
import pytest

from t2i_lib.train.config import TrainConfig, check_config, config_dict
from t2i_lib.train.schedules import LinearWithRestarts


@pytest.mark.parametrize("bad, message", [
    (dict(steps=0), "steps must be a positive int"),
    (dict(batch_size=2.5), "batch_size must be a positive int"),
    (dict(grad_accum=0), "grad_accum must be >= 1"),
    (dict(lr=-1.0), "lr must be >= 0"),
    (dict(log_every=0), "log_every must be >= 1"),
    (dict(eval_every=-1), "eval_every and ckpt_every"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm must be > 0"),
    (dict(eval_batches=0), "eval_batches must be >= 1"),
    (dict(ema_decay=1.0), "ema_decay must be in"),
])
def test_bad_settings_are_named(bad, message):
    with pytest.raises(ValueError, match=f"TrainConfig: {message}"):
        check_config(TrainConfig(**{**dict(steps=10, batch_size=4, lr=1e-3), **bad}))


def test_config_dict_is_plain():
    cfg = TrainConfig(steps=np.int64(10), batch_size=4, lr=np.float32(0.5), ckpt_dir=None, ema_decay=0.99,
                      schedule=LinearWithRestarts(total_steps=10, warmup_steps=2, restarts=((5, 1e-3),)))
    check_config(cfg)
    d = config_dict(cfg)
    assert type(d["steps"]) is int and type(d["lr"]) is float and d["betas"] == [0.9, 0.999]
    assert d["ema_decay"] == 0.99 and isinstance(d["schedule"], dict)
    assert config_dict(TrainConfig(steps=1, batch_size=1, lr=1.0))["schedule"] == "constant"
