"""Chapter 1: autoencoders and latent spaces. Quick: Digits (1,258 training images, 28 px).
Colab: MNIST (60,000 images, 28 px). The whole chapter on a T4 is estimated at 5-8 minutes (not
measured: no T4 was at hand), most of it the first MNIST download and Python-side data loading; the
models are tiny for a GPU.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # PCA as a linear autoencoder (784 -> 10 -> 784, data mean subtracted). Linear models converge
    # slowly towards the exact PCA subspace; a cosine decay settles the last degrees.
    # quick: ~200 epochs of Digits, 3-5 s on 2 CPU cores; every principal angle ends below 0.5 deg.
    # colab: ~21 epochs of MNIST. Not run on MNIST here; the same numbers in a plain Adam loop on
    # 20,000 Fashion-MNIST images (also 28x28, also a gap at k=10) left every angle below 0.9 deg.
    "linear_ae": dict(
        quick=TrainConfig(steps=2000, batch_size=128, lr=1e-2, schedule="cosine", log_every=20),
        colab=TrainConfig(steps=5000, batch_size=256, lr=3e-3, schedule="cosine", log_every=50),
    ),
    # The report's conv autoencoder (Figure 1, without the VAE sampling), latent_dim=16.
    # quick: 500 updates of 64 (~25 epochs of Digits), 20-30 s on 2 CPU cores. In a sweep on Digits,
    # lr 5e-3 beat 2e-3 clearly at this budget (test MSE 0.0031 vs 0.0045 after 400 updates).
    # colab: 6000 updates of 128 (~13 epochs of MNIST); estimated 1-2 min on a T4 (not measured).
    "conv_ae": dict(
        quick=TrainConfig(steps=500, batch_size=64, lr=5e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=3e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The same network with latent_dim=2, for the latent scatter and the explorer. A 2-number code is
    # harder to fit: on Digits, 400 updates at lr 2e-3 left it worse than PCA with 2 components (test
    # MSE 0.032-0.034 vs 0.032); 600 at lr 5e-3 reach ~0.024. quick: 20-30 s on 2 CPU cores.
    # colab: estimated 1-2 min on a T4 (not measured).
    "conv_ae_2d": dict(
        quick=TrainConfig(steps=600, batch_size=64, lr=5e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=8000, batch_size=128, lr=3e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
