# netuse — build, test, demo and install.
PREFIX     ?= /usr/local
DESTDIR    ?=
SWIFT      ?= swift
UNITDIR    ?= $(PREFIX)/lib/systemd/system
USERUNITDIR ?= $(PREFIX)/lib/systemd/user
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the build, the tests and the demo need.
DEB_PACKAGES := fuse3 libfuse3-dev acl man-db pkg-config util-linux python3 libsmbclient-dev nettle-dev libkrb5-dev samba smbclient winbind krb5-user systemd python3-gi

RELEASE_BIN = $(shell $(SWIFT) build -c release --show-bin-path)
DEBUG_BIN   = $(shell $(SWIFT) build --show-bin-path)

# The peers the benchmark measures netuse against.
BENCH_PACKAGES := rclone smbnetfs bindfs

.PHONY: all build deps bench-deps test unit-test integration-test torture demo bench soak man completions install install-files deb uninstall clean

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

# The backend conformance suite runs on SMB too, against a private smbd started for it.
unit-test:
	$(SWIFT) build
	python3 tools/with_samba.py $(SWIFT) test

# The property test's bounded share of `make test`: fixed seeds, a few sequences each.
PROPERTY_SEEDS    ?= 1 2 3 4
PROPERTY_EXAMPLES ?= 30
PROPERTY_STEPS    ?= 50

# Mounts real FUSE filesystems and switches users with setpriv: run as root. The SMB tests
# run twice: with the native engine (the default), then with libsmbclient.
# The strict servers the SMB tests run against again, on each engine
# (tests/integration/conftest.py says what each sets), with fewer property seeds and without
# the 200-round KB scenario: what a policy changes is the wire, which both still cross.
SAMBA_POLICIES ?= signing encryption smb2.0.2 smb3.1.1
POLICY_PROPERTY_SEEDS ?= 1 2

integration-test:
	$(SWIFT) build
	NETUSE_BIN=$(DEBUG_BIN) NETUSE_PROPERTY_SEEDS="$(PROPERTY_SEEDS)" NETUSE_PROPERTY_EXAMPLES=$(PROPERTY_EXAMPLES) \
	  NETUSE_PROPERTY_STEPS=$(PROPERTY_STEPS) python3 -m pytest -q -p no:cacheprovider tests/integration
	NETUSE_BIN=$(DEBUG_BIN) NETUSE_SMB_ENGINE=libsmbclient NETUSE_PROPERTY_SEEDS="$(PROPERTY_SEEDS)" \
	  NETUSE_PROPERTY_EXAMPLES=$(PROPERTY_EXAMPLES) NETUSE_PROPERTY_STEPS=$(PROPERTY_STEPS) \
	  python3 -m pytest -q -p no:cacheprovider tests/integration -k "smb and not engine"
	for policy in $(SAMBA_POLICIES); do for engine in native libsmbclient; do \
	  echo "== the SMB tests on the $$engine engine against smbd with the $$policy policy"; \
	  NETUSE_BIN=$(DEBUG_BIN) NETUSE_SAMBA_POLICY=$$policy NETUSE_SMB_ENGINE=$$engine NETUSE_PROPERTY_SEEDS="$(POLICY_PROPERTY_SEEDS)" \
	    NETUSE_PROPERTY_EXAMPLES=$(PROPERTY_EXAMPLES) NETUSE_PROPERTY_STEPS=$(PROPERTY_STEPS) \
	    python3 -m pytest -q -p no:cacheprovider tests/integration -k "smb and not engine and not libsmbclient and not 200_times" || exit 1; \
	done; done

# Longer: the property test on more seeds with longer sequences, then fsx when given one
# (FSX=/path/to/fsx, built outside the repository as the README says).
TORTURE_SEEDS    ?= $(shell seq 1 20)
TORTURE_EXAMPLES ?= 60
TORTURE_STEPS    ?= 80
FSX              ?=
FSX_SEEDS        ?= 1 2 3 4 5 6 7 8 9 10
FSX_OPS          ?= 20000
DBENCH_SECONDS   ?= 60

torture: deps
	$(SWIFT) build
	NETUSE_BIN=$(DEBUG_BIN) NETUSE_PROPERTY_SEEDS="$(TORTURE_SEEDS)" NETUSE_PROPERTY_EXAMPLES=$(TORTURE_EXAMPLES) \
	  NETUSE_PROPERTY_STEPS=$(TORTURE_STEPS) python3 -m pytest -q -p no:cacheprovider tests/integration/test_property.py
	@if [ -n "$(FSX)" ]; then \
	  NETUSE_BIN=$(DEBUG_BIN) FSX="$(abspath $(FSX))" FSX_SEEDS="$(FSX_SEEDS)" FSX_OPS=$(FSX_OPS) \
	    python3 -m pytest -q -p no:cacheprovider tests/integration/test_fsx.py; \
	else echo "make torture: no FSX given, fsx skipped (README: Testing)"; fi
	@command -v dbench >/dev/null || $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dbench
	NETUSE_BIN=$(DEBUG_BIN) DBENCH_SECONDS=$(DBENCH_SECONDS) python3 -m pytest -q -p no:cacheprovider tests/integration/test_dbench.py

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

