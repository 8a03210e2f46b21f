# AitherOS: one Makefile for building, testing and installing the appliance.
#
#   make run       profile this machine and show what the appliance would do with it
#   make test      install what the tests need, then every check CI runs
#   make install   DESTDIR=... PREFIX=/usr: the one install path (RPM spec, VM test bed)
#
#   make rpm | iso | qcow2 | cloud   the RPMs and the Rocky 9 images (build host; DRY_RUN=1 prints the steps)

PREFIX     ?= /usr
SYSCONFDIR ?= /etc
DESTDIR    ?=
CARGO      ?= cargo
VENV       ?= $(CURDIR)/.venv
# Cargo profile of the installed binaries: release for real installs; the unit checks in
# `make test` install debug binaries, which the tests have built already.
CARGO_PROFILE ?= release
# Cargo's output directory: CARGO_TARGET_DIR when set, as cargo itself does.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
ifeq ($(CARGO_PROFILE),release)
BIN_DIR := $(TARGET_DIR)/release
else
BIN_DIR := $(TARGET_DIR)/debug
endif

BINDIR     := $(PREFIX)/bin
LIBEXECDIR := $(PREFIX)/libexec/aither
# llama.cpp's libraries and ggml's backend modules (private: aither-infer's run path).
LIBDIR     := $(PREFIX)/lib64/aither
# aither-infer's GPU backend modules to build as well: cuda, rocm, vulkan (the RPM's --with).
INFER_FEATURES ?=
DATADIR    := $(PREFIX)/share/aither
DOCDIR     := $(PREFIX)/share/doc/aitheros

.PHONY: all build deps test checks docs deps-check eval eval-quick bench-infer-real lint fmt-check clippy cargo-test cockpit-test unit-check policy-check chaos run install bench-workflow \
        rpm rpm-check kickstart image-check vm-test iso qcow2 cloud bench-hwprofile bench-fit bench-init bench-infer clean

all: build

# DESTDIR is the install's, not cargo's: llama.cpp's CMake install (inside llama-cpp-sys-2's
# build script) would honour it and put the library outside the build tree. Debug builds take
# every target, so their features (and llama.cpp) are the ones `cargo test` already built.
# aither-infer's run path and module directory are LIBDIR: told to its build when PREFIX is not
# /usr (the default there). AITHER_GGML_CPU_VARIANTS=all builds every CPU variant (the RPM).
build:
	@bash scripts/deps.sh build
	env -u DESTDIR $(if $(filter-out /usr,$(PREFIX)),AITHER_LIBDIR=$(LIBDIR)) $(CARGO) build --profile $(CARGO_PROFILE) --workspace --locked \
	  $(if $(filter dev,$(CARGO_PROFILE)),--all-targets) $(if $(strip $(INFER_FEATURES)),--features "$(addprefix aither-infer/,$(INFER_FEATURES))")

# What each target needs, installed when missing (scripts/deps.sh says how and what).
deps:
	@bash scripts/deps.sh test

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Integration tests run other crates' binaries (agentd's run aitherctl), which `cargo test` builds
# only for packages with integration tests of their own: build every target first (the same
# features `cargo test` uses, so nothing is compiled twice).
cargo-test:
	$(CARGO) build --workspace --all-targets --locked
	$(CARGO) test --workspace --locked

lint: fmt-check clippy

# The units as installed: systemd-analyze verify and security exposure thresholds.
unit-check:
	rm -rf target/unit-root
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/target/unit-root CARGO_PROFILE=dev
	bash scripts/check-units.sh target/unit-root

# The SELinux module: built, linked into a complete policy with neverallow checking,
# violations refused, sesearch assertions, tailored modules linked.
policy-check:
	bash selinux/tests/check.sh

# The Cockpit page's own logic (cockpit/view.js) under Node's test runner: no npm packages.
cockpit-test:
	node --test cockpit/test/

# Every check, under a subreaper that fails the run when a process a check started outlives it
# (a test's private bus, a server it forgot to stop: scripts/no-leftovers.py names them).
test:
	python3 scripts/no-leftovers.py $(MAKE) --no-print-directory checks
	@echo "make test: all checks passed"

checks: deps lint cargo-test cockpit-test docs deps-check eval-quick chaos unit-check policy-check image-check rpm-check vm-test

# The manual (docs/, mdBook) with its reference generated from the code, links checked:
# target/manual/index.html.
docs:
	env -u DESTDIR $(CARGO) build --locked -q -p agentd -p aitherctl
	bash scripts/manual.sh

