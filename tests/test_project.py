"""Project-level checks: packaging agrees with itself, and every chapter notebook is committed the way
the book and Colab expect (clean, GPU metadata, the Colab install cell pointing at _config.yml's repo)."""

from __future__ import annotations

import json
import math
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


def test_the_intro_names_the_sidebars_parts():
    """The sidebar's part captions are the parts the intro describes, word for word, with their chapters."""
    intro = (ROOT / "book" / "intro.md").read_text()
    for part in TOC["parts"]:
        caption = part["caption"]
        assert f"**{caption}**" in intro, f"book/intro.md does not describe the sidebar's part {caption!r}"
        if not all(re.match(r"\d\d_", Path(c["file"]).name) for c in part["chapters"]):
            continue  # the appendix
        numbers = sorted(int(Path(c["file"]).name[:2]) for c in part["chapters"])
        span = f"Chapters {numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else f"Chapter {numbers[0]}"
        assert f"**{caption}**, {span}" in intro, f"book/intro.md should say that {caption!r} is {span}"


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


# --- Numbers in the prose come from the run -------------------------------------------------------------
#
# A number in a chapter's text that reports what the run measured must be pasted in by myst-nb's glue
# ({glue:text}`name:fmt`, recorded by ``t2i_lib.viz.glue.glue`` in a code cell) or stated as a range that a
# code cell of the same notebook asserts (``assert lo <= x <= hi, "..."``), so that the build fails when the
# text stops being true. The rule that finds such numbers, in the markdown cells outside math, code spans,
# roles (a glued value is a role), links and fenced blocks:
#
# - a number (``18``, ``0.013``, ``1,000``) or a range (``55-65``, ``9 to 26``) is a *result-like number* when
#   it is followed by a unit of measurement (``%``, ``dB``, ``nats``, ``bits``, ``s``, ``seconds``, ``min``,
#   ``minutes``, ``hours``, ``GFLOP``, an ``x`` as in ``169x``, ``times``) or preceded by a hedge or a
#   measured quantity (``about``, ``around``, ``roughly``, ``approximately``, ``~``, ``nearly``, ``near``,
#   ``close to``, ``some``, ``a factor of``, ``perplexity [of|is] [only] [about|around]``);
# - it passes if every value in it (and, for a percentage, the value / 100) is a numeric literal of one
#   ``assert`` statement in a code cell of the notebook;
# - a sentence (a table: the whole table) that says it is *estimated* (the word "estimated") is a projection for
#   hardware the run does not have, not a result, and is skipped;
# - anything else that the rule catches but is not a result of the run (a threshold the chapter defines, a
#   published number it quotes, a file size) is listed in NOT_RESULTS below with the reason.

_NUM = r"[−-]?\d[\d,]*(?:\.\d+)?"
_RANGE = rf"{_NUM}(?:\s*(?:-|–|to|and)\s*{_NUM})?"
_UNIT = (r"(?:\s?%|\s?percent\b|\s?dB\b|\s?nats?\b|\s?bits?\b|\s?s\b|\s?seconds?\b|\s?min\b|\s?minutes?\b"
         r"|\s?hours?\b|\s?GFLOP\b|x(?![\d\w])|\s?times\b)")
_HEDGE = (r"(?:\babout|\baround|\broughly|\bapproximately|~|\bnearly|\bnear|\bclose to|\bsome|\ba factor of"
          r"|\bperplexity(?: of| is)?(?: only)?(?: about| around)?)")
ESTIMATE = re.compile(r"\bestimated\b", re.I)  # not "estimate": Chapter 3's gradient estimates are results
RESULT_NUMBER = re.compile(rf"(?:{_HEDGE}\s*(?P<hedged>{_RANGE}))|(?P<measured>{_RANGE})(?P<unit>{_UNIT})")

