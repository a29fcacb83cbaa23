# t2i-book: two commands set everything up on a fresh machine.
#   make book   create .venv, install pinned packages, run every chapter (quick profile), build the HTML
#   make test   the same setup, then library tests, the colab rehearsal, nbval over book/, and the browser
#               test of the book
# Helpers: make serve (serve the built book on 127.0.0.1), make test-fast (library tests only),
#          make constraints (re-pin constraints.txt from the current .venv).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.t2i-installed
PORT ?= 8000
# Book builds and notebook tests always run the quick profile, on the CPU, offline.
QUICK := T2I_PROFILE=quick T2I_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CUDA_VISIBLE_DEVICES=

.PHONY: book test test-fast test-lib test-colab test-notebooks test-browser serve venv vendor chromium constraints clean

venv: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[text,book,test]"
	@touch $@

vendor: vendor/.vendored-v2
vendor/.vendored-v2: scripts/vendor_assets.sh
	bash scripts/vendor_assets.sh

book: $(STAMP) vendor
	@start=$$(date +%s); \
	$(QUICK) T2I_STATIC_WIDGETS=1 $(BIN)/jupyter-book build . --builder html -W -n --keep-going; \
	echo "Book built in $$(( $$(date +%s) - start )) s: open _build/html/index.html, or run 'make serve'."

serve:
	@test -f _build/html/index.html || { echo "No built book: run 'make book' first."; exit 1; }
	@echo "Serving the book at http://127.0.0.1:$(PORT)/ (Ctrl-C to stop)"
	$(BIN)/python -m http.server $(PORT) --bind 127.0.0.1 --directory _build/html

# Debian's Chromium for the browser test (installed only when missing; needs root, as on CI).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" != 0 ]; then echo "Install Debian's chromium package (sudo apt-get install chromium) for the browser test."; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test-lib: $(STAMP)
	$(QUICK) $(BIN)/python -m pytest tests -q -p no:cacheprovider --ignore=tests/test_book_browser.py \
	  --ignore=tests/test_colab_rehearsal.py

# Every chapter's colab-profile code, on the CPU, offline, on small files in the real formats
# (tests/test_colab_rehearsal.py says what is stood in for).
test-colab: $(STAMP)
	$(BIN)/python -m pytest tests/test_colab_rehearsal.py -q -p no:cacheprovider -s

test-notebooks: $(STAMP)
	$(QUICK) $(BIN)/python -m pytest --nbval-lax book -q -p no:cacheprovider

test-browser: $(STAMP) chromium
	$(BIN)/python -m pytest tests/test_book_browser.py -q -p no:cacheprovider

test-fast: test-lib

test: $(STAMP) vendor chromium
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-lib; \
	$(MAKE) --no-print-directory test-colab; \
	$(MAKE) --no-print-directory test-notebooks; \
	$(MAKE) --no-print-directory book; \
	$(MAKE) --no-print-directory test-browser; \
	echo "make test passed in $$(( $$(date +%s) - start )) s (after setup)."

constraints: $(STAMP)
	@{ head -n 2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf _build vendor .pytest_cache
