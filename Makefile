# builder — see README.md. Every target installs what it needs (idempotently).
GO        ?= go
TAGS      := containers_image_openpgp exclude_graphdriver_btrfs
GOFLAGS_B := -tags "$(TAGS)"
BIN       := bin/builder
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
DEMO_TAG  ?= localhost/builder-demo:latest

.PHONY: all build deps foreign image install docs demo test test-unit test-integration bench fuzz lint clean

all: build

deps:
	@hack/install-deps.sh

# Multi-platform tests: Debian's arm64 busybox-static and qemu-aarch64
# registered in binfmt_misc (adds dpkg's arm64 architecture; as root or sudo).
foreign: deps
	@hack/foreign.sh

# The sandbox helper goes after builder's own bytes, with a trailer that
# says its size (executor/sandbox/helper.go); a fresh binary each time.
HELPER := bin/.sandbox-helper
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(HELPER) ./executor/sandbox/helper
	rm -f $(BIN)
	$(GO) build $(GOFLAGS_B) -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/builder
	cat $(HELPER) >> $(BIN) && printf 'BLDRHLP1%016x' $$(stat -c %s $(HELPER)) >> $(BIN)

# A real build: a busybox base image made from Debian's busybox-static, then
# the demo Dockerfile on top of it, into the default local store.
demo: deps build
	@hack/demo.sh $(BIN) $(DEMO_TAG)

# builder's own image, built by builder: a CI job image for unprivileged
# pods (see docs/pods.md). IMAGE_TAG picks its name.
IMAGE_TAG ?= localhost/builder:latest
image: deps build
	hack/image.sh $(BIN) $(IMAGE_TAG)

# The binary, its man pages and shell completions, under PREFIX.
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/builder
	rm -rf bin/gen && $(BIN) gen-docs --man bin/gen/man --completions bin/gen/completions
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 bin/gen/man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -D -m 0644 bin/gen/completions/builder.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/builder
	install -D -m 0644 bin/gen/completions/_builder $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_builder
	install -D -m 0644 bin/gen/completions/builder.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/builder.fish

# The Markdown flag reference under docs/reference, from the commands.
docs: build
	rm -rf docs/reference && $(BIN) gen-docs --markdown docs/reference

test: deps foreign build lint
	$(GO) test $(GOFLAGS_B) -count=1 -timeout 25m ./...

test-unit:
	$(GO) test $(GOFLAGS_B) -short -count=1 ./...

# builder against Debian's buildah, rootless, same user, same base image, same
# run; checks both build the same trees, prints a table, writes
# bench/results.json. E.g. make bench BENCH_ARGS="--repeat 5 --cases run10,copy-big"
bench: deps build
	bench/run.sh $(BENCH_ARGS)

fuzz:
	$(GO) test $(GOFLAGS_B) -run '^$$' -fuzz FuzzParse -fuzztime 30s -fuzzminimizetime 10s ./dockerfile/
	$(GO) test $(GOFLAGS_B) -run '^$$' -fuzz FuzzApply -fuzztime 30s -fuzzminimizetime 10s ./snapshot/
	$(GO) test $(GOFLAGS_B) -run '^$$' -fuzz FuzzPatterns -fuzztime 30s -fuzzminimizetime 10s ./executor/selection/
	$(GO) test $(GOFLAGS_B) -run '^$$' -fuzz FuzzOneSelection -fuzztime 30s -fuzzminimizetime 10s -parallel 1 ./executor/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(GOFLAGS_B) ./...

clean:
	rm -rf bin
