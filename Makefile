# make demo: set everything up, then describe the built-in data, train the default model on it and predict with it.
# make test: set everything up, then run the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data/imdb-aspects/train.csv
DEMO_OUT ?= runs/demo
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/freezeframe explore --data $(DATA) --top-words 5
	$(BIN)/freezeframe train --train $(DATA) --out $(DEMO_OUT) --overwrite
	$(BIN)/freezeframe predict --model $(DEMO_OUT) "the camera work is stunning" \
		"the villain has no personality at all" "the plot twist in the last act makes no sense"

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q --runslow

lint: setup
	$(BIN)/pip install --quiet ruff==0.17.6
	$(BIN)/ruff check freezeframe tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
