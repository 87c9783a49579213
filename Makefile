# basalt — see `make help`.
SHELL := /bin/bash
GO       ?= go
BIN      := bin/basalt
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
PKGS     := ./...
BENCHTIME ?= 1x
FUZZTIME ?= 20s

.PHONY: all build test lint tidy bench fuzz demo e2e help clean

all: build

build: ## Build the static binary bin/basalt
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/basalt

test: ## go vet, then every test with the race detector
	$(GO) vet $(PKGS)
	cd builtins/sol/goexpectbench && $(GO) vet .
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

lint: ## go vet, staticcheck (pinned as a go tool), basalt fmt --check and basalt lint of the .star files
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) run ./cmd/basalt fmt --check jobs stdlib
	$(GO) run ./cmd/basalt lint jobs stdlib

BENCHLOG ?= bin/bench.log

# The qemu benchmarks (BenchmarkDirectBoot, BenchmarkRunTrue, BenchmarkJobFiveCommands: minutes under TCG)
# run only with BASALT_E2E=1: `BASALT_E2E=1 make bench`.
tidy: ## go mod tidy the module and the nested goexpect benchmark module (it follows the main one)
	$(GO) mod tidy
	cd builtins/sol/goexpectbench && $(GO) mod tidy

bench: build ## Benchmarks against the named anchors (goexpect, tftpd-hpa, ipmitool, bare qemu), then a table
	set -o pipefail; { $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 60m $(PKGS) && \
	  (cd builtins/sol/goexpectbench && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 20m .); } | tee $(BENCHLOG)
	$(GO) run .ci/benchtable.go < $(BENCHLOG)

fuzz: ## Run each fuzz target for FUZZTIME
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

demo: build ## Run the seed's Highbank flow on the built-in sim device
	$(BIN) run jobs/highbank-deploy.star --device sim --out results/demo-$$(date -u +%Y%m%dT%H%M%SZ)

E2E_PKGS := qemu-system-x86 ipxe-qemu busybox-static pxelinux syslinux-common syslinux openipmi ipmitool \
	dnsmasq-base dosfstools mtools iproute2 socat debian-installer-12-netboot-amd64

e2e: build ## The qemu lab end to end (real kernel, iPXE, BMC); needs root and apt
	@missing=$$(for p in $(E2E_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	BASALT_E2E=1 $(GO) test -count=1 -timeout 20m -run "E2E|IPMISim|ChassisControl" -v ./cmd/basalt/ ./runtime/qemu/ ./builtins/ipmi/ 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|took|e2e_test.go'; test $${PIPESTATUS[0]} -eq 0

clean:
	rm -rf bin results

help: ## Show the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10
