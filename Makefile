# The course in two commands:  make lab  (open the course)  and  make test  (run the tests).
# Everything else is for maintainers and teachers.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BENCH_VENV  := .venv-bench
BENCH_PY    := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
PEER_ARGS ?=
KERNEL := dmlib-course
LAB_ARGS ?=
# make lab QUICK=1: every kernel the lab starts runs the quick setting (slow machines)
QUICK ?=
# Jupyter refuses to run as root without --allow-root (containers, cloud notebooks)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
BROWSER_STAMP := $(VENV)/.installed-browser
CH ?=
JOBS ?= 2
SUBMISSIONS ?=

.PHONY: lab test test-browser unit pairs execute sync student grade bench bench-peer clean help

help:
	@echo "make lab      open the course in JupyterLab (creates .venv on first use)"
	@echo "make lab QUICK=1   the same in quick mode (smaller training: for slow machines)"
	@echo "make test     unit tests, jupytext pair check, every chapter under nbval (quick mode)"
	@echo "make test-browser  the JupyterLab walkthrough in headless Chromium (screenshots in build/browser/)"
	@echo "make execute  re-run every chapter (or CH=name) in full mode, store outputs in the .ipynb"
	@echo "make sync     write each chapter's .py (the source) into its .ipynb, keeping outputs"
	@echo "make student  student versions of all chapters in build/student/"
	@echo "make grade SUBMISSIONS=dir/   grade submitted notebooks (dir/<student>/<chapter>.ipynb)"
	@echo "make bench    run the benchmarks in bench/ (results in bench/results/)"
	@echo "make bench-peer  our MNIST U-Net vs diffusers' UNet2DModel (own env .venv-bench; ~45 min)"

# One-time set-up: a virtual environment with the pinned requirements, dmlib in editable
# mode and the course kernel. Re-runs when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# setuptools warns about every editable install ("Please be careful with folders ..."): noise here
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (diffusion course)"
	touch $(STAMP)

lab: $(STAMP)
	@echo "Starting JupyterLab on chapters/ in $(if $(QUICK),quick,full) mode. Open the URL it prints below"
	@echo "(http://127.0.0.1:8888/lab?token=...); Ctrl+C twice stops it."
	$(if $(QUICK),DMLIB_QUICK=1 ,)$(VENV)/bin/jupyter lab --notebook-dir=chapters $(ALLOW_ROOT) $(LAB_ARGS)

# make test = pair check + unit tests + every chapter under nbval, all in quick mode.
# JOBS pytest workers (xdist); --dist loadscope keeps each notebook's cells (and each test module)
# on one worker. One BLAS/OpenMP thread per worker: with JOBS workers on JOBS cores, more threads
# oversubscribe the cores and small torch ops slow down by orders of magnitude.
test: $(STAMP) pairs
	DMLIB_QUICK=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest tests chapters --nbval-lax --nbval-current-env \
	    --nbval-cell-timeout=600 --nbval-sanitize-with chapters/nbval_sanitize.cfg \
	    -p no:cacheprovider -n $(JOBS) --dist loadscope

# The walkthrough as a student meets it: JupyterLab in headless Chromium (the system package;
# Playwright drives it, from tests/browser/requirements.txt), every chapter opened, run in
# quick mode, saved, a widget moved, the animation played, an exercise checked.
$(BROWSER_STAMP): $(STAMP) tests/browser/requirements.txt
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -r tests/browser/requirements.txt
	touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	$(PY) -m pytest tests/browser/walkthrough.py -p no:cacheprovider -v --durations=0

unit: $(STAMP)
	$(PY) -m pytest tests -p no:cacheprovider

pairs: $(STAMP)
	$(PY) -m dmlib.course.tools.pairs check chapters

sync: $(STAMP)
	$(PY) -m dmlib.course.tools.pairs sync chapters

# Full mode (DMLIB_QUICK unset): the outputs students see on the web.
execute: $(STAMP) sync
	$(PY) -m dmlib.course.tools.pairs execute chapters $(CH)

student: $(STAMP)
	$(PY) -m dmlib.course.tools.student chapters build/student

# Autograder: every submitted notebook in a fresh kernel with a time limit; reports in build/grades/.
grade: $(STAMP)
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=path/to/submissions/"; exit 2; }
	$(PY) -m dmlib.course.grade $(SUBMISSIONS) --out build/grades

bench: $(STAMP)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

# The peer benchmark needs diffusers, which the course does not: a separate environment with
# requirements.txt plus bench/requirements-bench.txt. PEER_ARGS passes options to the script
# (e.g. PEER_ARGS="--which ours --budget-seconds 300").
$(BENCH_STAMP): requirements.txt bench/requirements-bench.txt pyproject.toml
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --upgrade --quiet pip
	$(BENCH_PY) -m pip install --quiet -r requirements.txt -r bench/requirements-bench.txt
	$(BENCH_PY) -m pip install --quiet --no-deps -e .
	touch $(BENCH_STAMP)

bench-peer: $(BENCH_STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BENCH_PY) bench/bench_mnist_peer.py $(PEER_ARGS)

clean:
	rm -rf build .pytest_cache
