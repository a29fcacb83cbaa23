"""Chapter 2: the VAE and the ELBO. Quick: Digits (1,258 training images, 28 px, dynamically binarised).
Colab: MNIST (60,000 images). The colab times below are estimates (no T4 was at hand): the MNIST VAE
is tiny for a GPU, so its runs are bound by Python-side data loading; the ResNet-50 VAE is the one
real GPU job of the chapter.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # The report's MNIST VAE (latent_dim=16, beta=1). quick: ~30 epochs of Digits.
    # colab: ~17 epochs of MNIST; estimated 2-3 min on a T4, well under 1 GB of GPU memory.
    # (sweeps: NOTES.md, ch02/vae)
    "vae": dict(
        quick=TrainConfig(steps=600, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=8000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The posterior-collapse runs (beta = 8 with k = 32; with KL warm-up; with free bits), same budget each.
    # quick: ~20 s each on 2 CPU cores. colab: estimated ~1 min each on a T4 (not measured).
    # (sweeps: NOTES.md, ch02/collapse)
    "collapse": dict(
        quick=TrainConfig(steps=1000, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=4000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50),
    ),
    # The report's CIFAR-10 VAE with a ResNet-50 encoder (latent_dim=128, frozen ImageNet trunk).
    # quick: on Shapes 32 px with a random frozen trunk, the same CPU time as spatial_vae's 1,000 updates.
    # colab: ~13 epochs of CIFAR-10; estimated 10-15 min on a T4 in fp16; well under 1 GB of tensors on the
    # GPU (measured on the CPU by benchmarks/colab_budget.py). (sweeps: NOTES.md, ch02/resnet_vae)
    "resnet_vae": dict(
        quick=TrainConfig(steps=200, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20,
                          log_every=20),
        colab=TrainConfig(steps=5000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=200,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The VAE set beside it: SpatialVAE, a 2 x 8 x 8 latent map (128 numbers, as the ResNet VAE's vector),
    # the same likelihood, beta and optimiser. quick: Shapes 32 px (4,096 images), ~25-30 s on 2 cores.
    # colab: the same 5,000 updates of 128 as the ResNet VAE on CIFAR-10; estimated 2-3 min on a T4, well
    # under 1 GB. (sweeps: NOTES.md, ch02/spatial_vae)
    "spatial_vae": dict(
        quick=TrainConfig(steps=1000, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20,
                          log_every=20),
        colab=TrainConfig(steps=5000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=200,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
