# t2i-book: two commands set everything up on a fresh machine.
#   make book   create .venv, install pinned packages, run every chapter (quick profile), build the HTML
#   make test   the same setup, then library tests, the colab rehearsal, nbval over book/ (which saves each
#               executed chapter), the book rendered from those executions, and the browser test of the
#               book: each chapter runs once in the quick profile (and once in the colab rehearsal)
# Helpers: make serve (serve the built book on 127.0.0.1), make test-fast (library tests without the slow
#          ones), make book-from-executed (render the book from the chapters nbval last executed),
#          make constraints (re-pin constraints.txt from the current .venv).
# The test suites use every core (JOBS=auto, one single-threaded process a core); JOBS=0 runs them serially.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.t2i-installed
PORT ?= 8000
# Book builds and notebook tests always run the quick profile, on the CPU, offline.
QUICK := T2I_PROFILE=quick T2I_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUDA_VISIBLE_DEVICES=
# What a chapter sees when it runs for the book: static widget fallbacks, the inline figure backend (the
# one ipykernel picks when MPLBACKEND is unset). make book and the nbval run that feeds the book both use it.
BOOK_ENV := $(QUICK) T2I_STATIC_WIDGETS=1 MPLBACKEND=module://matplotlib_inline.backend_inline
JB_FLAGS := --builder html -W -n --keep-going
# Where nbval saves the executed chapters (tests/nbval_keep.py), and where the book is staged from them.
EXECUTED ?= _build/executed
STAGE := _build/stage
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
# nbval over the chapters, each execution saved for the book (tests/nbval_keep.py).
NBVAL = -p tests.nbval_keep --nbval-lax --nbval-keep=$(EXECUTED) --nbval-cell-timeout=900 --nbval-output-timeout=120
# The test suites run on every core (pytest-xdist), one process a core and one thread a process: the
# chapters' small models gain little from a second thread, and threads that share cores with other jobs
# slow down many times over. JOBS=0 runs them in one process with torch's default threads.
JOBS ?= auto
XDIST = $(if $(filter 0,$(JOBS)),,-n $(JOBS) --dist $(1))
ONE_THREAD := $(if $(filter 0,$(JOBS)),,OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)
# nbval runs a chapter's cells in order in one kernel, so a chapter stays on one worker (--dist loadfile);
# the longest chapters go first, to even out the workers.
CHAPTERS := book/04_vqvae.ipynb book/02_vae_elbo.ipynb $(filter-out book/04_vqvae.ipynb book/02_vae_elbo.ipynb,$(sort $(wildcard book/[0-9][0-9]_*.ipynb)))

.PHONY: book book-from-executed test test-fast test-lib test-colab test-notebooks test-chapters test-browser serve \
	venv vendor chromium constraints clean

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[text,book,test]"
	@touch $@

vendor: vendor/.vendored-v2
vendor/.vendored-v2: scripts/vendor_assets.sh
	bash scripts/vendor_assets.sh

# Every chapter executed by the book build itself (a learner's fresh machine).
book: $(STAMP) vendor
	@start=$$(date +%s); \
	$(BOOK_ENV) $(BIN)/jupyter-book build . $(JB_FLAGS); \
	echo "Book built in $$(( $$(date +%s) - start )) s: open _build/html/index.html, or run 'make serve'."

# The same book, execution off, rendered from the chapters nbval executed (make test-notebooks saves them
# under $(EXECUTED)). Fails, naming the chapter, if an executed copy is missing or older than its notebook.
book-from-executed: $(STAMP) vendor
	@start=$$(date +%s); \
	$(BIN)/python scripts/stage_executed_book.py --executed $(EXECUTED) --stage $(STAGE); \
	$(BOOK_ENV) $(BIN)/jupyter-book build $(STAGE) --path-output . $(JB_FLAGS) --all; \
	$(BIN)/python scripts/stage_executed_book.py --restore-sources _build/html; \
	echo "Book built from $(EXECUTED) in $$(( $$(date +%s) - start )) s: open _build/html/index.html, or run 'make serve'."

serve:
	@test -f _build/html/index.html || { echo "No built book: run 'make book' first."; exit 1; }
	@echo "Serving the book at http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# Debian's Chromium for the browser test (installed only when missing; needs root, as on CI).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "Install Debian's chromium package (sudo apt-get install chromium) for the browser test."; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Suites are picked by marker (pyproject.toml registers slow, rehearsal and browser).
test-lib: $(STAMP)
	$(QUICK) $(ONE_THREAD) $(PYTEST) tests -m "not rehearsal and not browser" $(call XDIST,loadfile)

test-fast: $(STAMP)
	$(QUICK) $(PYTEST) tests -m "not slow and not rehearsal and not browser"

# Every chapter's colab-profile code, on the CPU, offline, on small files in the real formats
# (tests/test_colab_rehearsal.py says what is stood in for).
test-colab: $(STAMP)
	$(ONE_THREAD) $(PYTEST) tests -m rehearsal $(call XDIST,load)

# nbval over every chapter, in the book's environment; tests/nbval_keep.py saves each chapter it executed
# completely and without failure under $(EXECUTED), for book-from-executed.
test-notebooks: $(STAMP)
	$(BOOK_ENV) $(ONE_THREAD) $(PYTEST) $(NBVAL) $(CHAPTERS) $(call XDIST,loadfile)

# The colab rehearsal and nbval in one session, so that the workers share both: what test-colab and
# test-notebooks run. --dist loadfile keeps a chapter's cells on one worker; the rehearsal (one file) goes
# first, beside the longest chapters.
test-chapters: $(STAMP)
	$(BOOK_ENV) $(ONE_THREAD) $(PYTEST) $(NBVAL) tests/test_colab_rehearsal.py $(CHAPTERS) $(call XDIST,loadfile)

test-browser: $(STAMP) chromium
	$(PYTEST) tests -m browser

# Each chapter runs once in the quick profile: nbval executes it, the book is rendered from that execution.
test: $(STAMP) vendor chromium
	@start=$$(date +%s); times=""; \
	phase() { local t=$$(date +%s); $(MAKE) --no-print-directory $$1; times="$$times $$1 $$(( $$(date +%s) - t )) s,"; }; \
	phase test-lib; \
	phase test-chapters; \
	phase book-from-executed; \
	phase test-browser; \
	echo "make test passed in $$(( $$(date +%s) - start )) s (after setup):$${times%,}."

constraints: $(STAMP)
	@{ head -n 2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf _build vendor .pytest_cache
