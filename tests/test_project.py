"""Project-level checks: packaging agrees with itself, and every chapter notebook is committed the way
the book and Colab expect (clean, GPU metadata, the Colab install cell pointing at _config.yml's repo)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_files() -> list[str]:
    files = [TOC["root"]]
    for part in TOC.get("parts", []):
        for ch in part.get("chapters", []):
            files.append(ch["file"])
            files += [s["file"] for s in ch.get("sections", [])]
    return files


def chapter_notebooks() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def _norm(reqs):
    return {Requirement(r).name.lower().replace("_", "-"): str(Requirement(r).specifier) for r in reqs}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _norm(pip_section) == _norm(declared), "environment.yml's pip section differs from pyproject.toml"


def test_constraints_pin_the_known_good_stack():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower()] = version
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    assert pins["jupyter-book"].startswith("1."), "Jupyter Book 2.x cannot build offline: pin <2"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    for req in map(Requirement, declared):
        name = req.name.lower()
        assert name in pins, f"{name} is a dependency but has no exact pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {req}"


def test_toc_entries_exist():
    for f in toc_files():
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f"_toc.yml names missing {f}"


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_notebook_is_clean_and_colab_ready(nb_path):
    nb = json.loads(nb_path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, f"{nb_path.name} is committed with outputs"
    ids = [c.get("id") for c in nb["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), f"{nb_path.name}: cell ids must be present and unique"
    meta = nb["metadata"]
    assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType") == "T4"
    assert meta["kernelspec"]["name"] == "python3"
    # The first code cell installs t2i_lib from the repository that _config.yml names, on Colab only.
    first = "".join(code[0]["source"])
    repo = CONFIG["repository"]["url"].removesuffix("/")
    branch = CONFIG["repository"]["branch"]
    assert 'if "google.colab" in sys.modules:' in first
    m = re.search(r"git\+(\S+?)@(\w[\w.-]*)\"", first)
    assert m, "the install cell must pip-install t2i_lib from git"
    assert (m.group(1), m.group(2)) == (f"{repo}", branch), "install URL/branch disagree with _config.yml"
    assert "torch" not in first.split("git+")[0].split("install")[-1], "the install cell must not reinstall torch"
    # The second code cell prints the run-profile banner.
    assert "setup(" in "".join(code[1]["source"])


def test_colab_budget_benchmark_covers_every_colab_recipe(monkeypatch):
    """benchmarks/colab_budget.py builds the model of every colab recipe; a new recipe needs a row there."""
    import importlib.util

    from t2i_lib.recipes import RECIPES

    spec = importlib.util.spec_from_file_location("colab_budget", ROOT / "benchmarks" / "colab_budget.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "colab_budget", bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    covered = {(r.chapter, r.name) for r in bench.RUNS}
    recipes = {(ch, name) for ch, runs in RECIPES.items() for name in runs}
    assert covered == recipes, f"missing rows: {sorted(recipes - covered)}; stale rows: {sorted(covered - recipes)}"
    counts = bench.cpu_counts(next(r for r in bench.RUNS if r.name == "linear_ae"), batch_size=4)
    assert counts["params"] == 784 * 10 * 2 + 10 + 784  # a 784 -> 10 -> 784 linear autoencoder with biases
    # Each (4 x 784) @ (784 x 10)-sized product costs 2 * 4 * 784 * 10 FLOPs. Forward: 2 of them. Backward: the
    # decoder's weight and input gradients and the encoder's weight gradient (the images need none): 3 more.
    assert counts["flops"] == 5 * 2 * 4 * 784 * 10
    assert counts["act_mib"] > 0


def test_readme_lists_every_environment_variable():
    from t2i_lib import env

    readme = (ROOT / "README.md").read_text()
    missing = [v for v in env.VARIABLES if f"`{v}`" not in readme]
    assert not missing, f"README.md's table of environment variables lacks {missing}"
    # and no module reads the environment but env.py
    readers = [str(p.relative_to(ROOT)) for p in (ROOT / "t2i_lib").rglob("*.py")
               if p.name != "env.py" and re.search(r"os\.environ|os\.getenv", p.read_text())]
    assert not readers, f"these modules read environment variables directly; go through t2i_lib.env: {readers}"