# Flagged phrases that are not results of the run, per chapter: phrase (as the stripped text reads) -> why.
NOT_RESULTS: dict[str, dict[str, str]] = {
    "01_autoencoders": {"more than 90% on one digit": "a threshold the chapter defines"},
    "02_vae_elbo": {
        "between 80 and 100 nats": "the range the binarised-MNIST literature reports",
        "even 0.1 nat": "the active-unit criterion, a threshold the chapter defines",
        "about 100 MB": "the size of torchvision's ImageNet weights, a file",
    },
    "03_reparameterization": {
        "99% interval": "the confidence level of the intervals the chapter draws",
        "at 99% each": "the confidence level of the intervals the chapter draws",
        "99 times in 100": "the meaning of a 99% interval",
    },
    "04_vqvae": {
        "up to 2% of the pixels": "the scorer's MAX_SPECK_FRACTION (test_scorer_thresholds_are_the_prose's)",
        "up to 15% (the blur": "the scorer's MAX_UNKNOWN_FRACTION (test_scorer_thresholds_are_the_prose's)",
        "9 bits each": "log2 512, a definition",
        "about 16 times more": "the Sonnet example's weighting, 1 / data_variance of CIFAR-10 (its code)",
        "about 0.056": "the Sonnet example's published number",
        "perplexity of about 326": "the Sonnet example's published number",
        "89-91% of the reconstructions": "a recorded run with another budget (t2i_lib/recipes/ch04.py)",
        "72-75% valid": "a recorded run with another budget (t2i_lib/recipes/ch04.py)",
        "about 170 MB": "the size of the ImageNet weights, a file",
        "4-6 times on two": "measured by benchmarks/fid_stream.py, which the sentence cites",
        "64 times for an": "the number of positions of an 8 x 8 map, a definition",
    },
    "05_image_tokens": {
        "factor of 192": "196,608 / 1,024, the sizes the chapter sets",
        "13 bits": "ceil(log2 8,192), a definition",
        "~0.16 MB each": "the size of a COCO image file",
    },
}


def _prose(md: str) -> str:
    """A markdown cell's text with what cannot hold a typed result removed: fenced blocks, math, roles
    (``{glue:text}`x```, ``{cite:p}`x```), code spans, links' targets and HTML comments."""
    md = re.sub(r":::.*?:::|<!--.*?-->", " ", prose_outside_fences(md), flags=re.S)
    md = re.sub(r"\$\$.*?\$\$", " MATH ", md, flags=re.S)
    md = re.sub(r"\$[^$\n]+\$", " MATH ", md)
    md = re.sub(r"\{[\w:.-]+\}`[^`]*`", " ROLE ", md)
    md = re.sub(r"`[^`]*`", " CODE ", md)
    return re.sub(r"\]\([^)]*\)", "]", md)


