package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchTree makes 2,000 files of 8 KiB in 40 directories: the shape of a package install.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	dir := b.TempDir()
	body := bytes.Repeat([]byte("0123456789abcdef"), 512)
	var total int64
	for d := range 40 {
		sub := filepath.Join(dir, fmt.Sprintf("usr/lib/pkg%02d", d))
		mustDo(b, os.MkdirAll(sub, 0o755))
		for f := range 50 {
			mustDo(b, os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%03d.so", f)), body, 0o644))
			total += int64(len(body))
		}
	}
	return dir, total
}

func BenchmarkWriteTar(b *testing.B) {
	dir, total := benchTree(b)
	b.SetBytes(total)
	for b.Loop() {
		if err := WriteTar(context.Background(), io.Discard, dir, WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApply(b *testing.B) {
	dir, total := benchTree(b)
	var layer bytes.Buffer
	mustDo(b, WriteTar(context.Background(), &layer, dir, WriteOptions{}))
	b.SetBytes(total)
	for b.Loop() {
		b.StopTimer()
		root := b.TempDir()
		b.StartTimer()
		if _, err := Apply(context.Background(), root, bytes.NewReader(layer.Bytes()), ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopyTree(b *testing.B) {
	dir, total := benchTree(b)
	b.SetBytes(total)
	for b.Loop() {
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "copy")
		b.StartTimer()
		if err := CopyTree(context.Background(), dir, dst, ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
