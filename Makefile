# sdwatch: `make test` (everything CI runs), `make demo` (try it in a throw-away systemd).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Debian's tools first: a python from elsewhere on PATH must not build or run the Debian world
export PATH := /usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

DEB_VENV := .venv/debian
PYPI_VENV := .venv/pypi
REPORTS := .venv/reports
SDTEST := tests/harness/sdtest

.PHONY: all test deps venvs unit-% systemd-% lint demo bench deb clean

all: test

deps:
	tests/install-deps

# (b) Debian 12's own python3 with python3-pystemd 0.11, typer 0.7, psutil 5.9, sdnotify 0.3
$(DEB_VENV)/.ok: pyproject.toml | deps
	rm -rf $(DEB_VENV)
	/usr/bin/python3 -m venv --system-site-packages $(DEB_VENV)
	$(DEB_VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	$(DEB_VENV)/bin/python -c 'import pystemd.__version__ as v, typer; print("debian world: pystemd", v, "typer", typer.__version__)'
	touch $@

# (a) the newest of everything from PyPI (pystemd builds from source against libsystemd-dev)
$(PYPI_VENV)/.ok: pyproject.toml | deps
	rm -rf $(PYPI_VENV)
	/usr/bin/python3 -m venv $(PYPI_VENV)
	$(PYPI_VENV)/bin/pip install -q -U pip
	$(PYPI_VENV)/bin/pip install -q -e '.[test]'
	$(PYPI_VENV)/bin/python -c 'import pystemd.__version__ as v, typer; print("pypi world: pystemd", v, "typer", typer.__version__)'
	touch $@

venvs: $(DEB_VENV)/.ok $(PYPI_VENV)/.ok

lint: $(PYPI_VENV)/.ok
	$(PYPI_VENV)/bin/ruff check sdwatch tests bench

# unit + integration tests on the host; systemd tests inside a throw-away systemd
unit-%: $(DEB_VENV)/.ok $(PYPI_VENV)/.ok
	mkdir -p $(REPORTS)
	.venv/$*/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/integration \
	  --junitxml=$(REPORTS)/$*-unit.xml || true

systemd-%: $(DEB_VENV)/.ok $(PYPI_VENV)/.ok
	mkdir -p $(REPORTS)
	$(SDTEST) with ci-$* .venv/$*/bin/python -m pytest -q -p no:cacheprovider tests/systemd \
	  --junitxml=$(REPORTS)/$*-systemd.xml || true

test: lint
	rm -rf $(REPORTS)
	$(MAKE) --no-print-directory unit-debian systemd-debian unit-pypi systemd-pypi
	@echo; echo "== sdwatch test summary =="
	tests/summarize $(REPORTS)/{debian,pypi}-{unit,systemd}.xml

demo: deps
	tests/demo

bench: $(DEB_VENV)/.ok
	bench/status

clean:
	rm -rf .venv build dist *.egg-info .sdtest