def _units(text: str) -> list[str]:
    """Sentences, and tables as one unit each, of a cell's stripped text (whitespace normalised)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        if block.lstrip().startswith("|"):
            out.append(" ".join(block.split()))
            continue
        for item in re.split(r"\n\s*(?:[-*]|\d+\.)\s+", "\n" + block):
            out += [" ".join(s.split()) for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z*(])", item) if s.strip()]
    return out


def _values(phrase: str) -> list[float]:
    return [abs(float(v.replace(",", "").replace("−", "-"))) for v in re.findall(_NUM, phrase)]


def asserted_numbers(code_sources: list[str]) -> list[set[float]]:
    """The numeric literals of each ``assert`` statement of the code cells (IPython magics skipped)."""
    import ast

    found = []
    for src in code_sources:
        src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                found.append({abs(float(c.value)) for c in ast.walk(node.test)
                              if isinstance(c, ast.Constant) and isinstance(c.value, (int, float))
                              and not isinstance(c.value, bool)})
    return found


def unbacked_numbers(markdown: list[str], code: list[str], allowed: dict[str, str] | None = None) -> list[str]:
    """The result-like numbers of the prose that are neither glued, nor asserted, nor allowed (see above)."""
    asserts = asserted_numbers(code)
    allowed = allowed or {}
    bad = []
    for md in markdown:
        for unit in _units(_prose(md)):
            if ESTIMATE.search(unit):
                continue
            for m in RESULT_NUMBER.finditer(unit):
                phrase = m.group(0).strip()
                if any(phrase in k and k in unit for k in allowed):
                    continue
                vals = _values(m.group("hedged") or m.group("measured"))
                pct = "%" in (m.group("unit") or "") or "percent" in (m.group("unit") or "")
                options = [vals, [v / 100 for v in vals]] if pct else [vals]
                if any(all(any(math.isclose(v, a, rel_tol=1e-9, abs_tol=1e-12) for a in nums) for v in opt)
                       for nums in asserts for opt in options):
                    continue
                bad.append(f"{phrase!r} in: {unit[:160]}")
    return bad


def test_the_prose_number_rule():
    flagged = unbacked_numbers(["after 300 updates it uses 55-65% of its codes, with a perplexity around 18."], [])
    assert len(flagged) == 2 and "55-65%" in flagged[0] and "perplexity around 18" in flagged[1]
    assert unbacked_numbers(["it uses {glue:text}`usage_pct`% of its codes, perplexity {glue:text}`ppl:.1f`."], []) == []
    asserted = ["u = 0.6\nassert 0.55 <= u <= 0.65, 'the plain codebook uses 55-65% of its codes'"]
    assert unbacked_numbers(["it uses 55-65% of its codes."], asserted) == []
    assert unbacked_numbers(["it uses 50-65% of its codes."], asserted) != []  # another range: not backed
    assert unbacked_numbers(["it is 17 dB."], ["print(17)"]) != []  # printed is not asserted
    # Not results: math, code, definitions the rule does not catch, estimates, and the allow-list.
    assert unbacked_numbers(["An $8 \\times 8$ grid of 64 tokens, `K = 512`, Chapter 4 (2021), §3.1.2."], []) == []
    assert unbacked_numbers(["On a T4 it takes 4-6 minutes (estimated)."], []) == []
    assert unbacked_numbers(["Both estimators differ by about 4 nats."], []) != []  # an estimator is not estimated
    assert unbacked_numbers(["One estimate has 19 times the variance of another."], []) != []
    assert unbacked_numbers(["a download of about 170 MB"], [], {"about 170 MB": "a file size"}) == []


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_every_result_in_the_prose_comes_from_the_run(nb_path):
    nb = json.loads(nb_path.read_text())
    markdown = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    bad = unbacked_numbers(markdown, code, NOT_RESULTS.get(nb_path.stem, {}))
    assert not bad, (f"{nb_path.name}: numbers in the text that look like results of the run but are neither "
                     f"glued ({{glue:text}}`name`) nor asserted in a code cell (or listed in NOT_RESULTS with a "
                     f"reason):\n" + "\n".join(bad))


MAX_CELL_LINES = 25


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_code_cells_are_short(nb_path):
    """Orchestration lives in t2i_lib; a chapter's code cell shows one step, in at most 25 lines."""
    nb = json.loads(nb_path.read_text())
    long = [(c["id"], n) for c in nb["cells"] if c["cell_type"] == "code"
            and (n := len("".join(c["source"]).splitlines())) > MAX_CELL_LINES]
    assert not long, f"{nb_path.name}: code cells over {MAX_CELL_LINES} lines (cell id, lines): {long}"


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_every_glued_name_is_glued_by_a_code_cell(nb_path):
    """A {glue:text}`name` with no ``glue("name", ...)`` behind it fails the build (-W) only after a full run."""
    nb = json.loads(nb_path.read_text())
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    used = set(re.findall(r"\{glue(?::\w+)?\}`(\w+)", md))
    names = set(re.findall(r"\bglue\(\"(\w+)\"", code))
    patterns = [re.compile("^" + re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(p)) + "$")
                for p in re.findall(r"\bglue\(f\"([^\"]+)\"", code)]
    missing = sorted(u for u in used if u not in names and not any(p.match(u) for p in patterns))
    assert not missing, f"{nb_path.name}: the prose pastes {missing}, which no code cell glues"


# --- the code on the page ----------------------------------------------------------------------------------

LITERALINCLUDE = re.compile(r"```\{literalinclude\}\s+(?P<path>\S+)\n(?P<options>(?::[^\n]*\n)*)```")


def literalincludes(nb_path: Path) -> list[tuple[Path, dict[str, str]]]:
    """Every {literalinclude} of a chapter's markdown: (the included file, its options)."""
    nb = json.loads(nb_path.read_text())
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for m in LITERALINCLUDE.finditer("".join(cell["source"])):
            options = dict(re.match(r":([\w-]+):\s*(.*)", line).groups()
                           for line in m.group("options").splitlines() if line.strip())
            found.append(((nb_path.parent / m.group("path")).resolve(), options))
    return found


