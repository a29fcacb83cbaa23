"""nbval_keep: a pytest plugin that keeps every notebook nbval executes, as a normal execution leaves it.

``make test`` runs each chapter once: nbval checks it, this plugin saves the executed copy, and the book is
rendered from those copies with execution off (``scripts/stage_executed_book.py``)::

    python -m pytest -p tests.nbval_keep --nbval-lax book --nbval-keep=_build/executed

saves ``book/01_autoencoders.ipynb`` as ``_build/executed/book/01_autoencoders.ipynb`` (the path relative
to pytest's rootdir), and so on.

nbval keeps only what its comparison needs (streams merged across the cell, no ``clear_output``, no
display updates, no widget state, no execution count), so its outputs are not what a notebook run leaves.
This plugin therefore listens to the same kernel messages nbval reads and hands each one to nbclient's own
``NotebookClient.process_message``: the saved outputs (streams, ``display_data`` with every mime type and
its metadata, e.g. myst-nb ``glue`` outputs, ``clear_output`` and display-id updates, widget state) are
what nbclient, the executor behind ``jupyter-book build``, makes of those messages. It also does as
nbclient does where nbval differs: cells run with ``store_history=True`` (so prompt numbers and ``Out``
are a normal run's), each code cell's ``execution_count`` is its position among the executed cells,
``metadata.language_info`` comes from the kernel, the kernel keeps its history in memory, and every cell
gets nbclient's timing record (``metadata.execution``: ``iopub.execute_input``, ``shell.execute_reply``,
...).

A copy is saved only when every code cell of the notebook ran and passed in this session. Any copy from an
earlier run is deleted when the notebook is collected, so a notebook that fails, is interrupted or is only
partly selected (``-k``, ``-x``) leaves no copy at all. Each copy carries, in ``metadata.t2i_executed``,
the :func:`source_hash` of the notebook that was run; the book build refuses a copy whose hash differs from
its source notebook's.

Under pytest-xdist, run it with ``--dist loadfile``: a notebook's cells share one kernel and must stay on
one worker, and each worker saves the copies of the notebooks it ran. It also adds ``--nbval-output-timeout``: nbval waits a fixed 5 s for a cell's outputs after the kernel
has replied, which a loaded 2-core machine can exceed for a cell that sends large figures; the option sets
that wait on every collected cell.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import nbformat
import pytest

META_KEY = "t2i_executed"  # the saved copy's notebook-metadata entry: source hash and path
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag


def source_hash(nb) -> str:
    """sha256 of a notebook's content without its outputs: every cell's type, id, source, metadata and
    attachments, and the notebook's metadata. The same for a clean notebook and any executed copy made from
    it (as read by ``nbformat.read``), different as soon as a cell changes."""
    nb = nbformat.from_dict(copy.deepcopy(dict(nb)))
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k != META_KEY}
    cells = [{k: v for k, v in cell.items() if k not in ("outputs", "execution_count")} for cell in nb.cells]
    blob = json.dumps({"nbformat": [nb.get("nbformat"), nb.get("nbformat_minor")], "metadata": meta,
                       "cells": cells}, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def pytest_addoption(parser):
    parser.getgroup("nbval").addoption(
        "--nbval-keep", metavar="DIR", default=None,
        help="save every notebook that nbval executes completely and without failure to DIR/<path relative to "
             "the rootdir>, with the outputs a normal (nbclient) execution gives (plugin tests/nbval_keep.py)")
    parser.getgroup("nbval").addoption(
        "--nbval-output-timeout", metavar="SECONDS", type=float, default=None,
        help="seconds nbval waits for a cell's outputs once the kernel has replied (nbval's own is 5)")


def pytest_configure(config):
    where = config.getoption("--nbval-keep", None)
    if where and not (config.getoption("--nbval", False) or config.getoption("--nbval-lax", False)):
        raise pytest.UsageError("--nbval-keep needs --nbval or --nbval-lax")
    wait = config.getoption("--nbval-output-timeout", None)
    if wait is not None:
        if wait <= 0:
            raise pytest.UsageError(f"--nbval-output-timeout must be a positive number of seconds, not {wait:g}")
        config.pluginmanager.register(OutputWait(wait), "nbval-output-wait")
    if where:
        _start_kernels_as_nbclient_does()
        config.pluginmanager.register(Keeper(config, Path(where)), "nbval-keeper")


def _start_kernels_as_nbclient_does() -> None:
    """nbclient starts an IPython kernel with its history in memory (``--HistoryManager.hist_file=:memory:``);
    nbval with none, so that kernel's history (which store_history=True now writes) would go to the
    profile's sqlite file, shared with every other kernel on the machine."""
    import nbval.kernel
    from nbclient import NotebookClient

    start = nbval.kernel.start_new_kernel
    if getattr(start, "nbval_keep", False):
        return
    hist = NotebookClient(nbformat.v4.new_notebook()).ipython_hist_file
    ipython = {"python", "python2", "python3", nbval.kernel.CURRENT_ENV_KERNEL_NAME}  # KernelManager.ipykernel

    def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
        if hist and kernel_name in ipython:
            kwargs.setdefault("extra_arguments", [f"--HistoryManager.hist_file={hist}"])
        return start(startup_timeout=startup_timeout, kernel_name=kernel_name, **kwargs)

    start_new_kernel.nbval_keep = True
    nbval.kernel.start_new_kernel = start_new_kernel


