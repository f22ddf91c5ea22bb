# Two commands for a newcomer: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARCH   := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH  := torch==2.9.1 torchvision==0.24.1
else
TORCH  := torch==2.14.1 torchvision==0.29.1
endif
PYTEST_ARGS ?=

.PHONY: install test test-fast lint browser espeak demo demo-cli bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

test: install browser espeak lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the edit loop: no browser, nothing that trains or loads a model, stop at the first failure
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not browser" -x -q $(PYTEST_ARGS)

# ruff (pyflakes, pycodestyle at 120 columns, bugbear, import order) and mypy over the core and adapters
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# the browser test drives Debian's Chromium; install it when missing (skipped where apt is unavailable)
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the browser test will be skipped"; }

# the spoken eval sets use Debian's espeak-ng; install it when missing (their tests skip without it)
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) || \
		echo "espeak-ng not installed: the spoken eval tests will be skipped"; }

demo: install
	$(BIN)/omniguard demo
	@echo "Live voice and camera chat: $(BIN)/python -m demo_apps.voice_guard  (http://127.0.0.1:7861/)"
	$(BIN)/python -m demo_apps.omni_chat

demo-cli: install
	$(BIN)/omniguard demo

# overload and fault runs against a real server on loopback (each stops by itself, ~9 min in
# all); the figures go to RELIABILITY.md. `make test` runs a 20-second version.
SOAK := $(BIN)/python -m tests.support.soak
soak: install
	-$(BIN)/python -m pytest -m burst -q tests/reliability/test_reliability_burst.py
	-$(SOAK) --no-faults --load 10 --duration 60 --json bench/out/soak-latency.json
	-$(SOAK) --load 2,10 --duration 120 --json bench/out/soak-faults.json
	-$(SOAK) --hang --load 2,10 --duration 60 --json bench/out/soak-hang.json
	$(BIN)/python -m tests.support.long_and_short --rounds 5

bench: install
	$(BIN)/python bench/adapter_overhead.py
	$(BIN)/python bench/doors.py
	$(BIN)/python bench/streaming.py --no-check
	$(BIN)/omniguard bench --workloads text,image --modes verdict,score,critique --concurrency 1,8 --requests 16 --critique-tokens 48
	$(BIN)/omniguard bench --workloads text --modes explain --concurrency 8 --requests 32 --critique-tokens 64 --unsafe-share 0.25 --no-naive --without explain-continue
	$(BIN)/omniguard bench --random-weights --arch small-cpu --workloads text,image --modes score --concurrency 8 --requests 16 --no-naive --without prefix-cache,media-cache

clean:
	rm -rf $(VENV) build *.egg-info
