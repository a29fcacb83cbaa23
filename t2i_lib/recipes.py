"""Every chapter's training numbers, for both run profiles, in one readable place.

A chapter never writes ``TrainConfig(steps=..., lr=...)`` inline; it asks for its recipe::

    cfg = recipe("ch01", "conv_ae", profile)     # profile: a Profile or "quick" / "colab"

so the two sizes of every run can be read (and compared) here, side by side. The *quick* numbers are
sized for a CPU with two cores (the whole chapter in a minute or two, which is what ``make book`` and CI
run); the *colab* numbers for a free Colab T4 GPU and the real datasets, within ~30 minutes a chapter.
Times in the comments were measured, not guessed; where a number is an estimate the comment says so.

Model sizes (latent_dim and the like) are not here: they are part of what a chapter teaches and stay
visible in its notebook.

Defined in Chapter 1 (each later chapter adds its own block).
"""

from __future__ import annotations

from dataclasses import replace

from .profiles import PROFILES, Profile
from .train import TrainConfig

RECIPES: dict[str, dict[str, dict[str, TrainConfig]]] = {}

# ---------------------------------------------------------------------------------------------------
# Chapter 1: autoencoders and latent spaces. Quick: Digits (1,258 training images, 28 px).
# Colab: MNIST (60,000 images, 28 px). The whole chapter on a T4 is estimated at 5-8 minutes (not
# measured: no T4 was at hand), most of it the first MNIST download and Python-side data loading; the
# models are tiny for a GPU.
# ---------------------------------------------------------------------------------------------------
RECIPES["ch01"] = {
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


def recipe(chapter: str, name: str, profile: Profile | str, **overrides) -> TrainConfig:
    """The ``TrainConfig`` of run ``name`` in ``chapter`` for ``profile`` (a Profile or its name),
    with any field overridden by keyword (e.g. ``ckpt_dir="checkpoints/ch01"``).

    Defined in Chapter 1.
    """
    prof = profile.name if isinstance(profile, Profile) else str(profile)
    if prof not in PROFILES:
        raise ValueError(f"unknown profile {prof!r}; profiles: {', '.join(PROFILES)}")
    if chapter not in RECIPES:
        raise KeyError(f"no recipes for chapter {chapter!r}; chapters with recipes: {', '.join(sorted(RECIPES))}")
    runs = RECIPES[chapter]
    if name not in runs:
        raise KeyError(f"chapter {chapter!r} has no recipe {name!r}; its recipes: {', '.join(sorted(runs))}")
    return replace(runs[name][prof], **overrides)

# ---------------------------------------------------------------------------------------------------
# Chapter 2: the VAE and the ELBO. Quick: Digits (1,258 training images, 28 px, dynamically binarised).
# Colab: MNIST (60,000 images). The colab times below are estimates (no T4 was at hand): the MNIST VAE
# is tiny for a GPU, so its runs are bound by Python-side data loading; the ResNet-50 VAE is the one
# real GPU job of the chapter.
# ---------------------------------------------------------------------------------------------------
RECIPES["ch02"] = {
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

# ---------------------------------------------------------------------------------------------------
# Chapter 3: the reparameterisation trick. The Chapter 2 VAE (latent_dim=16, binarised) trained three times
# with the same recipe and seed: with the pathwise estimator; with a score-function (REINFORCE) encoder
# that draws 4 codes per image for a leave-one-out baseline (about 4x the decoder work per update); and
# with a score-function encoder that draws 1 code per image and uses the batch-mean baseline.
# ---------------------------------------------------------------------------------------------------
RECIPES["ch03"] = {
    # quick: ~20 epochs of Digits each; the whole chapter (three runs and the estimator experiments) took
    # 38 s on 2 CPU cores.
    # colab: ~11 epochs of MNIST each; estimated 3-5 min for the three on a T4 (not measured: no T4 at hand).
    "vae_estimators": dict(
        quick=TrainConfig(steps=400, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=5000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}

# ---------------------------------------------------------------------------------------------------
# Chapter 4: VQ-VAE and the codebook. Quick: Shapes at 32 px (8x8 tokens). Colab: Shapes for the collapse
# experiment and the prior, CIFAR-10 for the Sonnet VQ-VAE, MNIST / CIFAR-10 / COCO for the report's
# ResNet-101 VQ-VAE. Every colab time below is an estimate for a T4 (none was at hand), not a measurement.
# ---------------------------------------------------------------------------------------------------
RECIPES["ch04"] = {
    # The same small VQ-VAE (32 hidden channels, D=16, K=64) with and without the codebook fixes.
    # quick: ~9 s per run on one thread of a shared 2-core CPU (both runs: 18 s). The plain codebook uses 1-2
    # codes for its first ~90 updates and climbs slowly (55% of the codes on held-out images after 300, 70%
    # after 400); the fixed one ends at 98%.
    # colab: estimated 1-2 min each on a T4, < 1 GB.
    "collapse": dict(
        quick=TrainConfig(steps=300, batch_size=32, lr=2e-3, log_every=10),
        colab=TrainConfig(steps=3000, batch_size=64, lr=2e-3, log_every=25),
    ),
    # The residual VQ-VAE. quick: VQVAEConfig.small() with k-means init and dead-code restarts on Shapes;
    # ~70 s on 2 idle CPU cores. It is also the tokeniser of the chapter's PixelCNN prior, and its quality
    # caps the prior's: the scorer accepts 89-91% of its reconstructions after 1,000 updates, 95% after
    # 1,500 and 97% after 2,000, and the prior's samples (the "prior" recipe below, 400 samples, two prior
    # seeds x two sampling seeds) were valid 72-75%, 72-75% and 74.5-83.5% (mean 79%) of the time. With
    # 1,000 updates the 70% bar was met or missed by the luck of the threads; hence 2,000. In a sweep on
    # 8,192 fixed images, lr 3e-3 with a cosine decay beat 2e-3. Dividing the MSE by the data variance
    # (~0.037) made no difference on Shapes (90% vs 89% accepted).
    # colab: the Sonnet example's configuration and optimiser (K=512, D=64, EMA codebook, Adam 3e-4,
    # batches of 32, 10k updates) on CIFAR-10; estimated 4-6 min on a T4, < 1 GB.
    "vqvae": dict(
        quick=TrainConfig(steps=2000, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=20),
        colab=TrainConfig(steps=10_000, batch_size=32, lr=3e-4, log_every=100),
    ),
    # colab only: the Shapes tokeniser for the prior (in quick, "vqvae" above already is one).
    # Estimated 2 min on a T4.
    "vqvae_shapes": dict(
        quick=TrainConfig(steps=1000, batch_size=32, lr=3e-3, schedule="cosine", warmup_steps=20, log_every=20),
        colab=TrainConfig(steps=4000, batch_size=64, lr=2e-3, schedule="cosine", warmup_steps=100, log_every=50),
    ),
    # The report's ResNet-101 VQ-VAE with the frozen ImageNet trunk (cut after layer2), one recipe per
    # dataset the report used. quick: two updates of 8 images, a smoke test of the code path only.
    # colab (estimated on a T4 in fp16): MNIST at 32 px ~3 min, CIFAR-10 ~6 min, COCO at 64 px (20k images)
    # ~8 min plus the image download. Under 1 GB of tensors: benchmarks/colab_budget.py measures 70 MiB
    # (32 px, batch 128) and 138 MiB (64 px, batch 64) of saved activations and 19 MiB of parameter state.
    "resnet_vqvae_mnist": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=2000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=100, log_every=50),
    ),
    "resnet_vqvae_cifar10": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=4000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=100, log_every=50),
    ),
    "resnet_vqvae_coco": dict(
        quick=TrainConfig(steps=2, batch_size=8, lr=1e-3, log_every=1),
        colab=TrainConfig(steps=3000, batch_size=64, lr=1e-3, schedule="cosine", warmup_steps=100, log_every=50),
    ),
    # The gated PixelCNN prior over 8x8 code maps (K=64). quick: 32 channels, 4 gated layers, on 20,000
    # freshly drawn Shapes code maps (under 3 epochs, so it cannot memorise them); ~55 s on 2 idle CPU
    # cores, plus ~5 s to draw and encode the maps.
    # Measured with the 1,000-update tokeniser (400 samples each): 1,800 updates at lr 5e-3 give 0.86
    # held-out nats per code and 64-73% valid samples; 2,400 updates 0.82 nats and 72-74%; 6 gated layers
    # 0.85 nats and 69-74%; 48 channels 0.82 nats and 71-76%; batches of 64, 70-75%; sampling at
    # temperature 0.8 or 0.7 lowered validity (67%, 48%: more empty pictures). The prior was not the
    # bottleneck; the tokeniser was (see "vqvae" above: 2,000 updates lift this prior to 74.5-83.5%).
    # With that tokeniser (two prior seeds x two sampling seeds each): 1,800 updates, the recipe, give
    # 0.87-0.88 held-out nats and 78-80% valid; 1,400 updates 0.93 nats and 75-81% (and 73% in one full
    # run of the chapter); 5 gated layers for 1,600 updates, 0.87-0.89 and 78-82%. Runs of the same seed
    # differ by a few points on 2 CPU threads (the order of floating-point sums). With an earlier
    # tokeniser, 600 updates of 64 left 1.18 nats and 61%; a 64-channel prior (1,500 updates of 64) reached
    # 0.77 nats and 80% but took ~8 min on 2 shared cores.
    # colab: 128 channels, 10 layers, 200,000 maps; estimated 8-10 min on a T4. benchmarks/colab_budget.py
    # counts 330 GFLOP per update (so at least 5.5 min of arithmetic at 20 TFLOP/s), 432 MiB of saved
    # activations and 103 MiB of parameter state: under 1 GB of tensors.
    "prior": dict(
        quick=TrainConfig(steps=1800, batch_size=32, lr=5e-3, schedule="cosine", warmup_steps=20, log_every=20),
        colab=TrainConfig(steps=20_000, batch_size=128, lr=1e-3, schedule="cosine", warmup_steps=500, log_every=100),
    ),
}

