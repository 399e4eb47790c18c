// Package helperbin carries the sandbox helper program (executor/sandbox/helper),
// which make build compiles into bin/helper before it builds builder. A plain
// go build without it gives a builder that re-executes itself instead.
package helperbin

import (
	"embed"
	"io"
)

//go:embed all:bin
var files embed.FS

// Open reads the helper program; fs.ErrNotExist when it was not built.
func Open() (io.ReadCloser, error) {
	return files.Open("bin/helper")
}
