# prodlab: `make figures` (the main job) and `make test` (the whole suite) set everything up themselves:
# a local virtual environment in .venv, the package with its dev extras, and the Fashion-MNIST data.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: setup data figures test lint lab notebooks clean

# The package's own modules are compiled to bytecode too (seconds; only what changed), for the same reason as below.
setup: $(STAMP) data
	$(BIN)/python -m compileall -q prodlab

# Every install is pinned by requirements.lock (the exact versions that passed), uv included; a new lock reinstalls.
# uv installs the same pinned wheels as pip, downloading them in parallel and keeping a cache: measured here, 67 s
# from an empty cache and 11 s from a warm one, where pip took 132 s (PyTorch's CUDA wheels are 4.4 GB installed).
# --compile-bytecode: the installed modules are compiled once, here (about 27 s more on 2 cores). Machines that set
# PYTHONDONTWRITEBYTECODE (this one does) never write the bytecode themselves, so without it every process compiles
# what it imports: 5 s for PyTorch and matplotlib alone, in each of the test workers, notebook kernels and commands.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock uv
	$(BIN)/uv pip install --quiet --compile-bytecode -c requirements.lock -e ".[dev]" --python $(BIN)/python
	touch $(STAMP)

# Refresh requirements.lock: a fresh venv (not .venv) gets the newest releases pyproject.toml allows, frozen
# (.ci/lock.sh). Then `make test` reinstalls .venv from it; commit the lock if that passes. No other target runs this.
.PHONY: lock
lock:
	PYTHON=$(PYTHON) bash .ci/lock.sh

# Every family's quick recipe trained on the GPU and on the CPU: it must run where asked (not silently on the CPU);
# images/s and what each shipped recipe takes at that speed, to runs/bench_devices_cuda.json. BF16=1 adds autocast.
.PHONY: gpu-check
gpu-check: setup
	PRODLAB_QUICK=1 $(BIN)/python -m prodlab bench devices --device cuda $(if $(BF16),--bf16,)

# Offline first: the staged copy, then the Debian package (installed here when we are root and have apt-get),
# then torchvision's download. `prodlab data` prints what to do when none works.
data: $(STAMP)
	@$(BIN)/python -m prodlab data --no-download >/dev/null 2>&1 || { \
	  if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "Installing the Debian package dataset-fashion-mnist"; \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	  fi; \
	  $(BIN)/python -m prodlab data; }

# The figures are drawn by one worker process per CPU (at most 4, one thread each; --jobs 1 draws them in one).
figures: setup
	$(BIN)/python -m prodlab figures

lint: $(STAMP)
	$(BIN)/ruff check prodlab tests

# Two workers (pytest-xdist), one thread each: most tests and notebooks use one core, so both cores stay busy.
# --dist loadfile keeps each notebook's cells (and each test file) in one worker, in order. The notebooks, the longest
# units, are handed out first, so that neither worker is left with one at the end while the other idles.
# OMP_WAIT_POLICY=PASSIVE: idle PyTorch threads sleep instead of spinning (much faster on a busy 2-core machine).
# nbval runs each notebook's checked edition (python -m prodlab.student --checked, in $(CHECKED)): the student edition
# in which, after each exercise's checker (which must print "not done yet" for the stub), the hidden solution cell and
# the checker run again (which must pass). One execution thus runs every cell of the full notebook in order, asserts
# and all, in quick mode (any error fails), and the student edition end to end (tests/test_student.py says why).
# --durations: the 30 slowest units in the log, where the time of a run on a fresh machine (cold caches) goes.
# -m "not integration": the tests marked integration (whole commands, several processes, browsers, every shipped
# model measured again: tens of seconds each) are left to `make test-integration`; CI runs both (.ci/run).
TEST_WORKERS ?= 2
CHECKED := _build/checked
QUICK_PYTEST := PRODLAB_QUICK=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) \
  --dist loadfile --durations=30
test: setup lint
	rm -rf $(CHECKED) && $(BIN)/python -m prodlab.student --checked --out $(CHECKED)
	$(QUICK_PYTEST) -m "not integration" --nbval-lax --nbval-current-env $(CHECKED)/*.ipynb tests

# The integration tier, in quick mode as make test: the tests marked integration, and only those.
.PHONY: test-integration
test-integration: setup
	$(QUICK_PYTEST) -m integration tests

lab: setup
	$(BIN)/jupyter lab notebooks

# Re-execute every notebook in full mode and store its outputs (what is committed).
notebooks: setup
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 --ExecutePreprocessor.store_widget_state=True $$nb || exit 1; \
	done

# The student edition (not committed): every notebook with its exercise solutions replaced by nbgrader's stub; Run All
# goes through, each unsolved exercise's checker printing one "not done yet" line.
.PHONY: student
student: $(STAMP)
	$(BIN)/python -m prodlab.student

# The website: the committed notebooks with their stored outputs (nothing is executed) as a static site in
# _build/html, offline (MathJax is copied into the site; so is the widgets' JavaScript, which npm fetches once into
# _build/npm: without npm the build says so in one line and those pages load it from a CDN).
# Publish it with .github/workflows/book.yml (README).
.PHONY: book test-book app
book: $(STAMP)
	$(BIN)/jupyter-book build . --config book/_config.yml --toc book/_toc.yml

# The book's browser test (it builds the book first when _build/html is missing or older than a notebook).
test-book: $(STAMP)
	$(BIN)/python -m pytest tests/test_book.py

# Notebook 07's explorers as a web app: Voila runs the notebook and shows its widgets, never its code. CATALOGUE: the
# catalogue its last two explorers point at (the shipped colour one, or any imported with python -m prodlab data),
# passed as PRODLAB_CATALOGUE (prodlab.catalogue_explorer.CATALOGUE_ENV).
APP_PORT ?= 8866
CATALOGUE ?= colour
app: setup
	PRODLAB_CATALOGUE=$(CATALOGUE) $(BIN)/voila notebooks/07_explorer.ipynb --port=$(APP_PORT) --no-browser --strip_sources=True

clean:
	rm -rf $(VENV) figures runs data/cache data/FashionMNIST .pytest_cache .ruff_cache _build .hypothesis student
