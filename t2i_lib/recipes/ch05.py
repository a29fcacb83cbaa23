"""Chapter 5: image tokens at DALL-E scale. Quick: Shapes at 32 px (8x8 tokens, K=64). Colab: CIFAR-10 at
32 px for the dVAE / VQ-VAE comparison, then OpenAI's pretrained dVAE on COCO (its encoding is not a
training run and has no recipe; the notebook states its time and disk budget). Colab times are
estimates for a T4 (none was at hand), not measurements.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # The small dVAE (DVAEConfig.small(): 64 hidden channels, D=32, K=64) with DALL-E's schedules scaled
    # to the run. quick: 800 updates of 32 on 2,048 Shapes images; 33 s on one CPU thread, measured with
    # other jobs on the machine. colab: the default size (128 channels, D=64, K=512) on CIFAR-10;
    # estimated 4-6 min on a T4, < 1 GB. (sweeps: NOTES.md, ch05/dvae)
    "dvae": dict(
        quick=TrainConfig(steps=800, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The Chapter 4 VQ-VAE of the same size (VQVAEConfig.small() with k-means init and dead-code restarts)
    # on the same data with the same budget, for the comparison. quick: ~20 s on one CPU thread.
    # colab: estimated 3-5 min on a T4, < 1 GB. (sweeps: NOTES.md, ch05/vqvae)
    "vqvae": dict(
        quick=TrainConfig(steps=800, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
