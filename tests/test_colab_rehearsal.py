"""The colab rehearsal: every chapter runs its colab-profile code on the CPU, offline, end to end.

nbval and ``make book`` run the chapters in the quick profile only, so the branches a learner meets on
Colab (MNIST, CIFAR-10 and COCO loading, the ImageNet trunks, Inception FID, OpenAI's dVAE, the COCO token
cache) would otherwise never run before someone opens the notebook there. Here each chapter runs with
``T2I_PROFILE=colab`` on small datasets written in the real formats (``fake_data.py``), with the
stand-ins of ``rehearsal_patches.py`` for the pretrained weights and with every recipe capped at two
updates. What this checks: the colab code paths run and reach the lines that report their results. What
it cannot check: anything about the results, GPU speed, memory or fp16 (no GPU here).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_data import write_cifar10, write_coco, write_mnist

pytestmark = pytest.mark.rehearsal

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

# Lines that only the colab branch of each chapter prints: reaching them means the branch ran to its end.
COLAB_ONLY = {
    "01_autoencoders": ["MNISTDataset"],
    "02_vae_elbo": ["CIFAR-10 test set"],
    "03_reparameterization": ["score function, K=1: test ELBO"],
    "04_vqvae": ["Sonnet example on CIFAR-10", "mnist: test MSE", "cifar10: test MSE", "coco: test MSE",
                 "(Inception features)", "70% of the time: "],
    "05_image_tokens": ["OpenAI's released weights", "PSNR of the reconstructions from 32x32 tokens",
                        "TokenCache"],
}


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


def _slowest_cells(nb, k=3) -> str:
    from datetime import datetime

    times = []
    for i, cell in enumerate(nb.cells):
        ex = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            t0, t1 = (datetime.fromisoformat(ex[key].replace("Z", "+00:00"))
                      for key in ("iopub.execute_input", "shell.execute_reply"))
            times.append(((t1 - t0).total_seconds(), i))
    return ", ".join(f"cell {i} {s:.0f} s" for s, i in sorted(times, reverse=True)[:k])


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_runs_in_the_colab_profile(nb_path, colab_cache, tmp_path, monkeypatch):
    for key, value in {"T2I_PROFILE": "colab", "T2I_CACHE": str(colab_cache), "T2I_OFFLINE": "1",
                       "T2I_STATIC_WIDGETS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"
                       }.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(nb_path, as_version=4)
    preamble = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                f"import rehearsal_patches\nrehearsal_patches.apply({str(tmp_path / 'scratch')!r})")
    nb.cells.insert(0, nbformat.v4.new_code_cell(preamble))
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(nb_path.parent)}})
    start = time.perf_counter()
    executed = tmp_path / nb_path.name  # kept by pytest (the last few runs) for reading afterwards
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{nb_path.name} fails in the colab profile (executed copy: {executed}):\n{e}", pytrace=False)
    finally:
        nbformat.write(nb, executed)
    seconds = time.perf_counter() - start
    text = "\n".join(out.get("text", "") or out.get("data", {}).get("text/plain", "")
                     for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "profile   : colab" in text
    missing = [line for line in COLAB_ONLY[nb_path.stem] if line not in text]
    assert not missing, f"{nb_path.name}: the colab branch never printed {missing}"
    print(f"{nb_path.stem}: colab rehearsal in {seconds:.0f} s (slowest: {_slowest_cells(nb)})")
