"""Training: the loop that knows nothing about the model it trains.

- ``trainer``: ``train()``, the ``Trainer`` and its loop, ``RunState`` (what a checkpoint holds), ``evaluate()`` (Chapter 1)
- ``config``: ``TrainConfig``, every setting of a run that is not the model or the data, and its checks (Chapter 1)
- ``update``: one optimizer update's pieces: the model contract, AdamW, clipping, the NaN guard (Chapter 1)
- ``order``: the data order, replayable from (seed, epoch), batches to the device, forked random streams (Chapter 1)
- ``history``: the run's ``History`` of logged values and the live plot (Chapter 1)
- ``callbacks``: ``TrainState``, ``StopTraining``, the hooks, and ``Every`` to sample or score every n steps (Chapter 7)
- ``ema``: the exponential moving average of the weights, saved and resumed with the run (Chapter 7)
- ``schedules``: learning-rate schedules, warm-up then constant, linear or cosine (Chapter 1)
- ``distributed``: DistributedDataParallel under ``torchrun``, with no change to chapter code (Chapter 1)
"""

from t2i_lib.train.callbacks import Every, StopTraining, TrainState
from t2i_lib.train.config import TrainConfig
from t2i_lib.train.ema import EMA
from t2i_lib.train.history import History
from t2i_lib.train.order import to_device
from t2i_lib.train.trainer import CHECKPOINT_NAME, RunState, Trainer, evaluate, train
from t2i_lib.train.update import NonFiniteLossError

__all__ = ["CHECKPOINT_NAME", "EMA", "Every", "History", "NonFiniteLossError", "RunState", "StopTraining",
           "TrainConfig", "TrainState", "Trainer", "evaluate", "to_device", "train"]
