# The two commands a newcomer needs: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# rcl needs HOME; keep ROS logs out of the home directory.
export HOME ?= /tmp
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_log
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: env triton motmetrics py36 qat-env models demo test lint bench soak constraints clean \
	help gpu-check

help:
	@echo 'make demo   set up, convert the default model, run the node on real photos'
	@echo 'make test   set up, then run the whole test suite (what CI runs)'
	@echo 'make bench  benchmarks (figures and plots in output/benchmark/)'
	@echo 'make soak   long robustness runs (figures in output/soak/)'
	@echo 'make lint   style and Python 3.6 checks only'
	@echo 'make gpu-check  the TensorRT backend on a real GPU, TensorRT a stand-in (no installs)'

env:
	@tools/setup_env.sh

# NVIDIA's Triton server (the nvidia-pytriton wheel's tritonserver, ~380 MB in build/triton):
# only the tests and the benchmark start it, so `make demo` does not set it up.
triton:
	@tools/setup_triton.sh

# py-motmetrics (numpy 1.x, pandas < 2.3, own venv) for the tracking evaluation's tests only.
motmetrics:
	@tools/setup_motmetrics.sh

# The robot's Python (CPython 3.6, JetPack-era libraries) for test/test_python36_runtime.py.
py36:
	@tools/setup_py36.sh

# tf-keras + TFMOT for quantization-aware training: an overlay on the venv (tfmot needs absl 1.x).
qat-env: env
	@tools/setup_qat_env.sh

models: env
	@$(PY) tools/get_default_model.py

demo: models
	@$(PY) -m tx2_inference.tools.demo

test: models triton motmetrics py36 qat-env
	@$(PY) -m pytest

lint: env
	@$(PY) -m pytest test/test_style.py test/test_python36.py test/test_package_xml.py test/test_import_rules.py

bench: models triton
	@$(PY) -m tx2_inference.tools.benchmark --output output/benchmark

soak: models
	@$(PY) -m tx2_inference.tools.soak --output output/soak

# The TensorRT backend's CUDA path on a real GPU, with only TensorRT replaced by a stand-in
# (test/trt_standin.py). Needs no venv and installs nothing: a Python with numpy, cupy and
# cuda-python (GPU_PYTHON, default python3), as on the lent GPU machines. Under 5 minutes.
# tools/gpu_check.py prints what it found and fails when any of those is missing or a test
# is skipped; pycuda runs where installed, else it is reported as unrun.
GPU_PYTHON ?= python3
GPU_PROBE := from tx2_inference.backends.tensorrt.cuda import probe_gpu; n, why = probe_gpu(); \
	print('' if n else why)
gpu-check:
	$(eval GPU_MISSING := $(shell PYTHONPATH=. $(GPU_PYTHON) -c "$(GPU_PROBE)" 2>/dev/null \
	  || echo '$(GPU_PYTHON) cannot run the GPU probe (numpy missing?)'))
	$(if $(GPU_MISSING),$(error make gpu-check needs an NVIDIA GPU, none here: $(GPU_MISSING)))
	@PYTHONPATH=. PYTHONUNBUFFERED=1 $(GPU_PYTHON) tools/gpu_check.py

# Re-pin every package after a change to requirements/*.txt.
constraints: env
	@{ sed -n '1,2p' requirements/constraints.txt; \
	   $(VENV)/bin/pip freeze --exclude-editable | grep -v '^tx2'; } > requirements/constraints.txt.new
	@mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf build output .pytest_cache .hypothesis