# What `make run` and `make build` install, tried in a minimal Debian root without the packages:
# as root, as a user with passwordless sudo, and as one without (scripts/deps-check.sh).
deps-check:
	bash scripts/deps-check.sh

# Fault and abuse figures on this machine (about a minute): a connection flood with agents
# killed, kill -9 of agentd under load, a worker killed mid-stream, a full disk during a
# pull, a corrupt state file (tests/chaos/chaos.py; figures in target/chaos/report.json).
chaos:
	env -u DESTDIR $(CARGO) build --locked -q -p agentd -p aitherctl -p aither-infer -p aither-agent
	$(VENV)/bin/python tests/chaos/chaos.py

# The main job: agentd in development mode, in the foreground, with the embedded defaults
# (profiles this machine, plans, runs the agents in ./dev/agents.d if any). It uses the session
# bus, or a private one when there is none. Talk to it with `aitherctl --session status`.
run:
	@bash scripts/deps.sh run
	$(CARGO) build --locked -q -p aither-hwprofile -p agentd -p aitherctl -p aither-agent -p aither-infer
	$(TARGET_DIR)/debug/aither-hwprofile detect --format table
	@echo
	bash scripts/run-dev.sh

# Memory-fit accuracy against llama.cpp's own buffer sizes (builds llama.cpp on first use).
bench-fit: deps
	$(CARGO) build --locked -q -p aither-hwprofile
	$(VENV)/bin/python hwprofile/benches/fit_accuracy.py

# aither-init against s6 and supervisord: 1000 units of `sleep infinity` (about 2 minutes).
bench-init: deps
	$(CARGO) build --release --locked -q -p aither-init --example supervise
	python3 init/benches/supervisors.py

# aither-infer against llama.cpp's llama-server (built from the llama-cpp-python sdist on first
# use) at 1, 4 and 8 streams, and the gateway's added time to first token (about 15 minutes).
bench-infer: deps
	$(CARGO) build --release --locked -q -p aither-infer -p agentd -p aitherctl
	$(VENV)/bin/python infer/benches/vs_llama_server.py

# The same on a real model (SmolLM2-135M-Instruct, the test model), and the eval's tool-calling
# suite through both servers (about 25 minutes).
bench-infer-real: deps
	$(CARGO) build --release --locked -q -p aither-infer -p agentd -p aitherctl
	$(VENV)/bin/python infer/benches/vs_llama_server.py --tool-eval \
	  --model "$$($(VENV)/bin/python tests/models/test_models.py $(TARGET_DIR)/tmp/models)/smollm2-135m-instruct-q4_1.gguf"

# The eval: how often the agents get it right on the real test model (SmolLM2-135M-Instruct), every
# suite, three seeds (about an hour here; EVAL_ARGS="devops --seeds 1" for less). The report is
# target/eval/report.json. `eval-quick` is the subset make test runs (a few minutes).
eval: deps
	$(CARGO) build --locked -q -p agentd -p aitherctl -p aither-infer
	bash scripts/eval.sh $(or $(EVAL_ARGS),--seeds 3)

eval-quick:
	env -u DESTDIR $(CARGO) build --locked -q -p agentd -p aitherctl -p aither-infer -p aither-agent
	bash scripts/eval.sh tools devops review --quick --seeds 1

# What a run of the example workflow costs on the tiny test model (turns, tokens, seconds per
# step; about a minute).
bench-workflow: deps
	$(CARGO) build --locked -q -p aither-infer -p aither-agent
	bash agent/benches/heal-unit-cost.sh

