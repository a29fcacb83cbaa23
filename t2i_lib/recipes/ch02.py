"""Chapter 2: the VAE and the ELBO. Quick: Digits (1,258 training images, 28 px, dynamically binarised).
Colab: MNIST (60,000 images). The colab times below are estimates (no T4 was at hand): the MNIST VAE
is tiny for a GPU, so its runs are bound by Python-side data loading; the ResNet-50 VAE is the one
real GPU job of the chapter.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # The report's MNIST VAE (latent_dim=16, beta=1). quick: ~30 epochs of Digits.
    # colab: ~17 epochs of MNIST; estimated 2-3 min on a T4, well under 1 GB of GPU memory.
    "vae": dict(
        quick=TrainConfig(steps=600, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=8000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The posterior-collapse runs (beta = 8 with k = 32; with KL warm-up; with free bits), same budget each.
    # Collapse is slow to show: after 400 updates on Digits the unused dimensions' KL is already near 0 but
    # their means still wobble above the active-unit threshold; by 1,000-1,500 most have settled.
    # quick: ~20 s each on 2 CPU cores. colab: estimated ~1 min each on a T4 (not measured).
    "collapse": dict(
        quick=TrainConfig(steps=1000, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=4000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100, log_every=50),
    ),
    # The report's CIFAR-10 VAE with a ResNet-50 encoder (latent_dim=128, frozen ImageNet trunk).
    # quick: on Shapes 32 px with a random frozen trunk (see spatial_vae below for the measurements).
    # colab: ~13 epochs of CIFAR-10; estimated 10-15 min on a T4 in fp16. Memory, measured on the CPU by
    # benchmarks/colab_budget.py: 42 GFLOP per update, 67 MiB of activations saved for backward and 116 MiB
    # of weights, gradients and AdamW state (fp32), so well under 1 GB of tensors on the GPU (the frozen
    # trunk stores no activations for backward; an unfrozen one would need several times more).
    "resnet_vae": dict(
        quick=TrainConfig(steps=200, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20, log_every=20),
        colab=TrainConfig(steps=5000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=200,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The VAE set beside it: SpatialVAE, a 2 x 8 x 8 latent map (128 numbers, as the ResNet VAE's vector),
    # the same likelihood, beta and optimiser. quick (Shapes 32 px, 4,096 images; the ResNet trunk random and
    # frozen: no ImageNet weights offline): equal CPU time rather than equal updates, ~25-30 s each on 2
    # cores: the ResNet's 200 updates cost as much as these 1,000. Measured, seeds 0 and 1: test ELBO
    # +2,851 / +3,179 nats and PSNR 22.0 / 23.3 dB, against the ResNet VAE's -1,594 / -1,278 nats and
    # 16.1 / 16.3 dB. KL warm-up over the first 200 updates gave the spatial VAE 23.6 / 24.0 dB. Before its
    # input was centred, its KL collapsed to 0-5 nats (15 dB, the mean image) in most runs.
    # colab: the same 5,000 updates of 128 as the ResNet VAE on CIFAR-10; estimated 2-3 min on a T4
    # (benchmarks/colab_budget.py: 6 GFLOP per update), well under 1 GB.
    "spatial_vae": dict(
        quick=TrainConfig(steps=1000, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20, log_every=20),
        colab=TrainConfig(steps=5000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=200,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
