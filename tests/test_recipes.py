"""Recipes: every run has both profiles, the quick one is the smaller, overrides copy, and one cap sees all."""

from __future__ import annotations

import dataclasses

import pytest

import t2i_lib.recipes as recipes
from t2i_lib.profiles import get_profile
from t2i_lib.recipes import RECIPES, recipe


def test_every_run_has_both_profiles_and_quick_is_never_the_larger():
    for chapter, runs in RECIPES.items():
        for name, by_profile in runs.items():
            assert set(by_profile) == {"quick", "colab"}, f"{chapter}/{name}"
            q, c = by_profile["quick"], by_profile["colab"]
            # the quick profile is what CI and `make book` run on 2 cores: never more examples than colab
            assert q.steps * q.batch_size <= c.steps * c.batch_size, f"{chapter}/{name}"


def test_overrides_copy_and_never_mutate():
    cfg = recipe("ch01", "conv_ae", get_profile("colab", device="cpu"), ckpt_dir="somewhere")
    assert cfg == dataclasses.replace(RECIPES["ch01"]["conv_ae"]["colab"], ckpt_dir="somewhere")
    assert RECIPES["ch01"]["conv_ae"]["colab"].ckpt_dir is None


def test_errors_list_the_choices():
    with pytest.raises(KeyError, match="its recipes: .*conv_ae"):
        recipe("ch01", "nope", "quick")
    with pytest.raises(KeyError, match="chapters with recipes: .*ch01"):
        recipe("ch99", "conv_ae", "quick")
    with pytest.raises(ValueError, match="profiles: quick, colab"):
        recipe("ch01", "conv_ae", "fast")


def test_the_cap_sees_every_recipe_and_overrides(monkeypatch):
    seen = []

    def cap(chapter, name, profile, cfg):
        seen.append((chapter, name, profile))
        return dataclasses.replace(cfg, steps=min(cfg.steps, 2))

    monkeypatch.setattr(recipes, "CAP", cap)
    for chapter, runs in RECIPES.items():
        for name in runs:
            assert recipe(chapter, name, "colab", steps=10_000).steps == 2  # applied after the overrides
    assert len(seen) == sum(len(runs) for runs in RECIPES.values())
    monkeypatch.setattr(recipes, "CAP", None)
    assert recipe("ch01", "conv_ae", "colab").steps == RECIPES["ch01"]["conv_ae"]["colab"].steps


def test_run_minutes_is_a_copy_and_names_the_chapters_on_a_typo():
    from t2i_lib.recipes import RUN_MINUTES, run_minutes

    got = run_minutes("ch01")
    assert got == RUN_MINUTES["ch01"] and set(got) == {"quick", "colab"}
    got["quick"] = 99
    assert RUN_MINUTES["ch01"]["quick"] != 99
    with pytest.raises(KeyError, match="chapters: ch01, ch02"):
        run_minutes("ch1")
