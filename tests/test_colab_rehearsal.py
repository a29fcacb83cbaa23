"""The colab rehearsal: every chapter runs its colab-profile code on the CPU, offline, end to end.

nbval and ``make book`` run the chapters in the quick profile only, so the branches a learner meets on
Colab (MNIST, CIFAR-10 and COCO loading, the ImageNet trunks, Inception FID, OpenAI's dVAE, the COCO token
cache) would otherwise never run before someone opens the notebook there. Here each chapter runs with
``T2I_PROFILE=colab`` on small datasets written in the real formats (``fake_data.py``), with the
stand-ins of ``rehearsal_patches.py`` for the pretrained weights and with every recipe capped at two
updates. What this checks: the colab code paths run and reach the lines that report their results, each
chapter within its time budget (``BUDGET_S``; a chapter over it fails, naming its slowest cells, and a cell
still running at the budget is stopped and named), so a colab path that escapes the cap and trains at
full size cannot pass unnoticed. What it cannot check: anything about the results, GPU speed, memory or
fp16 (no GPU here).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_data import write_cifar10, write_coco, write_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

# Lines that only the colab branch of each chapter prints: reaching them means the branch ran to its end.
COLAB_ONLY = {
    "01_autoencoders": ["MNISTDataset"],
    "02_vae_elbo": ["CIFAR-10 test set"],
    "03_reparameterization": ["score function, S=1: test ELBO"],
    "04_vqvae": ["Sonnet example on CIFAR-10", "mnist: test MSE", "cifar10: test MSE", "coco: test MSE",
                 "(Inception features)", "valid Shapes images among 1000 decoded samples"],
    "05_image_tokens": ["OpenAI's released weights", "PSNR of the reconstructions from 32x32 tokens",
                        "TokenCache"],
}

# Seconds each chapter's rehearsal may take: about five times a quiet 2-core run (01 11 s, 02 11 s,
# 03 14 s, 04 89 s, 05 10 s), so load does not fail it, while one recipe that escaped the two-update cap
# (minutes to hours at colab size on a CPU) does.
BUDGET_S = {"01_autoencoders": 90, "02_vae_elbo": 90, "03_reparameterization": 90, "04_vqvae": 450,
            "05_image_tokens": 90}


# Longest first: the rehearsal's long pole starts first.
BY_BUDGET = sorted(NOTEBOOKS, key=lambda p: (-BUDGET_S.get(p.stem, 0), p.name))


@pytest.fixture(scope="module")
def colab_cache(tmp_path_factory):
    """A T2I_CACHE with MNIST, CIFAR-10 and COCO Captions in place. Training sets are larger than test
    sets, as in the real ones (Chapter 4 compares as many training images as test images in its FID);
    COCO train is tiny because Chapter 5 runs OpenAI's dVAE over all of it at 256 px."""
    cache = tmp_path_factory.mktemp("colab_cache")
    write_mnist(cache / "data", n_train=320, n_test=64)
    write_cifar10(cache / "data", n_per_train_batch=64, n_test=64)
    write_coco(cache / "data", {"train": 16, "val": 64})
    return cache


def cell_seconds(nb) -> list[tuple[float, int]]:
    """(seconds, cell index) of every executed cell, from nbclient's timing metadata, slowest first."""
    from datetime import datetime

    times = []
    for i, cell in enumerate(nb.cells):
        ex = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            t0, t1 = (datetime.fromisoformat(ex[key].replace("Z", "+00:00"))
                      for key in ("iopub.execute_input", "shell.execute_reply"))
            times.append(((t1 - t0).total_seconds(), i))
    return sorted(times, reverse=True)


def describe_cell(nb, i: int) -> str:
    first = next((line for line in nb.cells[i].source.splitlines() if line.strip()), "")
    return f"cell {i} ({first[:60]!r})"


def slowest_cells(nb, k=3) -> str:
    return ", ".join(f"{describe_cell(nb, i)} {s:.0f} s" for s, i in cell_seconds(nb)[:k])


