# The two commands a newcomer needs: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# rcl needs HOME; keep ROS logs out of the home directory.
export HOME ?= /tmp
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_log
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: env models demo test lint bench soak constraints clean help

help:
	@echo 'make demo   set up, convert the default model, run the node on real photos'
	@echo 'make test   set up, then run the whole test suite (what CI runs)'
	@echo 'make bench  benchmarks (figures and plots in output/benchmark/)'
	@echo 'make soak   long robustness runs (figures in output/soak/)'
	@echo 'make lint   style and Python 3.6 checks only'

env:
	@tools/setup_env.sh

models: env
	@$(PY) tools/get_default_model.py

demo: models
	@$(PY) -m tx2_inference.tools.demo

test: models
	@$(PY) -m pytest

lint: env
	@$(PY) -m pytest test/test_style.py test/test_python36.py test/test_package_xml.py test/test_import_rules.py

bench: models
	@$(PY) -m tx2_inference.tools.benchmark --output output/benchmark

soak: models
	@$(PY) -m tx2_inference.tools.soak --output output/soak

# Re-pin every package after a change to requirements/*.txt.
constraints: env
	@{ sed -n '1,2p' requirements/constraints.txt; \
	   $(VENV)/bin/pip freeze --exclude-editable | grep -v '^tx2'; } > requirements/constraints.txt.new
	@mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf build output .pytest_cache .hypothesis
