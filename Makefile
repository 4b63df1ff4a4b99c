# otel-go-launcher. `make demo` and `make test` are the two set-up commands.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PKG      := github.com/otel-go-launcher/otel-go-launcher
# urfave_cli_no_docs drops the man-page generator: it costs 0.3 ms of start-up twice
# (launcher and start gate) and nothing uses it.
TAGS     := urfave_cli_no_docs
LDFLAGS  := -s -w -X $(PKG)/internal/version.Version=$(VERSION)
LAUNCH   := $(CURDIR)/bin/launch
comma    := ,
# Fuzz budgets are counts of executions, not seconds: with -fuzztime 10s, Go 1.26's
# coordinator can fail a clean run with "context deadline exceeded" when the deadline
# lands while a worker starts (golang/go#75804), and a count does the same work on a
# fast or a slow machine. Each count is about 10 s of fuzzing on the CI machine kind.
# Entries are PACKAGE:TARGET:COUNT.
FUZZ     := offsets:FuzzParse:8000x offsets:FuzzPclntab:1500x offsets:FuzzDWARF:40000x offsets:FuzzTypeInfo:10000x \
            probes/databasesql:FuzzGeneratedStatements:30000x

.PHONY: all build test bench demo generate offsets image deps clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/launch ./cmd/launch
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/launch-runtime ./cmd/launch-runtime

# Installs what the tests need (Debian, as root), then runs every suite. Under CI=true
# a missing prerequisite fails the run instead of skipping tests. -tags sdkexporter: the
# SDK-exporter variant `bench exporter` measures (telemetry/sdkexport.go), whose tests
# no other run builds.
test: deps build
	./scripts/check-generated.sh
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -count=1 -race -timeout 30m $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 -race -tags sdkexporter -run 'SDK|Snapshot' ./telemetry
	LAUNCH_BIN=$(LAUNCH) $(GO) test -count=1 -timeout 30m ./e2e/...
	@for f in $(FUZZ); do p=$${f%%:*}; r=$${f#*:}; n=$${r%%:*}; c=$${r#*:}; echo "fuzz $$p $$n ($$c)"; \
		$(GO) test -run '^$$' -fuzz "^$$n\$$" -fuzztime $$c -fuzzminimizetime 100x ./$$p/ || exit 1; done

bench: deps build
	$(GO) run ./bench -launch $(LAUNCH)

# The demo builds what it runs itself, saying so: the first run takes minutes.
demo:
	@echo "demo: checking prerequisites (scripts/deps.sh; the first run installs packages and downloads Go modules)…"
	@./scripts/deps.sh
	@./scripts/demo.sh

deps:
	@./scripts/deps.sh

# Compiles the BPF C sources (clang) into the committed bpf2go objects.
generate:
	$(GO) generate ./probes/...

# Refreshes offsets/database.json, the field offsets for binaries without DWARF: every
# Go release (and instrumented module version) the module proxy serves, measured from
# the DWARF of a small program built with each. Incremental: skips what it has. Commit
# the result; the launcher embeds it.
offsets:
	$(GO) run ./cmd/offsets-tracker -db offsets/database.json

# The otel-go-launcher base image (Dockerfile.base), with CONTAINER_TOOL=docker|podman
# (default: whichever has a working engine). PLATFORMS=linux/amd64,linux/arm64 builds a
# multi-arch manifest list (podman) or image index (docker buildx).
PLATFORMS ?= linux/$(shell $(GO) env GOARCH)
image:
	@for p in $(subst $(comma), ,$(PLATFORMS)); do a=$${p#linux/}; \
		echo "launch and launch-runtime for linux/$$a"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/launch-linux-$$a ./cmd/launch || exit 1; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/launch-runtime-linux-$$a ./cmd/launch-runtime || exit 1; \
	done
	PLATFORMS='$(PLATFORMS)' VERSION='$(VERSION)' $(if $(LICENSES),LICENSES='$(LICENSES)') ./scripts/image.sh

clean:
	rm -rf bin