def over_budget(name: str, nb, seconds: float, budget: float) -> str | None:
    """None within the budget, otherwise the failure message, naming the slowest cells."""
    if seconds <= budget:
        return None
    return (f"{name}: the colab rehearsal took {seconds:.0f} s, over its budget of {budget:.0f} s; slowest: "
            f"{slowest_cells(nb)}. A recipe that escaped the rehearsal's cap (t2i_lib.recipes.CAP) runs at "
            f"full size: cap it, or raise BUDGET_S in tests/test_colab_rehearsal.py if the chapter grew.")


def test_over_budget_names_the_slowest_cell():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in ("x = 1", "train(model)  # the long one", "y = 2")]
    for cell, (t0, t1) in zip(nb.cells, [("00:00", "00:01"), ("00:01", "05:00"), ("05:00", "05:02")]):
        cell.metadata["execution"] = {"iopub.execute_input": f"2026-01-01T00:{t0}.000Z",
                                      "shell.execute_reply": f"2026-01-01T00:{t1}.000Z"}
    assert over_budget("ch", nb, 302, 400) is None
    msg = over_budget("ch", nb, 302, 90)
    assert msg.startswith("ch: the colab rehearsal took 302 s, over its budget of 90 s")
    assert "slowest: cell 1 ('train(model)  # the long one') 299 s, cell 2 ('y = 2') 2 s" in msg


def test_every_chapter_has_a_budget():
    assert set(BUDGET_S) == {p.stem for p in NOTEBOOKS}


@pytest.mark.rehearsal
@pytest.mark.parametrize("nb_path", BY_BUDGET, ids=[p.stem for p in BY_BUDGET])
def test_chapter_runs_in_the_colab_profile(nb_path, colab_cache, tmp_path, monkeypatch, record_property):
    for key, value in {"T2I_PROFILE": "colab", "T2I_CACHE": str(colab_cache), "T2I_OFFLINE": "1",
                       "T2I_STATIC_WIDGETS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"
                       }.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(nb_path, as_version=4)
    preamble = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                f"import rehearsal_patches\nrehearsal_patches.apply({str(tmp_path / 'scratch')!r})")
    nb.cells.insert(0, nbformat.v4.new_code_cell(preamble))
    budget = BUDGET_S[nb_path.stem]
    client = nbclient.NotebookClient(nb, timeout=budget, kernel_name="python3",  # no cell may outlast it
                                     resources={"metadata": {"path": str(nb_path.parent)}})
    start = time.perf_counter()
    executed = tmp_path / nb_path.name  # kept by pytest (the last few runs) for reading afterwards
    try:
        client.execute()
    except nbclient.exceptions.CellTimeoutError:
        started = [i for i, c in enumerate(nb.cells) if "iopub.execute_input" in c.metadata.get("execution", {})]
        running = started[-1] if started else 1  # the last cell nbclient started, which never replied
        nb.cells.pop(0)  # the preamble: cell numbers below are the chapter's own (0-based)
        pytest.fail(f"{nb_path.stem}: {describe_cell(nb, running - 1)} was still running at the chapter's rehearsal "
                    f"budget of {budget} s; a recipe there escaped the cap (t2i_lib.recipes.CAP)", pytrace=False)
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{nb_path.name} fails in the colab profile (executed copy: {executed}):\n{e}", pytrace=False)
    finally:
        nbformat.write(nb, executed)
    seconds = time.perf_counter() - start
    nb.cells.pop(0)  # the preamble: cell numbers below are the chapter's own (0-based)
    problem = over_budget(nb_path.stem, nb, seconds, budget)
    if problem:
        pytest.fail(problem, pytrace=False)
    text = "\n".join(out.get("text", "") or out.get("data", {}).get("text/plain", "")
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "profile   : colab" in text
    missing = [line for line in COLAB_ONLY[nb_path.stem] if line not in text]
    assert not missing, f"{nb_path.name}: the colab branch never printed {missing}"
    record_property("summary", f"{nb_path.stem}: colab rehearsal in {seconds:.0f} s of its {budget} s budget "
                               f"(slowest: {slowest_cells(nb)})")
