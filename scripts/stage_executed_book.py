"""Stage the book with already-executed chapters, for a build with execution off.

``make test`` runs every chapter once, under nbval, and the nbval_keep plugin (tests/nbval_keep.py) saves
the executed copies under ``_build/executed``. This script lays out a copy of the book's source in a
staging folder: ``_config.yml`` (with ``execute_notebooks: off``), ``_toc.yml``, the folders that hold the
table of contents' documents (``book/``) with every chapter notebook replaced by its executed copy, and
links to what the configuration serves from elsewhere (``vendor/``). Then::

    jupyter-book build _build/stage --path-output . --builder html -W -n --keep-going --all

renders ``_build/html`` exactly from those executions (``make book-from-executed`` does both steps).

It refuses, naming the notebook, when an executed copy is missing, lacks the plugin's record, or was made
from a different version of its notebook (the hash of the notebook's cells, not file times, is compared),
or when a code cell was never executed. After the build, ``--restore-sources`` puts the clean source
notebooks back into ``_build/html/_sources`` (the "download .ipynb" button), where Sphinx copied the
executed ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from nbval_keep import META_KEY, source_hash  # noqa: E402  (one definition of the hash, shared)


class StageError(Exception):
    pass


def toc_docs(toc: dict) -> list[str]:
    """Every document the table of contents names (root, parts, chapters, sections, at any depth)."""
    docs = [toc["root"]] if "root" in toc else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                docs.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [d[: -len(Path(d).suffix)] if Path(d).suffix in (".ipynb", ".md") else d for d in docs]


def check_executed(root: Path, executed: Path, docs: list[str]) -> dict[str, nbformat.NotebookNode]:
    """The executed copy of every notebook in ``docs``, checked against its source; StageError otherwise."""
    found, problems = {}, []
    for doc in docs:
        src = root / f"{doc}.ipynb"
        if not src.exists():
            continue
        copy_path = executed / f"{doc}.ipynb"
        where = os.path.relpath(copy_path, Path.cwd())
        if not copy_path.exists():
            problems.append(f"{doc}.ipynb: no executed copy at {where}")
            continue
        nb = nbformat.read(str(copy_path), as_version=4)
        record = nb.metadata.get(META_KEY) or {}
        want = source_hash(nbformat.read(str(src), as_version=4))
        if "source_sha256" not in record:
            problems.append(f"{doc}.ipynb: {where} has no metadata.{META_KEY} (not saved by tests/nbval_keep.py)")
        elif record["source_sha256"] != want:
            problems.append(f"{doc}.ipynb has changed since {where} was executed (source hash "
                            f"{want[:12]}, executed copy made from {record['source_sha256'][:12]})")
        else:
            unrun = [i for i, c in enumerate(nb.cells)
                     if c.cell_type == "code" and c.source.strip() and c.get("execution_count") is None]
            if unrun:
                problems.append(f"{doc}.ipynb: {where} has code cells that never ran (cells {unrun})")
            else:
                found[doc] = nb
    if problems:
        raise StageError("cannot build the book from executed notebooks:\n  " + "\n  ".join(problems)
                         + "\nRun the notebooks again (make test-notebooks saves them), or build with "
                           "execution (make book).")
    return found


def _top(path: str) -> str:
    return Path(path).parts[0]


def stage(root: Path, executed: Path, dest: Path) -> Path:
    """Lay out the staged book in ``dest`` (emptied first); return ``dest``."""
    root, executed, dest = root.resolve(), executed.resolve(), dest.resolve()
    config = yaml.safe_load((root / "_config.yml").read_text())
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    docs = toc_docs(toc)
    notebooks = check_executed(root, executed, docs)

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    header = "# Staged by scripts/stage_executed_book.py: the chapters are executed copies, execution is off.\n"
    (dest / "_config.yml").write_text(header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    shutil.copy2(root / "_toc.yml", dest / "_toc.yml")

    # The folders holding the documents are copied (Sphinx reads them); anything else the configuration
    # names (static files, extensions, bibliographies) is linked from the repository.
    copied = sorted({_top(d) for d in docs if len(Path(d).parts) > 1})
    for name in copied:
        shutil.copytree(root / name, dest / name, symlinks=False,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for doc in docs:
        if len(Path(doc).parts) == 1:
            for suffix in (".md", ".ipynb"):
                if (root / f"{doc}{suffix}").exists():
                    shutil.copy2(root / f"{doc}{suffix}", dest / f"{doc}{suffix}")
    sphinx_cfg = (config.get("sphinx") or {}).get("config") or {}
    named = list(sphinx_cfg.get("html_static_path", []) or []) + list(config.get("bibtex_bibfiles", []) or [])
    named += list(((config.get("sphinx") or {}).get("local_extensions") or {}).values())
    if (root / "t2i_lib").is_dir():
        named.append("t2i_lib")  # the library whose source the chapters include ({literalinclude})
    for path in named:
        top = _top(str(path))
        if top in copied or (dest / top).exists():
            continue
        if not (root / top).exists():
            raise StageError(f"_config.yml names {path}, which does not exist (for vendor/: make vendor)")
        os.symlink(os.path.relpath(root / top, dest), dest / top)

    for doc, nb in notebooks.items():
        nb.metadata.pop(META_KEY, None)  # the staged notebook is what a normal execution leaves
        nbformat.write(nb, str(dest / f"{doc}.ipynb"))
    return dest


def restore_sources(root: Path, html: Path) -> int:
    """Put the clean source notebooks back where Sphinx copied the staged (executed) ones."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    n = 0
    for doc in toc_docs(toc):
        src, copied = root / f"{doc}.ipynb", html / "_sources" / f"{doc}.ipynb"
        if src.exists() and copied.exists():
            shutil.copyfile(src, copied)
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the book's source (default: this repository)")
    ap.add_argument("--executed", type=Path, default=Path("_build/executed"), help="the executed copies")
    ap.add_argument("--stage", type=Path, default=Path("_build/stage"), help="where to stage (emptied)")
    ap.add_argument("--restore-sources", type=Path, metavar="HTML",
                    help="instead: copy the clean notebooks into HTML/_sources after a staged build")
    args = ap.parse_args(argv)
    try:
        if args.restore_sources:
            n = restore_sources(args.root.resolve(), args.restore_sources)
            print(f"restored {n} clean source notebooks under {args.restore_sources}/_sources")
            return 0
        dest = stage(args.root, args.executed, args.stage)
    except StageError as e:
        print(f"stage_executed_book: {e}", file=sys.stderr)
        return 1
    print(f"staged the book with executed chapters in {os.path.relpath(dest, Path.cwd())} (execution off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