def python_object_source(path: Path, dotted: str) -> str | None:
    """The source of a top-level function or class, or a method (``Class.method``), as Sphinx's pyobject
    option finds it; None when there is none of that name."""
    import ast

    tree = ast.parse(path.read_text())
    body, node = tree.body, None
    for part in dotted.split("."):
        node = next((n for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return ast.get_source_segment(path.read_text(), node)


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_each_chapter_shows_its_core_code_from_the_library(nb_path):
    """The page includes the code it teaches from t2i_lib itself (never a copy). A renamed or moved object,
    or a start/end line that no longer exists, fails here (and fails the book's -W build)."""
    includes = literalincludes(nb_path)
    assert includes, f"{nb_path.name} shows none of its library code ({{literalinclude}} with :pyobject:)"
    for path, options in includes:
        assert path.is_file() and ROOT / "t2i_lib" in path.parents, f"{nb_path.name}: {path} is not in t2i_lib"
        assert "pyobject" in options, f"{nb_path.name}: include {path.name} by :pyobject:, so a rename fails"
        src = python_object_source(path, options["pyobject"])
        assert src is not None, f"{nb_path.name}: {options['pyobject']} is no longer defined in {path.name}"
        for key in ("start-at", "end-at", "start-after", "end-before"):
            if key in options:
                assert options[key] in src, f"{nb_path.name}: {options['pyobject']} has no line {options[key]!r}"
        shown = len(src.splitlines())
        assert shown <= 60, f"{nb_path.name}: {options['pyobject']} is {shown} lines: show a part (:start-at:)"


def test_run_times_have_one_source():
    """Each chapter's banner, book/intro.md's chapter map and README.md's table show t2i_lib.recipes.RUN_MINUTES."""
    from t2i_lib.recipes import RUN_MINUTES

    intro = (ROOT / "book" / "intro.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert set(RUN_MINUTES) == {f"ch{p.name[:2]}" for p in chapter_notebooks()}
    for nb_path in chapter_notebooks():
        key = f"ch{nb_path.name[:2]}"
        quick, colab = RUN_MINUTES[key]["quick"], RUN_MINUTES[key]["colab"]
        setup_cell = next("".join(c["source"]) for c in json.loads(nb_path.read_text())["cells"]
                          if "setup(" in "".join(c["source"]))
        assert f'expected_minutes=run_minutes("{key}")' in setup_cell, f"{nb_path.name}: banner times not from RUN_MINUTES"
        for where, text, link in (("book/intro.md", intro, f"({nb_path.name})"),
                                  ("README.md", readme, f"(book/{nb_path.name})")):
            row = next((line for line in text.splitlines() if line.startswith("| ") and link in line), None)
            assert row is not None, f"{where} has no table row for {nb_path.name}"
            assert f"| about {quick} min | about {colab} min |" in row, \
                f"{where}: {nb_path.name}'s row should give 'about {quick} min' and 'about {colab} min' (RUN_MINUTES)"


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_figures_are_numbered_captioned_and_referenced(nb_path):
    """Every figure cell carries myst-nb figure metadata (a caption and a name, so the book numbers it), sits
    alone in its cell (so the figure wraps the plot and nothing else), and the prose refers to it by name."""
    nb = json.loads(nb_path.read_text())
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    figures = [c for c in nb["cells"] if c["cell_type"] == "code" and c["metadata"].get("mystnb", {}).get("figure")]
    assert figures, f"{nb_path.name} has no captioned figure"
    plot_calls = re.compile(r"^(?:display\()?(?:show_\w+|plot_\w+)\(|\.plot\(|plt\.show\(\)", re.M)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and plot_calls.search("".join(cell["source"])):
            assert cell["metadata"].get("mystnb", {}).get("figure"), \
                f"{nb_path.name}: a figure without a caption (cell {cell['id']}): give it mystnb.figure metadata"
    names = []
    for cell in figures:
        fig = cell["metadata"]["mystnb"]["figure"]
        src = "".join(cell["source"])
        assert fig.get("caption") and fig.get("name", "").startswith(f"fig-ch{int(nb_path.name[:2])}-"), fig
        assert "glue(" not in src and "train(" not in src, \
            f"{nb_path.name}: {fig['name']}'s cell also glues or trains; its other outputs would join the figure"
        assert f"{{numref}}`{fig['name']}`" in markdown, f"{nb_path.name}: the prose never refers to {fig['name']}"
        names.append(fig["name"])
    assert len(names) == len(set(names)), f"{nb_path.name}: figure names repeat"


MAX_CODE_LINE = 118  # characters: what the book's column shows at a 1,300 px window (book/assets/t2i.css)


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_code_lines_fit_the_column(nb_path):
    """Code is never clipped on the page: every line of a code cell, and of the library code the chapter
    includes, fits the column (the browser test measures the rendered page as well)."""
    nb = json.loads(nb_path.read_text())
    long = [line for c in nb["cells"] if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()
            if len(line) > MAX_CODE_LINE]
    for path, options in literalincludes(nb_path):
        long += [line for line in (python_object_source(path, options["pyobject"]) or "").splitlines()
                 if len(line.strip()) > MAX_CODE_LINE]
    assert not long, f"{nb_path.name}: lines over {MAX_CODE_LINE} characters:\n" + "\n".join(long)


def test_scorer_thresholds_are_the_proses():
    """Chapter 4 states the Shapes scorer's tolerances in words; they are the scorer's own constants."""
    from t2i_lib.data.shapes import scoring

    text = "".join("".join(c["source"]) for c in json.loads((ROOT / "book" / "04_vqvae.ipynb").read_text())["cells"])
    assert f"up to {scoring.MAX_SPECK_FRACTION:.0%} of the pixels" in text
    assert f"up to {scoring.MAX_UNKNOWN_FRACTION:.0%} (the blur" in text


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_each_chapter_has_exercises_with_checks_and_hidden_solutions(nb_path):
    """2-4 exercises a chapter, before its summary: a statement, a cell whose answer the learner sets and whose
    check_exercise call judges it (t2i_lib.experiments.exercises, tested on every intended answer), and the
    solution in a dropdown."""
    from t2i_lib.experiments.exercises import EXERCISES

    cells = json.loads(nb_path.read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    chapter = int(nb_path.name[:2])
    found = []
    for i, src in enumerate(text):
        m = re.match(r"\*\*Exercise (\d+\.\d+) ", src)
        if not m:
            continue
        name = m.group(1)
        found.append(name)
        assert name.startswith(f"{chapter}.") and name in EXERCISES, f"{nb_path.name}: unknown exercise {name}"
        assert cells[i + 1]["cell_type"] == "code" and f'check_exercise("{name}", ' in text[i + 1], \
            f"{nb_path.name}: exercise {name} is not followed by its check cell"
        assert "= None  # your answer" in text[i + 1], f"{nb_path.name}: exercise {name} leaves no answer to set"
        assert text[i + 2].startswith("````{admonition} Solution\n:class: dropdown") and text[i + 2].endswith("````"), \
            f"{nb_path.name}: exercise {name} has no hidden solution after its check"
    summary = next(i for i, s in enumerate(text) if s.startswith("## Summary"))
    exercises = next(i for i, s in enumerate(text) if s.startswith("## Exercises"))
    assert exercises < summary and 2 <= len(found) <= 4, f"{nb_path.name}: exercises {found}"
    assert sorted(found) == sorted(k for k in EXERCISES if k.startswith(f"{chapter}."))


AMERICAN = re.compile(r"\b\w+(?:iz(?:e|es|ed|ing|er|ers)|ization|izations)\b")
NOT_SPELLING = {"size", "sizes", "sized", "resize", "resized", "resizing", "prize", "recognizable"}


def prose_outside_fences(text: str) -> str:
    """The markdown without its fenced blocks (code, directives, and fences nested in directives)."""
    kept, depth = [], 0
    for line in text.splitlines():
        fence = line.lstrip().startswith("```")
        if fence and line.strip().strip("`"):
            depth += 1  # an opening fence: ```python, ```{admonition} ...
        elif fence:
            depth = max(0, depth - 1)
        elif depth == 0:
            kept.append(line)
    return "\n".join(kept)


def test_the_prose_spells_ise():
    """One spelling: British -ise in the prose (tokeniser, quantise, reparameterisation); code names, quoted
    words of the report and file names keep theirs."""
    texts = {"book/intro.md": (ROOT / "book" / "intro.md").read_text()}
    for nb_path in chapter_notebooks():
        cells = json.loads(nb_path.read_text())["cells"]
        texts[nb_path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    bad = {name: sorted({w for w in AMERICAN.findall(re.sub(r"\"[^\"\n]*\"", " ", _prose(text)))  # quotes keep theirs
                         if w.lower() not in NOT_SPELLING})
           for name, text in texts.items()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"-ize spellings in the prose (the book writes -ise): {bad}"


PY_ROLE = re.compile(r"\{py:(mod|class|func|meth|data)\}`(?:[^`<]*<)?([\w.]+)>?`")


@pytest.mark.parametrize("nb_path", chapter_notebooks(), ids=lambda p: p.name)
def test_library_names_in_the_prose_link_to_the_api_reference(nb_path):
    """The prose links the library objects it names to book/api.md (Sphinx roles, resolved by the -n build);
    every target exists, and the API reference documents its module."""
    import importlib

    api = (ROOT / "book" / "api.md").read_text()
    cells = json.loads(nb_path.read_text())["cells"]
    links = [m.groups() for c in cells if c["cell_type"] == "markdown" for m in PY_ROLE.finditer("".join(c["source"]))]
    assert links, f"{nb_path.name} links no library name to the API reference"
    for role, target in links:
        parts = target.split(".")
        module = target if role == "mod" else ".".join(parts[:-1])
        assert f".. automodule:: {module}\n" in api, f"{nb_path.name}: book/api.md does not document {module}"
        if role != "mod":
            assert hasattr(importlib.import_module(module), parts[-1]), f"{nb_path.name}: {target} does not exist"
