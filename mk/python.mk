# Python module (python/, tests/python/): builds the abi3 wheel with maturin, installs it into
# its own virtual environment, checks the stubs against the module (stubtest), type-checks the
# README example and the tests (mypy --strict), and runs pytest. Needs only python3 with venv
# and pip; everything else comes from PyPI at pinned versions.
#
#   make test-python                        debug build (fast to compile; the default)
#   make test-python PY_BUILD=--release     optimised build, as `pip install ./python` makes

VENV       ?= .venv
VENV_PY    := $(VENV)/bin/python
PY_WHEELS  := build/wheels
PY_BUILD   ?=
PY_TOOLS   := maturin==1.16.0 pytest==9.2.0 mypy==2.4.1 prometheus_client==0.26.0
PY_STAMP   := $(VENV)/.hodei-tools-$(subst ==,-,$(subst $() ,_,$(PY_TOOLS)))

.PHONY: test-python python-venv python-wheel
test: test-python

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(PY_STAMP): | $(VENV_PY)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check $(PY_TOOLS)
	touch $@

python-venv: $(PY_STAMP)

python-wheel: python-venv
	rm -f $(PY_WHEELS)/hodei_workers-*.whl
	$(VENV)/bin/maturin build $(PY_BUILD) --quiet --interpreter $(VENV_PY) -m python/Cargo.toml -o $(PY_WHEELS)
	$(VENV_PY) tests/python/tools/check_wheel.py $(PY_WHEELS)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps $(PY_WHEELS)/hodei_workers-*.whl

# Run from the repository root: `hodei_workers` then resolves to the installed wheel, never to
# the sources under python/ (which lack the compiled module).
test-python: python-wheel
	$(VENV_PY) -m mypy.stubtest hodei_workers._native
	$(VENV_PY) -m mypy --strict tests/python
	$(VENV_PY) -m pytest -q tests/python
