package main

import (
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/klauspost/pgzip"
	_ "github.com/moby/buildkit/frontend/dockerfile/instructions"
	_ "github.com/moby/buildkit/frontend/dockerfile/linter"
	_ "github.com/moby/buildkit/frontend/dockerfile/parser"
	_ "github.com/moby/buildkit/frontend/dockerfile/shell"
	_ "github.com/moby/patternmatcher"
	_ "github.com/spf13/cobra"
	_ "go.podman.io/image/v5/copy"
	_ "go.podman.io/image/v5/transports/alltransports"
	_ "go.podman.io/image/v5/storage"
	_ "go.podman.io/image/v5/signature"
	_ "go.podman.io/storage"
	_ "go.podman.io/storage/pkg/unshare"
	_ "github.com/cyphar/filepath-securejoin"
)

func main() {}