# Mixed load on several drives while smbd stalls and restarts; SOAK_SECONDS=1800 for the
# long run. Fails on a wrong byte, an operation past its bound, or growth after warm-up.
SOAK_SECONDS ?= 300
soak: deps build
	NETUSE_BIN=$(RELEASE_BIN) python3 tools/soak.py --duration $(SOAK_SECONDS) $(SOAK_ARGS)

demo: deps build
	NETUSE_BIN=$(RELEASE_BIN) bash scripts/demo.sh

# Manual pages and shell completions, generated from the argument parsers:
# netusectl(1), netused(8); bash, zsh and fish.
GENERATED := .build/generated
man:
	mkdir -p $(GENERATED)/man1 $(GENERATED)/man8
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --output-directory $(GENERATED)/man1 --section 1
	$(SWIFT) package --allow-writing-to-package-directory generate-manual --output-directory $(GENERATED)/man8 --section 8

# The binaries install-files and deb take (make deb BIN=.build/debug for a quick one).
BIN ?= $(RELEASE_BIN)

completions:
	mkdir -p $(GENERATED)/completions
	$(BIN)/netusectl --generate-completion-script bash > $(GENERATED)/completions/netusectl.bash
	$(BIN)/netusectl --generate-completion-script zsh > $(GENERATED)/completions/_netusectl
	$(BIN)/netusectl --generate-completion-script fish > $(GENERATED)/completions/netusectl.fish

install: build man
	$(MAKE) install-files

install-files: completions
	install -D -m 0644 $(GENERATED)/man1/netusectl.1 $(DESTDIR)$(PREFIX)/share/man/man1/netusectl.1
	install -D -m 0644 $(GENERATED)/man8/netused.8 $(DESTDIR)$(PREFIX)/share/man/man8/netused.8
	install -D -m 0644 $(GENERATED)/completions/netusectl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/netusectl
	install -D -m 0644 $(GENERATED)/completions/_netusectl $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_netusectl
	install -D -m 0644 $(GENERATED)/completions/netusectl.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/netusectl.fish
	install -D -m 0755 $(BIN)/netused $(DESTDIR)$(PREFIX)/bin/netused
	install -D -m 0755 $(BIN)/netusectl $(DESTDIR)$(PREFIX)/bin/netusectl
	install -D -m 0755 $(BIN)/netuse-smb-worker $(DESTDIR)$(PREFIX)/libexec/netuse/netuse-smb-worker
	install -D -m 0644 systemd/netused.service $(DESTDIR)$(UNITDIR)/netused.service
	install -D -m 0644 systemd/user/netused.service $(DESTDIR)$(USERUNITDIR)/netused.service
	sed -i 's|/usr/local/bin|$(PREFIX)/bin|' $(DESTDIR)$(UNITDIR)/netused.service $(DESTDIR)$(USERUNITDIR)/netused.service

# A Debian package of what make install puts in place, under /usr, with a postinst that
# reloads systemd: .build/generated/netuse_VERSION_ARCH.deb.
VERSION = $(shell sed -n 's/.*current = "\(.*\)"/\1/p' Sources/NetUseCore/Version.swift)
ARCH = $(shell dpkg --print-architecture)
DEB = $(GENERATED)/netuse_$(VERSION)_$(ARCH).deb
# Without BIN, a release build with the Swift runtime linked in, so that the package needs
# no Swift toolchain where it is installed.
deb: man
	[ "$(origin BIN)" = "command line" ] || $(SWIFT) build -c release --static-swift-stdlib
	rm -rf $(GENERATED)/deb && mkdir -p $(GENERATED)/deb/DEBIAN
	$(MAKE) install-files DESTDIR=$(CURDIR)/$(GENERATED)/deb PREFIX=/usr UNITDIR=/usr/lib/systemd/system USERUNITDIR=/usr/lib/systemd/user
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(ARCH)/' packaging/debian/control > $(GENERATED)/deb/DEBIAN/control
	install -m 0755 packaging/debian/postinst packaging/debian/postrm $(GENERATED)/deb/DEBIAN/
	dpkg-deb --root-owner-group --build $(GENERATED)/deb $(DEB)

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/netused $(DESTDIR)$(PREFIX)/bin/netusectl $(DESTDIR)$(UNITDIR)/netused.service
	rm -f $(DESTDIR)$(USERUNITDIR)/netused.service
	rm -f $(DESTDIR)$(PREFIX)/libexec/netuse/netuse-smb-worker
	rm -f $(DESTDIR)$(PREFIX)/share/man/man1/netusectl.1 $(DESTDIR)$(PREFIX)/share/man/man8/netused.8
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/netusectl $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_netusectl
	rm -f $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/netusectl.fish

clean:
	rm -rf .build