class _Cell:
    """The one code cell being executed: its kernel request id and where its outputs go."""

    def __init__(self, msg_id: str, index: int):
        self.msg_id, self.index = msg_id, index
        self.reply = None  # the shell execute_reply
        self.idle = False  # iopub status idle seen: nbclient's "cell complete"


class _Run:
    """One notebook under nbval: the copy being filled in and the nbclient that fills it."""

    def __init__(self, collector, out: Path, rel: str):
        self.collector, self.out, self.rel = collector, out, rel
        self.nb = None  # deep copy of nbval's notebook, made when its first cell runs
        self.hash = None
        self.code: list[int] = []  # nbval's cell_num -> index in nb.cells
        self.client = None
        self.current: _Cell | None = None
        self.item = None  # the IPyNbCell whose call is running
        self.passed: set[int] = set()
        self.problem: str | None = None
        self.saved = False

    def fail(self, why: str) -> None:
        self.problem = self.problem or why

    # -- attaching to nbval's kernel -----------------------------------------------------------------
    def attach(self) -> None:
        from nbclient import NotebookClient

        coll = self.collector
        self.nb = copy.deepcopy(coll.nb)  # exactly the cells nbval runs
        self.hash = source_hash(coll.nb)
        self.code = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code"]
        if any(SKIP_TAG in self.nb.cells[i].metadata.get("tags", []) for i in self.code):
            self.fail(f"a cell is tagged {SKIP_TAG!r}: nbclient would skip it, nbval runs it")
        kernel = coll.kernel
        # nbclient's defaults, as jupyter-book's execution uses them, plus its timing record.
        self.client = NotebookClient(self.nb, record_timing=True)
        self.client.kc = kernel.kc
        self.client.reset_execution_trackers()
        # nbclient asks the kernel for language_info before the first cell (myst-nb picks its lexer from it).
        msg_id = kernel.kc.kernel_info()
        while True:
            reply = kernel.kc.get_shell_msg(timeout=60)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        if "language_info" not in reply["content"]:
            self.fail("the kernel's kernel_info reply has no language_info")
        else:
            self.nb.metadata["language_info"] = reply["content"]["language_info"]

        get_message, run = kernel.get_message, self

        def execute_cell_input(cell_input, allow_stdin=None):
            # nbclient sends every code cell with store_history=True (nbval: False) and allow_stdin=False.
            msg_id = kernel.kc.execute(cell_input, store_history=True, allow_stdin=bool(allow_stdin),
                                       stop_on_error=False)
            run.current = None
            item = run.item
            if item is None or run.problem is not None:  # nothing to keep: leave nbval to its check
                return msg_id
            index = run.code[item.cell_num]
            cell = run.nb.cells[index]
            if cell.source != cell_input:
                run.fail(f"Cell {item.cell_num}: nbval ran a different source than the notebook holds")
                return msg_id
            if not cell.source.strip():  # nbclient skips empty cells: no outputs, no count, no timing
                return msg_id
            run.client.code_cells_executed += 1
            cell.outputs = []
            cell.metadata["execution"] = {}
            run.client.clear_before_next_output = False
            run.current = _Cell(msg_id, index)
            return msg_id

        def tee(stream, timeout=None):
            msg = get_message(stream, timeout=timeout)
            cur = run.current
            if cur is not None and msg.get("parent_header", {}).get("msg_id") == cur.msg_id:
                run.observe(stream, msg, cur)
            return msg

        kernel.execute_cell_input = execute_cell_input
        kernel.get_message = tee  # await_reply, await_idle and nbval's output loop all read through it

    def observe(self, stream: str, msg: dict, cur: _Cell) -> None:
        from nbclient.client import timestamp
        from nbclient.exceptions import CellExecutionComplete

        cell = self.nb.cells[cur.index]
        if stream == "shell":
            if msg["msg_type"] == "execute_reply":
                cur.reply = msg
                cell.metadata["execution"]["shell.execute_reply"] = timestamp(msg)
            return
        if cur.idle:
            return
        # nbclient rewrites an update_display_data header in place: give it its own header, so nbval's
        # reading of the message is untouched.
        msg = {**msg, "header": dict(msg["header"])}
        try:
            self.client.process_message(msg, cell, cur.index)
        except CellExecutionComplete:
            cur.idle = True

    def cell_done(self, item) -> None:
        """After nbval's call of ``item``: close its cell as nbclient's execute_cell does."""
        cur, self.current = self.current, None
        if cur is None:
            return
        cell = self.nb.cells[cur.index]
        if not (cur.idle and cur.reply is not None):
            self.fail(f"Cell {item.cell_num}: its execution did not complete")
            return
        cell.execution_count = self.client.code_cells_executed

    # -- saving -----------------------------------------------------------------------------------------
    def complete(self) -> bool:
        return self.nb is not None and self.problem is None and self.passed == set(range(len(self.code)))

    def save(self) -> None:
        self.client.set_widgets_metadata()
        self.nb.metadata[META_KEY] = {"source": self.rel, "source_sha256": self.hash}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".partial")
        nbformat.write(self.nb, str(tmp))
        os.replace(tmp, self.out)
        self.saved = True


