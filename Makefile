# netuse — build, test, demo and install.
PREFIX     ?= /usr/local
DESTDIR    ?=
SWIFT      ?= swift
UNITDIR    ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := fuse3 libfuse3-dev pkg-config util-linux python3 libsmbclient-dev samba smbclient systemd

RELEASE_BIN = $(shell $(SWIFT) build -c release --show-bin-path)
DEBUG_BIN   = $(shell $(SWIFT) build --show-bin-path)

# The peers the benchmark measures netuse against.
BENCH_PACKAGES := rclone smbnetfs bindfs

.PHONY: all build deps bench-deps test unit-test integration-test torture demo bench install uninstall clean

all: build

build:
	$(SWIFT) build -c release

deps:
	@missing=""; for package in $(DEB_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest 2>/dev/null \
	  || $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pytest
	@python3 -c 'import hypothesis' 2>/dev/null || python3 -m pip install -q hypothesis 2>/dev/null \
	  || $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-hypothesis

test: deps unit-test integration-test

unit-test:
	$(SWIFT) build
	$(SWIFT) test

# The property test's bounded share of `make test`: fixed seeds, a few sequences each.
PROPERTY_SEEDS    ?= 1 2 3 4
PROPERTY_EXAMPLES ?= 30
PROPERTY_STEPS    ?= 50

# Mounts real FUSE filesystems and switches users with setpriv: run as root.
integration-test:
	$(SWIFT) build
	NETUSE_BIN=$(DEBUG_BIN) NETUSE_PROPERTY_SEEDS="$(PROPERTY_SEEDS)" NETUSE_PROPERTY_EXAMPLES=$(PROPERTY_EXAMPLES) \
	  NETUSE_PROPERTY_STEPS=$(PROPERTY_STEPS) python3 -m pytest -q -p no:cacheprovider tests/integration

# Longer: the property test on more seeds with longer sequences, then fsx when given one
# (FSX=/path/to/fsx, built outside the repository as the README says).
TORTURE_SEEDS    ?= $(shell seq 1 20)
TORTURE_EXAMPLES ?= 60
TORTURE_STEPS    ?= 80
FSX              ?=
FSX_SEEDS        ?= 1 2 3 4 5 6 7 8 9 10
FSX_OPS          ?= 20000

torture: deps
	$(SWIFT) build
	NETUSE_BIN=$(DEBUG_BIN) NETUSE_PROPERTY_SEEDS="$(TORTURE_SEEDS)" NETUSE_PROPERTY_EXAMPLES=$(TORTURE_EXAMPLES) \
	  NETUSE_PROPERTY_STEPS=$(TORTURE_STEPS) python3 -m pytest -q -p no:cacheprovider tests/integration/test_property.py
	@if [ -n "$(FSX)" ]; then \
	  NETUSE_BIN=$(DEBUG_BIN) FSX="$(abspath $(FSX))" FSX_SEEDS="$(FSX_SEEDS)" FSX_OPS=$(FSX_OPS) \
	    python3 -m pytest -q -p no:cacheprovider tests/integration/test_fsx.py; \
	else echo "make torture: no FSX given, fsx skipped (README: Testing)"; fi

bench-deps: deps
	@missing=""; for package in $(BENCH_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make bench-deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# Mounts, drops caches and starts smbd: run as root. The table lands in bench-results/.
bench: bench-deps build
	NETUSE_BIN=$(RELEASE_BIN) python3 bench/bench.py $(BENCH_ARGS)

demo: deps build
	NETUSE_BIN=$(RELEASE_BIN) bash scripts/demo.sh

install: build
	install -D -m 0755 $(RELEASE_BIN)/netused $(DESTDIR)$(PREFIX)/bin/netused
	install -D -m 0755 $(RELEASE_BIN)/netusectl $(DESTDIR)$(PREFIX)/bin/netusectl
	install -D -m 0755 $(RELEASE_BIN)/netuse-smb-worker $(DESTDIR)$(PREFIX)/libexec/netuse/netuse-smb-worker
	install -D -m 0644 systemd/netused.service $(DESTDIR)$(UNITDIR)/netused.service
	install -D -m 0644 systemd/user/netused.service $(DESTDIR)$(USERUNITDIR)/netused.service
	sed -i 's|/usr/local/bin|$(PREFIX)/bin|' $(DESTDIR)$(UNITDIR)/netused.service $(DESTDIR)$(USERUNITDIR)/netused.service

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/netused $(DESTDIR)$(PREFIX)/bin/netusectl $(DESTDIR)$(UNITDIR)/netused.service
	rm -f $(DESTDIR)$(USERUNITDIR)/netused.service
	rm -f $(DESTDIR)$(PREFIX)/libexec/netuse/netuse-smb-worker

clean:
	rm -rf .build