# ---------------------------------------------------------------------------------------------------
# Chapter 5: image tokens at DALL-E scale. Quick: Shapes at 32 px (8x8 tokens, K=64). Colab: CIFAR-10 at
# 32 px for the dVAE / VQ-VAE comparison, then OpenAI's pretrained dVAE on COCO (its encoding is not a
# training run and has no recipe; the notebook states its time and disk budget). Colab times are
# estimates for a T4 (none was at hand), not measurements.
# ---------------------------------------------------------------------------------------------------
RECIPES["ch05"] = {
    # The small dVAE (DVAEConfig.small(): 64 hidden channels, D=32, K=64) with DALL-E's schedules scaled
    # to the run (tau 1 -> 1/16 over the first half, beta 0 -> 6.6 over the first tenth).
    # quick: 800 updates of 32 on 2,048 Shapes images; 33 s on one CPU thread (measured with other jobs on
    # the machine). Held-out MSE of the argmax reconstruction 0.0092, 62 of 64 codes in use. With 400 updates
    # it ended on a plateau at MSE ~0.019 where every shape is drawn grey (colour not yet in the codes).
    # colab: the default size (128 channels, D=64, K=512) on CIFAR-10; estimated 4-6 min on a T4, < 1 GB.
    "dvae": dict(
        quick=TrainConfig(steps=800, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
    # The Chapter 4 VQ-VAE of the same size (VQVAEConfig.small() with k-means init and dead-code restarts)
    # on the same data with the same budget, for the comparison. quick: ~20 s on one CPU thread; held-out
    # MSE 0.0051 with all 64 codes in use. colab: estimated 3-5 min on a T4, < 1 GB.
    "vqvae": dict(
        quick=TrainConfig(steps=800, batch_size=32, lr=2e-3, schedule="cosine", warmup_steps=20, log_every=10),
        colab=TrainConfig(steps=6000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
