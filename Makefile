# sdwatch: `make test` (everything CI runs), `make demo` (try it in a throw-away systemd).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
# Debian's tools first: a python from elsewhere on PATH must not build or run the Debian world
export PATH := /usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

DEB_VENV := .venv/debian
PYPI_VENV := .venv/pypi
REPORTS := .venv/reports
SDTEST := tests/harness/sdtest

.PHONY: all test deps venvs unit-% systemd-% systemd-v2 lint lint-report demo bench deb clean pristine-check

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
	  tests/packaging/test_files.py tests/harness --junitxml=$(REPORTS)/$*-unit.xml || true

systemd-%: $(DEB_VENV)/.ok $(PYPI_VENV)/.ok
	mkdir -p $(REPORTS)
	$(SDTEST) with ci-$* .venv/$*/bin/python -m pytest -q -p no:cacheprovider tests/systemd \
	  --junitxml=$(REPORTS)/$*-systemd.xml || true

# the systemd tests once more with the test systemd on a pure cgroup v2 tree, as on current
# distributions (the host here is v1 "hybrid"; on a v2 host both runs are v2)
systemd-v2: $(PYPI_VENV)/.ok
	mkdir -p $(REPORTS)
	SDTEST_CGROUP=unified $(SDTEST) with ci-v2 .venv/pypi/bin/python -m pytest -q \
	  -p no:cacheprovider tests/systemd --junitxml=$(REPORTS)/pypi-systemd-v2.xml || true

lint-report: $(PYPI_VENV)/.ok
	mkdir -p $(REPORTS)
	$(PYPI_VENV)/bin/ruff check sdwatch tests bench || true
	$(PYPI_VENV)/bin/ruff check -q --exit-zero --output-format junit -o $(REPORTS)/lint.xml \
	  sdwatch tests bench

# every suite runs even when another failed (-k: a venv that does not build skips only the
# suites that need it); the summary always prints, and fails if a suite failed or never ran.
# SKIP_SUITES="systemd-v2 ..." leaves suites out, and says so in the summary.
SUITES := lint-report unit-debian systemd-debian unit-pypi systemd-pypi systemd-v2 test-deb trixie
SKIP_SUITES :=
report.lint-report := lint
report.unit-debian := debian-unit
report.systemd-debian := debian-systemd
report.unit-pypi := pypi-unit
report.systemd-pypi := pypi-systemd
report.systemd-v2 := pypi-systemd-v2
report.test-deb := deb
report.trixie := trixie-pristine trixie-systemd trixie-deb trixie-deb-cross deb-from-trixie
RUN_SUITES = $(filter-out $(SKIP_SUITES),$(SUITES))
test:
	rm -rf $(REPORTS)
	$(MAKE) --no-print-directory -k $(RUN_SUITES) || true
	@echo; echo "== sdwatch test summary =="
	@command -v python3 >/dev/null || { echo "no python3: nothing ran (see above)"; exit 1; }
	@$(if $(SKIP_SUITES),echo "  not run (SKIP_SUITES): $(SKIP_SUITES)")
	@tests/summarize $(foreach s,$(RUN_SUITES),$(foreach r,$(report.$(s)),$(REPORTS)/$(r).xml))

demo: deps
	tests/demo

# the README's set-up line, make demo and make test on a freshly debootstrapped Debian root
# (PRISTINE_SUITE=trixie for Debian 13); clones this checkout's HEAD: commit first
PRISTINE_SUITE := bookworm
PRISTINE_TEST := make test
pristine-check: deps
	PRISTINE_TEST="$(PRISTINE_TEST)" tests/pristine-check $(PRISTINE_SUITE)

bench: deps
	bench/status
	bench/probes
	bench/daemon
	bench/stack
	bench/scale
	bench/endurance
	bench/api
	bench/compare

clean:
	rm -rf .venv build dist *.egg-info .sdtest

# --- Debian package (debian/, tests/packaging/) -------------------------------------------
# deb: dist/sdwatch_<version>_all.deb from a clean copy of the tracked files (no .venv, no
# untracked junk), built by Debian's own python3 and tools, then checked by lintian.
# test-deb: install it in a throw-away systemd, check the running daemon, purge it again.
DEB_BUILD := build/deb
.PHONY: deb test-deb
deb:
	tests/packaging/install-build-deps
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/src dist
	git ls-files -z | tar --null -T - --ignore-failed-read -c | tar -x -C $(DEB_BUILD)/src
	cd $(DEB_BUILD)/src && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=$(CURDIR)/$(DEB_BUILD) \
	  LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc
	rm -f dist/sdwatch_*.deb && cp $(DEB_BUILD)/sdwatch_*_all.deb dist/
	@echo "== lintian =="
	env PATH=/usr/sbin:/usr/bin:/sbin:/bin lintian -EvIL +pedantic --fail-on error,warning \
	  $(DEB_BUILD)/sdwatch_*.changes
	@echo "lintian: no errors, no warnings"
	@ls -l dist/sdwatch_*.deb

test-deb: deb
	mkdir -p $(REPORTS)
	$(SDTEST) with deb /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/packaging \
	  --junitxml=$(REPORTS)/deb.xml

# --- Debian 13 (tests/release-check) ----------------------------------------------------------
# trixie: on a pristine Debian 13 root (tests/pristine-check) the README's set-up line, make demo
# and release-suites; then the .deb built there passes the packaging tests here.  Commit first.
# release-suites: what that root runs: the systemd suite in its Debian world, make test-deb, and
# the packaging tests on RELEASE_SHARE/in/*.deb (built here); reports and .deb to RELEASE_SHARE/out.
.PHONY: trixie release-suites
trixie:
	[ -n "$$(ls dist/sdwatch_*_all.deb 2>/dev/null)" ] || $(MAKE) --no-print-directory deb
	REPORTS=$(REPORTS) tests/release-check trixie

RELEASE_SHARE :=
release-suites: $(DEB_VENV)/.ok
	@[ -d "$(RELEASE_SHARE)/in" ] || { echo "release-suites: RELEASE_SHARE=DIR with in/*.deb"; exit 2; }
	rm -rf $(REPORTS) build/cross && mkdir -p $(REPORTS) build/cross
	$(SDTEST) with release-systemd $(DEB_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  tests/systemd --junitxml=$(REPORTS)/systemd.xml || true
	$(MAKE) --no-print-directory test-deb || true
	cp $(RELEASE_SHARE)/in/sdwatch_*_all.deb build/cross/
	SDWATCH_DEB="$$(echo build/cross/sdwatch_*_all.deb)" $(SDTEST) with deb-cross \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/packaging/test_deb.py \
	  --junitxml=$(REPORTS)/deb-cross.xml || true
	mkdir -p $(RELEASE_SHARE)/out && cp $(REPORTS)/*.xml $(RELEASE_SHARE)/out/
	cp dist/sdwatch_*_all.deb $(RELEASE_SHARE)/out/ || true
	@echo; echo "== sdwatch test summary =="
	@tests/summarize $(REPORTS)/{systemd,deb,deb-cross}.xml
