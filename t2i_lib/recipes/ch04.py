"""Chapter 4: VQ-VAE and the codebook. Quick: Shapes at 32 px (8x8 tokens). Colab: Shapes for the collapse
experiment and the prior, CIFAR-10 for the Sonnet VQ-VAE, MNIST / CIFAR-10 / COCO for the report's
ResNet-101 VQ-VAE. Every colab time below is an estimate for a T4 (none was at hand), not a measurement.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # The same small VQ-VAE (32 hidden channels, D=16, K=64) with and without the codebook fixes.
    # quick: ~9 s per run on one thread of a shared 2-core CPU (both runs: 18 s).
    # colab: estimated 1-2 min each on a T4, < 1 GB. (sweeps: NOTES.md, ch04/collapse)
    "collapse": dict(
        quick=TrainConfig(steps=300, batch_size=32, lr=2e-3, log_every=10),
        colab=TrainConfig(steps=3000, batch_size=64, lr=2e-3, log_every=25),
    ),
    # The residual VQ-VAE, also the tokeniser of the chapter's PixelCNN prior. quick: VQVAEConfig.small()
    # with k-means init and dead-code restarts on Shapes; ~70 s on 2 idle CPU cores. colab: the Sonnet
    # example's configuration and optimiser (K=512, D=64, EMA codebook) on CIFAR-10; estimated 4-6 min on
    # a T4, < 1 GB. (sweeps: NOTES.md, ch04/vqvae)
    "vqvae": dict(
        quick=TrainConfig(steps=2000, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20,
                          log_every=20),
        colab=TrainConfig(steps=10_000, batch_size=32, lr=3e-4, log_every=100),
    ),
    # colab only: the Shapes tokeniser for the prior (in quick, "vqvae" above already is one).
    # Estimated 2 min on a T4. (sweeps: NOTES.md, ch04/vqvae_shapes)
    "vqvae_shapes": dict(
        quick=TrainConfig(steps=1000, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20,
                          log_every=20),
        colab=TrainConfig(steps=4000, batch_size=64, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50),
    ),
    # The report's ResNet-101 VQ-VAE with the frozen ImageNet trunk (cut after layer2), one recipe per
    # dataset the report used; this one MNIST. quick (all three): two updates of 8 images, a smoke test of
    # the code path only. colab: MNIST at 32 px, estimated ~3 min on a T4 in fp16, under 1 GB of tensors.
    # (sweeps: NOTES.md, ch04/resnet_vqvae_mnist)
    "resnet_vqvae_mnist": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=2000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=100,
                          log_every=50),
    ),
    # The same ResNet-101 VQ-VAE on CIFAR-10. quick: the same two-update smoke test. colab: estimated ~6 min
    # on a T4 in fp16, under 1 GB of tensors. (sweeps: NOTES.md, ch04/resnet_vqvae_cifar10)
    "resnet_vqvae_cifar10": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=4000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=100,
                          log_every=50),
    ),
    # The same ResNet-101 VQ-VAE on COCO. quick: the same two-update smoke test. colab: COCO at 64 px (20k
    # images), estimated ~8 min on a T4 in fp16 plus the image download, under 1 GB of tensors.
    # (sweeps: NOTES.md, ch04/resnet_vqvae_coco)
    "resnet_vqvae_coco": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=3000, batch_size=64, lr=1e-3, schedule="cosine", warmup_steps=100,
                          log_every=50),
    ),
    # The gated PixelCNN prior over 8x8 code maps (K=64). quick: 32 channels, 4 gated layers, 20,000 freshly
    # drawn Shapes code maps; ~55 s on 2 idle CPU cores, plus ~5 s to draw and encode the maps. colab: 128
    # channels, 10 layers, 200,000 maps; estimated 8-10 min on a T4, under 1 GB of tensors.
    # (sweeps: NOTES.md, ch04/prior)
    "prior": dict(
        quick=TrainConfig(steps=1800, batch_size=32, lr=5e-3, schedule="cosine", warmup_steps=20,
                          log_every=20),
        colab=TrainConfig(steps=20_000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=500,
                          log_every=100),
    ),
}
