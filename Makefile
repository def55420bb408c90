# l2lb — build, test and demo. Run as root on Debian/Ubuntu: the targets
# install what they need (test/deps.sh) and the end-to-end tests use network
# namespaces.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# fail a target with "context deadline exceeded" when the time runs out
# mid-execution on a loaded machine (golang/go#75804, fixed in Go 1.27).
# 50,000 inputs take 3 to 13 s per target here, unloaded.
FUZZTIME ?= 50000x
TESTTIMEOUT ?= 40m

.PHONY: all build test fuzz deps demo bench soak lab-clean clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/l2lbd ./cmd/l2lbd

deps:
	@test/deps.sh

# The whole suite: vet, every package's tests (the lab and end-to-end tests run
# for real as root), then each fuzz target briefly on its committed corpus.
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) ./...
	@$(MAKE) --no-print-directory fuzz

# Every `func FuzzX` in the module, FUZZTIME each.
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		pkg=./$$(dirname $$f); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$pkg $$name: $(FUZZTIME) inputs"; \
			$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

# The lab, l2lbd on three nodes, a Service answering and failing over.
demo: deps
	@$(GO) test -c -o bin/e2e.test ./test/e2e
	@cd test/e2e && set -o pipefail && L2LB_DEMO=1 ../../bin/e2e.test -test.run '^TestDemo$$' -test.timeout 10m | sed '/^PASS$$/d' 

# Long runs of the lab, DURATION each, one after the other (one lab fits on
# a machine): TestSoakNoFalseFreezes, without faults, and TestSoakChaos,
# five nodes under random faults from a random seed (CHAOS_SEED=n replays
# one; the seed is in the output).
DURATION ?= 30m
CHAOS_SEED ?=
soak: deps
	L2LB_SOAK=$(DURATION) L2LB_CHAOS_SEED=$(CHAOS_SEED) $(GO) test -p 1 -count=1 -run '^TestSoak' -timeout 0 -v ./test/e2e/ ./test/chaos/

# Benchmarks recorded in BENCHMARKS.md.
bench: deps build
	$(GO) test -run='^$$' -bench=. -benchmem ./config/... ./daemon/... ./cmd/...

# Packages: $(DIST)/l2lb_<version>-1_<arch>.deb and $(DIST)/l2lb-<version>-1.<arch>.rpm,
# built by nfpm (pinned in go.mod) from packaging/nfpm.yaml. The binary links
# no C library (CGO_ENABLED=0), so one .rpm runs on any glibc; it is a PIE
# (ASLR) and stripped, as distributions ship binaries. File times come from
# the commit, so a build repeats. DIST (default dist) and PKG_VERSION may be
# set, so that tests build their own packages, e.g. a newer version for an
# upgrade, without touching dist/:
#   make package DIST=/tmp/p PKG_VERSION=1.2.3
PKG_VERSION = $(shell packaging/version.sh)
PKG_ARCH ?= $(shell $(GO) env GOARCH)
DIST ?= dist
# packaging/nfpm.yaml names dist/stage; another DIST gets a copy naming its own.
PKG_STAGE = $(DIST)/stage

.PHONY: package
package:
	@set -e; v='$(PKG_VERSION)'; \
	export SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct); \
	rm -rf $(PKG_STAGE) $(DIST)/l2lb_*.deb $(DIST)/l2lb-*.rpm && mkdir -p $(PKG_STAGE); \
	CGO_ENABLED=0 $(GO) build -trimpath -buildmode=pie -ldflags "-s -w -X main.version=$$v" -o $(PKG_STAGE)/l2lbd ./cmd/l2lbd; \
	gzip -9n < packaging/man/l2lbd.8 > $(PKG_STAGE)/l2lbd.8.gz; \
	gzip -9n < packaging/man/l2lbd.yaml.5 > $(PKG_STAGE)/l2lbd.yaml.5.gz; \
	packaging/changelog.sh "$$v-1" > $(PKG_STAGE)/changelog.yml; \
	sed 's|dist/stage/|$(PKG_STAGE)/|' packaging/nfpm.yaml > $(PKG_STAGE)/nfpm.yaml; \
	for p in deb rpm; do \
		VERSION="$$v" PKG_ARCH=$(PKG_ARCH) \
			$(GO) tool nfpm package --config $(PKG_STAGE)/nfpm.yaml --packager $$p --target $(DIST)/; \
	done

lab-clean:
	$(GO) run ./test/lab/cmd/lab-clean

clean:
	rm -rf bin dist
