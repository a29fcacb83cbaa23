"""Chapter 1: autoencoders and latent spaces. Quick: Digits (1,258 training images, 28 px).
Colab: MNIST (60,000 images, 28 px). The whole chapter on a T4 is estimated at 5-8 minutes (not
measured: no T4 was at hand), most of it the first MNIST download and Python-side data loading; the
models are tiny for a GPU.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # PCA as a linear autoencoder (784 -> 10 -> 784, data mean subtracted).
    # quick: ~200 epochs of Digits, 3-5 s on 2 CPU cores. colab: ~21 epochs of MNIST (not run on MNIST).
    # (sweeps: NOTES.md, ch01/linear_ae)
    "linear_ae": dict(
        quick=TrainConfig(steps=2000, batch_size=128, lr=1e-2, schedule="cosine", log_every=20),
        colab=TrainConfig(steps=5000, batch_size=256, lr=3e-3, schedule="cosine", log_every=50),
    ),
    # The report's conv autoencoder (Figure 1, without the VAE sampling), latent_dim=16.
    # quick: 500 updates of 64 (~25 epochs of Digits), 20-30 s on 2 CPU cores.
    # colab: 6000 updates of 128 (~13 epochs of MNIST); estimated 1-2 min on a T4 (not measured).
    # (sweeps: NOTES.md, ch01/conv_ae)
    "conv_ae": dict(
        quick=TrainConfig(steps=500, batch_size=64, lr=5e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=3e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The same network with latent_dim=2, for the latent scatter and the explorer.
    # quick: 20-30 s on 2 CPU cores. colab: estimated 1-2 min on a T4 (not measured).
    # (sweeps: NOTES.md, ch01/conv_ae_2d)
    "conv_ae_2d": dict(
        quick=TrainConfig(steps=600, batch_size=64, lr=5e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=8000, batch_size=128, lr=3e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
