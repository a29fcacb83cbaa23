"""Chapter 3: the reparameterisation trick. The Chapter 2 VAE (latent_dim=16, binarised) trained three times
with the same recipe and seed: with the pathwise estimator; with a score-function (REINFORCE) encoder
that draws 4 codes per image for a leave-one-out baseline (about 4x the decoder work per update); and
with a score-function encoder that draws 1 code per image and uses the batch-mean baseline.
"""

from t2i_lib.train.trainer import TrainConfig

RUNS: dict[str, dict[str, TrainConfig]] = {
    # The Chapter 2 VAE, trained once per gradient estimator (the three runs of the module docstring).
    # quick: ~20 epochs of Digits each; the whole chapter took 38 s on 2 CPU cores.
    # colab: ~11 epochs of MNIST each; estimated 3-5 min for the three on a T4 (not measured: no T4 at hand).
    # (sweeps: NOTES.md, ch03/vae_estimators)
    "vae_estimators": dict(
        quick=TrainConfig(steps=400, batch_size=64, lr=3e-3, schedule="cosine", warmup_steps=20,
                          log_every=10),
        colab=TrainConfig(steps=5000, batch_size=128, lr=2e-3, schedule="cosine", warmup_steps=100,
                          log_every=50, eval_every=1000, eval_batches=20),
    ),
}
