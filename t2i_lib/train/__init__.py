"""Training: the loop that knows nothing about the model it trains.

- ``trainer``: ``train()``, ``evaluate()``, ``TrainConfig``, the run's history and live plot (Chapter 1)
- ``schedules``: learning-rate schedules, warm-up then constant, linear or cosine (Chapter 1)
- ``distributed``: DistributedDataParallel under ``torchrun``, with no change to chapter code (Chapter 1)
"""

from t2i_lib.train.trainer import (CHECKPOINT_NAME, History, NonFiniteLossError, StopTraining, TrainConfig,
                                   TrainState, evaluate, to_device, train)

__all__ = ["CHECKPOINT_NAME", "History", "NonFiniteLossError", "StopTraining", "TrainConfig", "TrainState",
           "evaluate", "to_device", "train"]