class OutputWait:
    """Sets nbval's wait for a cell's outputs (``IPyNbCell.output_timeout``) on every collected cell."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def pytest_itemcollected(self, item):
        if hasattr(item, "output_timeout"):
            item.output_timeout = self.seconds


class Keeper:
    def __init__(self, config, where: Path):
        self.config = config
        self.where = where if where.is_absolute() else Path(config.invocation_params.dir) / where
        self.runs: dict = {}  # IPyNbFile -> _Run

    def _run(self, item):
        from nbval.plugin import IPyNbCell

        if not isinstance(item, IPyNbCell):
            return None
        coll = item.parent
        if coll not in self.runs:
            path = Path(str(coll.fspath)).resolve()
            try:
                rel = path.relative_to(Path(self.config.rootpath).resolve()).as_posix()
            except ValueError:
                rel = path.name
            self.runs[coll] = _Run(coll, self.where / rel, rel)
        return self.runs[coll]

    def pytest_itemcollected(self, item):
        self._run(item)

    def pytest_collection_finish(self, session):
        if self.config.option.collectonly:
            return
        selected = {}
        for item in session.items:
            run = self.runs.get(getattr(item, "parent", None))
            if run is not None:
                selected.setdefault(run, set()).add(item.cell_num)
        for run in self.runs.values():
            if run.out.exists() or run.out.is_symlink():
                run.out.unlink()  # never leave an earlier run's copy behind for a notebook run again
            n_code = sum(c.cell_type == "code" for c in run.collector.nb.cells)
            if selected.get(run, set()) != set(range(n_code)):
                run.fail("not every cell was selected")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        run = self._run(item)
        if run is not None:
            if run.nb is None and run.problem is None:
                try:
                    run.attach()
                except Exception as e:  # never break nbval's own check
                    run.fail(f"could not attach to the kernel: {e!r}")
            run.item = item
        try:
            return (yield)
        finally:
            if run is not None:
                if run.client is not None:
                    run.cell_done(item)
                run.item = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        rep = yield
        run = self._run(item)
        if run is None:
            return rep
        if rep.when == "call" and rep.passed:
            run.passed.add(item.cell_num)
        elif rep.failed or rep.skipped:
            run.fail(f"{item.name} {'failed' if rep.failed else 'did not run'} ({rep.when})")
        if rep.when == "call" and run.complete() and not run.saved:
            try:
                run.save()
            except Exception as e:
                run.fail(f"saving failed: {e!r}")
        return rep

    def pytest_terminal_summary(self, terminalreporter):
        if not self.runs or self.config.option.collectonly:
            return
        saved = [r for r in self.runs.values() if r.saved]
        tr = terminalreporter
        tr.write_line(f"nbval-keep: saved {len(saved)} of {len(self.runs)} executed notebooks under {self.where}")
        for r in self.runs.values():
            if not r.saved:
                tr.write_line(f"nbval-keep: NOT saved {r.rel}: {r.problem or 'incomplete'}")
