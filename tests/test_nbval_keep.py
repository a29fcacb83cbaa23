"""The nbval_keep plugin (tests/nbval_keep.py) and the staged build from its copies
(scripts/stage_executed_book.py): make test renders the book from the chapters nbval executed, so the saved
copies must hold what a normal execution leaves, and the build must refuse a copy older than its notebook."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("nbval")

from nbval_keep import META_KEY, source_hash  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

CELLS = [
    ("markdown", "# A tiny chapter"),
    # Flushed one by one, so three stream messages in a fixed order (nbval would merge the two stdouts).
    ("code", "import sys\nprint('to stdout', flush=True)\nprint('to stderr', file=sys.stderr, flush=True)\n"
             "print('more stdout')"),
    ("code", "from myst_nb import glue\nglue('answer', 42)\nglue('shown', 'a glued string', display=False)"),
    ("code", "from IPython.display import HTML, clear_output, display\n"
             "handle = display(HTML('<b>first</b>'), display_id=True)\nhandle.update(HTML('<b>updated</b>'))"),
    ("code", "print('gone')\nclear_output(wait=True)\nprint('kept')"),
    ("code", "6 * 7"),
]


def tiny_notebook(cells=CELLS):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code" else nbformat.v4.new_markdown_cell(src)
                for kind, src in cells]
    return nb


def run_nbval(tmp_path: Path, *paths: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "nbval_keep", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), "--nbval-lax", *paths, "--nbval-keep=executed"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def without_timing(nb):
    cells = []
    for cell in nb.cells:
        cell = nbformat.from_dict(dict(cell))
        cell.metadata = {k: v for k, v in cell.metadata.items() if k != "execution"}
        cells.append(cell)
    return cells


def test_saved_copy_is_what_nbclient_leaves(tmp_path):
    (tmp_path / "book").mkdir()
    src = tmp_path / "book" / "tiny.ipynb"
    nbformat.write(tiny_notebook(), src)

    result = run_nbval(tmp_path, "book")
    assert result.returncode == 0, result.stdout + result.stderr
    saved_path = tmp_path / "executed" / "book" / "tiny.ipynb"
    assert saved_path.exists(), result.stdout
    assert "saved 1 of 1 executed notebooks" in result.stdout
    saved = nbformat.read(saved_path, as_version=4)
    assert saved.metadata[META_KEY] == {"source": "book/tiny.ipynb",
                                        "source_sha256": source_hash(nbformat.read(src, as_version=4))}

    code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5]
    assert [(o.name, o.text) for o in code[0].outputs] == [
        ("stdout", "to stdout\n"), ("stderr", "to stderr\n"), ("stdout", "more stdout\n")]
    glued = [o for o in code[1].outputs if o.output_type == "display_data"]
    assert len(glued) == 2, code[1].outputs
    assert {o.metadata["scrapbook"]["name"] for o in glued} == {"answer", "shown"}
    answer, shown = sorted(glued, key=lambda o: o.metadata["scrapbook"]["name"])
    assert answer.data == {"text/plain": "42"} and answer.metadata["scrapbook"]["mime_prefix"] == ""
    assert shown.data == {"application/papermill.record/text/plain": "'a glued string'"}
    assert shown.metadata["scrapbook"]["mime_prefix"] == "application/papermill.record/"
    assert [o.data["text/html"] for o in code[2].outputs] == ["<b>updated</b>"]  # the display was updated
    assert [o.get("text") for o in code[3].outputs] == ["kept\n"]  # cleared before the next output
    assert code[4].outputs[0].output_type == "execute_result" and code[4].outputs[0].execution_count == 5
    for cell in code:
        assert {"iopub.execute_input", "shell.execute_reply"} <= set(cell.metadata["execution"])

    # The same notebook executed by nbclient, as jupyter-book's execution runs it.
    reference = nbformat.read(src, as_version=4)
    nbclient.NotebookClient(reference, timeout=120, resources={"metadata": {"path": str(src.parent)}}).execute()
    assert without_timing(saved) == without_timing(reference)
    assert saved.metadata["language_info"] == reference.metadata["language_info"]


def test_failing_notebook_leaves_no_copy(tmp_path):
    (tmp_path / "book").mkdir()
    nbformat.write(tiny_notebook([("code", "print('fine')"), ("code", "1 / 0"), ("code", "print('after')")]),
                   tmp_path / "book" / "broken.ipynb")
    nbformat.write(tiny_notebook([("code", "print('fine')")]), tmp_path / "book" / "good.ipynb")
    stale = tmp_path / "executed" / "book" / "broken.ipynb"  # a copy from an earlier, passing run
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")

    result = run_nbval(tmp_path, "book")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not stale.exists(), "a failing notebook kept an earlier run's copy"
    assert (tmp_path / "executed" / "book" / "good.ipynb").exists()
    assert "NOT saved book/broken.ipynb" in result.stdout


def test_partly_selected_notebook_leaves_no_copy(tmp_path):
    nbformat.write(tiny_notebook([("code", "x = 1"), ("code", "print(x)")]), tmp_path / "part.ipynb")
    result = run_nbval(tmp_path, "part.ipynb::Cell 0")  # the first cell only
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "executed" / "part.ipynb").exists()
    assert "not every cell was selected" in result.stdout


def test_copies_are_saved_under_xdist(tmp_path):
    """make test runs nbval on every core (pytest-xdist, a chapter per worker): each worker saves its own."""
    pytest.importorskip("xdist")
    (tmp_path / "book").mkdir()
    for name in ("a", "b"):
        nbformat.write(tiny_notebook([("code", f"x = '{name}'"), ("code", "print(x)")]), tmp_path / "book" / f"{name}.ipynb")
    (tmp_path / "test_other.py").write_text("def test_beside_the_notebooks():\n    assert True\n")
    # --dist loadfile, as make test runs it: a notebook's cells stay on one worker, in order, beside other tests.
    result = run_nbval(tmp_path, "test_other.py", "book", "-n", "2", "--dist", "loadfile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout  # 2 cells a notebook, and the plain test
    for name in ("a", "b"):
        saved = nbformat.read(tmp_path / "executed" / "book" / f"{name}.ipynb", as_version=4)
        assert saved.cells[1].outputs[0].text == f"{name}\n"


def test_output_timeout_option_sets_nbvals_wait_on_every_cell(tmp_path):
    nbformat.write(tiny_notebook([("code", "x = 1"), ("code", "print(x)")]), tmp_path / "wait.ipynb")
    (tmp_path / "conftest.py").write_text(  # reports what nbval's cells will wait for
        "import pytest\n"
        "@pytest.hookimpl(trylast=True)\n"
        "def pytest_collection_modifyitems(items):\n"
        "    print('WAITS', sorted({i.output_timeout for i in items}))\n")
    env = dict(os.environ, PYTHONPATH=str(TESTS))

    def collect(*extra):
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "nbval_keep", "-p", "no:cacheprovider", "-s",
                               "--collect-only", "-q", "--rootdir", str(tmp_path), "--nbval-lax", "wait.ipynb",
                               *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert "WAITS [5]" in collect().stdout  # nbval's own
    assert "WAITS [60.0]" in collect("--nbval-output-timeout=60").stdout
    bad = collect("--nbval-output-timeout=0")
    assert bad.returncode != 0 and "must be a positive number of seconds" in bad.stdout + bad.stderr


# --- the staged build ------------------------------------------------------------------------------------

def load_stager():
    spec = importlib.util.spec_from_file_location("stage_executed_book", ROOT / "scripts" / "stage_executed_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_book(tmp_path: Path):
    root = tmp_path / "src"
    (root / "book").mkdir(parents=True)
    (root / "vendor").mkdir()
    (root / "_config.yml").write_text("title: tiny\nexecute:\n  execute_notebooks: force\n"
                                      "sphinx:\n  config:\n    html_static_path: [vendor]\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/ch\n")
    (root / "book" / "intro.md").write_text("# Intro\n")
    nb = tiny_notebook([("code", "print('hi')")])
    nbformat.write(nb, root / "book" / "ch.ipynb")
    executed = tmp_path / "executed"
    (executed / "book").mkdir(parents=True)
    done = nbformat.read(root / "book" / "ch.ipynb", as_version=4)
    done.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    done.cells[0].execution_count = 1
    done.metadata[META_KEY] = {"source": "book/ch.ipynb", "source_sha256": source_hash(done)}
    nbformat.write(done, executed / "book" / "ch.ipynb")
    return root, executed


def test_stage_swaps_in_the_executed_copy_with_execution_off(tmp_path):
    import yaml

    stager = load_stager()
    root, executed = tiny_book(tmp_path)
    dest = stager.stage(root, executed, tmp_path / "stage")
    assert yaml.safe_load((dest / "_config.yml").read_text())["execute"]["execute_notebooks"] == "off"
    staged = nbformat.read(dest / "book" / "ch.ipynb", as_version=4)
    assert staged.cells[0].outputs[0].text == "hi\n"
    assert META_KEY not in staged.metadata
    assert (dest / "book" / "intro.md").exists() and (dest / "vendor").is_symlink()


def test_stage_refuses_a_stale_or_missing_executed_copy(tmp_path, capsys):
    stager = load_stager()
    root, executed = tiny_book(tmp_path)
    nb = nbformat.read(root / "book" / "ch.ipynb", as_version=4)
    nb.cells[0].source = "print('hello')"  # edited after it was executed
    nbformat.write(nb, root / "book" / "ch.ipynb")
    with pytest.raises(stager.StageError, match=r"book/ch.ipynb has changed since .* was executed"):
        stager.stage(root, executed, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()

    code = stager.main(["--root", str(root), "--executed", str(executed), "--stage", str(tmp_path / "stage")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot build the book from executed notebooks" in err and "book/ch.ipynb" in err

    (executed / "book" / "ch.ipynb").unlink()
    with pytest.raises(stager.StageError, match=r"book/ch.ipynb: no executed copy"):
        stager.stage(root, executed, tmp_path / "stage")