# Benchmark of `aither-hwprofile detect` on the 8xH100 fixture (whole process).
bench-hwprofile:
	$(CARGO) build --release --locked -p aither-hwprofile
	bash hwprofile/benches/detect.sh

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BIN_DIR)/aither-hwprofile $(DESTDIR)$(BINDIR)/aither-hwprofile
	install -m 0755 $(BIN_DIR)/aitherctl $(DESTDIR)$(BINDIR)/aitherctl
	install -m 0755 $(BIN_DIR)/agentd $(DESTDIR)$(LIBEXECDIR)/agentd
	install -m 0755 $(BIN_DIR)/aither-infer $(DESTDIR)$(LIBEXECDIR)/aither-infer
	# The agent runner: bin_t like the rest of libexec, an entry point of the agent domains.
	install -m 0755 $(BIN_DIR)/aither-agent $(DESTDIR)$(LIBEXECDIR)/aither-agent
	# llama.cpp's shared libraries (versioned names and their links) and ggml's modules,
	# without debug sections (the debug build's are hundreds of MB).
	install -d $(DESTDIR)$(LIBDIR)
	cd $(BIN_DIR)/ggml && for f in lib*.so.* libggml-*.so; do \
	  if [ "$$f" = libggml-base.so ]; then continue; \
	  elif [ -L "$$f" ]; then cp -P "$$f" $(DESTDIR)$(LIBDIR)/; \
	  else install -m 0755 "$$f" $(DESTDIR)$(LIBDIR)/ && strip --strip-debug $(DESTDIR)$(LIBDIR)/"$$f"; fi; \
	done
	install -m 0755 $(BIN_DIR)/aither-firstboot $(DESTDIR)$(LIBEXECDIR)/aither-firstboot
	install -m 0755 $(BIN_DIR)/aither-drivers $(DESTDIR)$(LIBEXECDIR)/aither-drivers
	# Presets and the model catalog (data; selection and sizing are code in aither-plan).
	install -d $(DESTDIR)$(DATADIR)/presets $(DESTDIR)$(DATADIR)/catalog
	install -m 0644 plan/presets/*.toml $(DESTDIR)$(DATADIR)/presets/
	install -m 0644 plan/catalog/*.toml plan/catalog/README.md $(DESTDIR)$(DATADIR)/catalog/
	install -m 0644 drivers/drivers.toml $(DESTDIR)$(DATADIR)/drivers.toml
	# The Cockpit page (plain ES modules and HTML: no build step).
	install -d $(DESTDIR)$(PREFIX)/share/cockpit/aitheros
	install -m 0644 cockpit/manifest.json cockpit/index.html cockpit/aitheros.css cockpit/aitheros.js cockpit/view.js \
	  $(DESTDIR)$(PREFIX)/share/cockpit/aitheros/
	# The workflow packs (off until first boot or aitherctl workflows enable turns them on).
	install -d $(DESTDIR)$(DATADIR)/workflows
	install -m 0644 workflows/*.toml $(DESTDIR)$(DATADIR)/workflows/
	# OS integration in install shape: systemd/usr/* goes under PREFIX, systemd/etc/* under SYSCONFDIR.
	if [ -d systemd/usr ]; then cp -R --no-preserve=ownership systemd/usr/. $(DESTDIR)$(PREFIX)/; fi
	if [ -d systemd/etc ]; then install -d $(DESTDIR)$(SYSCONFDIR) && cp -R --no-preserve=ownership systemd/etc/. $(DESTDIR)$(SYSCONFDIR)/; fi
	# The SELinux module, once the policy issue has landed.
	if [ -f selinux/aitheros.te ]; then \
	  $(MAKE) -C selinux && install -D -m 0644 selinux/aitheros.pp.bz2 $(DESTDIR)$(PREFIX)/share/selinux/packages/aitheros.pp.bz2; \
	fi
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

# The RPMs (image/aitheros.spec) from this tree, checked to run on Rocky 9 (glibc 2.34) and
# with rpmlint. On a build host: release binaries. `make test` builds them from the debug
# binaries the tests built (rpm-check).
rpm: deps
	bash image/build-rpm.sh $(CARGO_PROFILE)

rpm-check:
	bash image/build-rpm.sh dev

# The three kickstart variants, flattened (ksflatten) and validated (ksvalidator -v RHEL9).
kickstart: deps
	$(VENV)/bin/python kickstart/build.py target/kickstart

# The kickstarts validated, the builders' prerequisite checks and dry runs (image/check.sh).
image-check:
	bash image/check.sh
# Boot the appliance (Debian test image: systemd, SELinux enforcing, cgroup v2) under QEMU
# and run the acceptance checks. IMAGE=disk.qcow2 boots that image instead.
vm-test:
	$(MAKE) --no-print-directory -C selinux
	bash tests/vm/run.sh $(if $(IMAGE),--image $(IMAGE))
iso: deps
	bash iso/build.sh $(if $(DRY_RUN),--dry-run)
qcow2: deps
	bash image/build.sh qcow2 $(if $(DRY_RUN),--dry-run)
cloud: deps
	bash image/build.sh cloud $(if $(DRY_RUN),--dry-run)

clean:
	$(CARGO) clean
