"""What the colab rehearsal changes inside a chapter's kernel, and nothing more.

``test_colab_rehearsal.py`` runs every chapter in the colab profile on the CPU, offline, on small files in
the real formats (``fake_data.py``). To finish in minutes it calls :func:`apply` in a cell placed before
the chapter's own code. That cell:

- caps every recipe at 2 updates of at most 8 examples (same schedule names, same workers);
- builds the ResNet VAE / VQ-VAE with random weights where the chapter asks for ImageNet's, keeping the
  trunk frozen as the pretrained run would;
- hands ``inception_feature_fn`` a randomly initialised FID Inception-v3 state dict (the real network
  and loading code, unknown weights);
- serves ``OpenAIDVAE.pretrained`` small pickles of the ``dall_e`` reference classes, with their hashes,
  so the download -> hash check -> safe conversion -> safetensors path runs (the chapter itself leaves the
  hash to the reader, see its Section 5.8);
- caps ``shapes_code_maps`` at 512 maps and ``sample_and_score`` at 64 samples.

Everything printed is real output of that code; none of it is a result.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

MAX_STEPS, MAX_BATCH, MAX_CODE_MAPS, MAX_PRIOR_SAMPLES = 2, 8, 512, 64
DVAE_SIZE = dict(n_hid=16, n_blk_per_group=1)  # release: n_hid=256, 2 blocks per group; 8,192 tokens kept


def _cap_recipes() -> None:
    import t2i_lib.recipes as recipes

    def cap(chapter, name, profile, cfg):
        return dataclasses.replace(cfg, steps=min(cfg.steps, MAX_STEPS), batch_size=min(cfg.batch_size, MAX_BATCH),
                                   warmup_steps=min(cfg.warmup_steps, 1), eval_every=0,
                                   eval_batches=2, log_every=1, ckpt_every=0)

    recipes.CAP = cap


def _random_imagenet_trunks() -> None:
    from t2i_lib.models import vae, vqvae

    for cls in (vae.ResNetVAE, vqvae.ResNetVQVAE):
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, cfg=None, _init=init, **overrides):
            wants = overrides.get("pretrained", getattr(cfg, "pretrained", False))
            if wants:
                overrides.update(pretrained=False, freeze_encoder=True)
                print(f"rehearsal: {type(self).__name__} with random weights in place of ImageNet's")
            _init(self, cfg, **overrides)

        cls.__init__ = __init__


def _random_fid_inception(folder: Path) -> None:
    import t2i_lib.metrics as metrics
    import t2i_lib.metrics.fid as fid

    path = folder / "fid_inception_random.pth"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            torch.save(metrics.FIDInceptionV3().state_dict(), path)
    full = fid.inception_feature_fn

    @functools.wraps(full)
    def inception_feature_fn(device=None, **kw):
        print("rehearsal: FID Inception-v3 with random weights")
        return full(device, weights_path=path, **kw)

    fid.inception_feature_fn = metrics.inception_feature_fn = inception_feature_fn  # the module and the package


def _small_openai_dvae(folder: Path) -> None:
    import dall_e

    from t2i_lib.storage.download import cache_dir, sha256_file
    from t2i_lib.models.openai_dvae import OpenAIDVAE, OpenAIDVAEConfig

    dest = cache_dir("weights/openai_dvae")
    dest.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(dall_e.Encoder(**DVAE_SIZE), dest / "encoder.pkl")  # the release's format: whole modules
        torch.save(dall_e.Decoder(**DVAE_SIZE), dest / "decoder.pkl")
    hashes = {part: sha256_file(dest / f"{part}.pkl") for part in ("encoder", "decoder")}
    full = OpenAIDVAE.pretrained.__func__

    def pretrained(cls, profile=None, **kw):
        print(f"rehearsal: OpenAI dVAE from small {DVAE_SIZE} pickles of the dall_e classes, hashes given")
        return full(cls, profile, **{**kw, "sha256": hashes, "cfg": OpenAIDVAEConfig(**DVAE_SIZE)})

    OpenAIDVAE.pretrained = classmethod(pretrained)


def _cap_prior_sizes() -> None:
    import t2i_lib.experiments.prior as prior

    maps, samples = prior.shapes_code_maps, prior.sample_and_score

    @functools.wraps(maps)
    def shapes_code_maps(model, n, *args, **kw):
        return maps(model, min(n, MAX_CODE_MAPS), *args, **kw)

    @functools.wraps(samples)
    def sample_and_score(prior_model, vq_model, n, *args, **kw):
        return samples(prior_model, vq_model, min(n, MAX_PRIOR_SAMPLES), *args, **kw)

    prior.shapes_code_maps, prior.sample_and_score = shapes_code_maps, sample_and_score


def apply(scratch: str | Path) -> None:
    """Install the rehearsal's stand-ins in this process; ``scratch``: a folder for the files they write."""
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    _cap_recipes()
    _random_imagenet_trunks()
    _random_fid_inception(scratch)
    _small_openai_dvae(scratch)
    _cap_prior_sizes()
    print(f"rehearsal: recipes capped at {MAX_STEPS} updates of at most {MAX_BATCH} examples")
