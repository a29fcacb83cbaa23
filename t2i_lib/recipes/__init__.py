"""Every chapter's training numbers, for both run profiles: one file a chapter, ``recipe()`` here.

- ``ch01``: Chapter 1, autoencoders and latent spaces (Digits / MNIST)
- ``ch02``: Chapter 2, the VAE and the ELBO (Digits, Shapes / MNIST, CIFAR-10)
- ``ch03``: Chapter 3, the reparameterization trick (Digits / MNIST)
- ``ch04``: Chapter 4, VQ-VAE and the codebook (Shapes / Shapes, CIFAR-10, MNIST, COCO)
- ``ch05``: Chapter 5, image tokens at DALL-E scale (Shapes / CIFAR-10, COCO)

``NOTES.md`` beside these files keeps the sweeps and measurements behind the numbers.

A chapter never writes ``TrainConfig(steps=..., lr=...)`` inline; it asks for its recipe::

    cfg = recipe("ch01", "conv_ae", profile)     # profile: a Profile or "quick" / "colab"

so the two sizes of every run can be read (and compared) side by side. The *quick* numbers are sized for
a CPU with two cores (the whole chapter in a few minutes, which is what ``make book`` and CI run); the
*colab* numbers for a free Colab T4 GPU and the real datasets, within ~30 minutes a chapter.

Model sizes (latent_dim and the like) are not here: they are part of what a chapter teaches and stay
visible in its notebook.

Each chapter's expected run time, per profile, is :data:`RUN_MINUTES`, read with :func:`run_minutes`: the
chapter's banner, the intro's chapter map and the README's table all show it (a project test checks).

Every recipe a chapter asks for passes through :func:`recipe` and so through :data:`CAP`, the one hook
that can shrink every run at once (the colab rehearsal sets it to cut each run to a couple of updates).

Defined in Chapter 1.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from t2i_lib.profiles import PROFILES, Profile
from t2i_lib.recipes import ch01, ch02, ch03, ch04, ch05
from t2i_lib.train.trainer import TrainConfig

# chapter -> run name -> profile name -> TrainConfig
RECIPES: dict[str, dict[str, dict[str, TrainConfig]]] = {
    "ch01": ch01.RUNS, "ch02": ch02.RUNS, "ch03": ch03.RUNS, "ch04": ch04.RUNS, "ch05": ch05.RUNS,
}

# chapter -> profile name -> expected minutes: the one source of the run times shown in each chapter's
# banner, book/intro.md's chapter map and README.md's table (tests/test_project.py checks that they agree).
# quick: measured, the chapter's cell times summed in a fresh-clone make test on 2 cores (nbval, one thread
# per chapter): ch01 52 s, ch02 114 s, ch03 37 s, ch04 118 s, ch05 50 s; rounded up to whole minutes.
# colab: estimates for a Colab T4 with the first downloads (the chapters' "What the colab profile gives").
RUN_MINUTES: dict[str, dict[str, int]] = {
    "ch01": {"quick": 1, "colab": 6}, "ch02": {"quick": 2, "colab": 25}, "ch03": {"quick": 1, "colab": 6},
    "ch04": {"quick": 2, "colab": 45}, "ch05": {"quick": 1, "colab": 40},
}


def run_minutes(chapter: str) -> dict[str, int]:
    """The expected minutes of ``chapter`` per profile, e.g. ``{"quick": 1, "colab": 6}``, for
    ``setup(..., expected_minutes=run_minutes("ch01"))``.

    Defined in Chapter 1.
    """
    if chapter not in RUN_MINUTES:
        raise KeyError(f"no run time for chapter {chapter!r}; chapters: {', '.join(sorted(RUN_MINUTES))}")
    return dict(RUN_MINUTES[chapter])


# (chapter, name, profile name, cfg) -> cfg. None: recipes are returned as written. The colab rehearsal
# (tests/rehearsal_patches.py) sets it; nothing in the book does.
CAP: Callable[[str, str, str, TrainConfig], TrainConfig] | None = None


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
    cfg = replace(runs[name][prof], **overrides)
    return CAP(chapter, name, prof, cfg) if CAP is not None else cfg
