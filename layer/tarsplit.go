package layer

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
)

// TarSplit is what a store needs besides a layer's files to give the
// layer's exact tar back: the tar-split metadata (headers and padding, the
// payloads' CRCs) and the owners the tar names.
type TarSplit struct {
	Path       string // the tar-split JSON stream, uncompressed
	UIDs, GIDs []uint32
	Owners     bool // UIDs and GIDs are known (not for a kept tar-split without its meta)
}

// splitSink records the tar-split of the tar written through it, on its
// own goroutine, so the scratch tar need not be read again at the store
// commit. It never fails the layer: a tar-split that could not be made is
// simply not offered (the tar is read again instead).
type splitSink struct {
	pw     *bufPipe
	failed bool
	done   chan *TarSplit
	owners *ownerScan
}

// splitPipeSize is what the layer writer may run ahead of the tar-split's
// parser: two of its 1 MiB writes.
const splitPipeSize = 2 << 20

func newSplitSink(path string) (*splitSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	pw := newBufPipe()
	s := &splitSink{pw: pw, done: make(chan *TarSplit, 1), owners: newOwnerScan()}
	go func() {
		ts, err := disassemble(pw, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			pw.CloseRead(err)
			os.Remove(path)
			s.done <- nil
			return
		}
		ts.Path = path
		s.done <- ts
	}()
	return s, nil
}

func (s *splitSink) Write(p []byte) (int, error) {
	s.owners.Write(p)
	if !s.failed {
		if _, err := s.pw.Write(p); err != nil {
			s.failed = true
		}
	}
	return len(p), nil
}

// finish ends the stream and returns the tar-split (nil if none).
func (s *splitSink) finish(ok bool) *TarSplit {
	if ok {
		s.pw.CloseWrite(nil)
	} else {
		s.pw.CloseWrite(io.ErrUnexpectedEOF)
	}
	ts := <-s.done
	s.pw.release() // the parser is done with it, and so is the writer
	uids, gids, known := s.owners.owners()
	if s.failed || !ok || !known {
		if ts != nil {
			os.Remove(ts.Path)
		}
		return nil
	}
	ts.UIDs, ts.GIDs, ts.Owners = uids, gids, true
	return ts
}

func disassemble(r io.Reader, w io.Writer) (*TarSplit, error) {
	stream, err := asm.NewInputTarStream(r, tsstorage.NewJSONPacker(w), nil)
	if err != nil {
		return nil, err
	}
	ts := &TarSplit{}
	if _, err := io.Copy(io.Discard, stream); err != nil { // what follows the end marker
		return nil, err
	}
	slices.Sort(ts.UIDs)
	slices.Sort(ts.GIDs)
	return ts, nil
}

// Assemble gives back the tar the tar-split was made from, reading the
// payloads from the tree tree() names (opened as an os.Root: the names
// cannot lead out of it).
func (ts *TarSplit) Assemble(tree func() (string, bool)) (io.ReadCloser, error) {
	dir, ok := tree()
	if !ok {
		return nil, errors.New("the layer's tree is gone")
	}
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// Moved (given to the image store) since tree() answered: ask
		// again. Once open, a move no longer matters.
		if dir, ok = tree(); !ok {
			return nil, errors.New("the layer's tree is gone")
		}
		root, err = os.OpenRoot(dir)
	}
	if err != nil {
		return nil, err
	}
	f, err := os.Open(ts.Path)
	if err != nil {
		root.Close()
		return nil, err
	}
	rc := asm.NewOutputTarStream(treeGetter{root}, tsstorage.NewJSONUnpacker(f))
	return &assembled{ReadCloser: rc, close: func() { f.Close(); root.Close() }}, nil
}

type treeGetter struct{ root *os.Root }

func (g treeGetter) Get(name string) (io.ReadCloser, error) {
	return g.root.Open(strings.TrimPrefix(path.Clean("/"+name), "/"))
}

type assembled struct {
	io.ReadCloser
	close func()
}

func (a *assembled) Close() error {
	err := a.ReadCloser.Close()
	a.close()
	return err
}

// WriteTarSplit reads the tar r to its end and writes its tar-split to
// path, with the owners it names: what the layer writer makes as it
// writes (see Compression.RawDir), for a tar read back instead.
func WriteTarSplit(r io.Reader, path string) (*TarSplit, error) {
	s, err := newSplitSink(path)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(s, r)
	ts := s.finish(err == nil)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		return nil, errors.New("not a tar stream a tar-split can be made of")
	}
	return ts, nil
}

// SplitReader passes a layer's uncompressed tar through to whoever reads
// it (e.g. an extraction) and records its tar-split and owners on the
// way: the store commit then takes the extracted tree without reading the
// layer again. On Close, keep gets the tar-split and the tar's length if
// the whole stream was read and its digest is diffID (nothing otherwise:
// a tar-split is never kept for bytes that are not the layer's). The file
// at path is removed whenever no tar-split is handed to keep.
func SplitReader(rc io.ReadCloser, diffID digest.Digest, path string, keep func(ts *TarSplit, size int64)) io.ReadCloser {
	if diffID.Validate() != nil {
		os.Remove(path)
		return rc
	}
	sink, err := newSplitSink(path)
	if err != nil {
		os.Remove(path)
		return rc // extracted all the same; the commit reads the tar again
	}
	return &splitReader{ReadCloser: rc, sink: sink, d: diffID.Algorithm().Digester(), diffID: diffID, keep: keep}
}

type splitReader struct {
	io.ReadCloser
	sink   *splitSink
	d      digest.Digester
	diffID digest.Digest
	n      int64
	eof    bool
	keep   func(*TarSplit, int64)
}

func (r *splitReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.sink.Write(p[:n])
		r.d.Hash().Write(p[:n])
		r.n += int64(n)
	}
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// Digest is the digest of what was read so far, in diffID's algorithm:
// the extraction verifies the layer with it rather than hashing it again.
func (r *splitReader) Digest() digest.Digest { return r.d.Digest() }

func (r *splitReader) Close() error {
	if r.sink != nil {
		ok := r.eof && r.d.Digest() == r.diffID
		if ts := r.sink.finish(ok); ts != nil {
			r.keep(ts, r.n)
		}
		r.sink = nil
	}
	return r.ReadCloser.Close()
}
