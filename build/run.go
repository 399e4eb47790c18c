package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/builder-dev/builder/dockerfile"
	"github.com/builder-dev/builder/executor"
	"github.com/builder-dev/builder/image"
	"github.com/builder-dev/builder/images"
	"github.com/builder-dev/builder/platform"
	"github.com/builder-dev/builder/pushers"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/ioutils"
)

// Run builds the image o describes (Prepare, then Build.Run with
// o.Store) and delivers it: the local store (when tagged or without other
// outputs), every Output, and with Push every tag that names a registry.
//
// Errors in o are *OptionError; a Dockerfile or step failure is *Failure;
// anything else is builder's or the machine's.
func Run(ctx context.Context, o Options) (*Result, error) {
	b, err := Prepare(o)
	if err != nil {
		return nil, err
	}
	return b.Run(ctx, o.Store)
}

// Build is a prepared build: options checked, Dockerfile read and planned.
type Build struct {
	o      Options
	format image.Format
	plat   platform.Platform
	plan   *dockerfile.Plan
	ignore *dockerfile.Ignore
}

// Prepare checks o, reads the Dockerfile and its .dockerignore and plans
// the build: everything that needs no store, so that bad input is
// reported before anything is opened.
func Prepare(o Options) (*Build, error) {
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	b := &Build{o: o, plat: platform.Host()}
	var err error
	if b.format, err = images.ParseFormat(o.Format); err != nil {
		return nil, optionf("--format: %v", err)
	}
	if len(o.Platforms) == 1 {
		b.plat = o.Platforms[0]
	}
	var file *dockerfile.File
	if file, b.ignore, err = b.o.readFront(); err != nil {
		return nil, err
	}
	b.plan, err = file.Plan(dockerfile.PlanOptions{
		Target: o.Target, BuildArgs: o.BuildArgs, Platform: b.plat, BuildPlatform: platform.Host(),
	})
	if err != nil {
		return nil, &Failure{err}
	}
	for _, w := range b.plan.Warnings {
		printWarning(o.ErrOut, w)
	}
	for _, a := range b.plan.UnusedArgs {
		fmt.Fprintf(o.ErrOut, "[Warning] one or more build args were not consumed: %s\n", a)
	}
	return b, nil
}

// Run runs the prepared build with the local store st.
func (b *Build) Run(ctx context.Context, st *images.Store) (*Result, error) {
	if st == nil {
		return nil, errors.New("build: no store")
	}
	o := b.o
	o.Store = st
	if o.Log == nil {
		o.Log = st.Log()
	}
	format, plan, plat, ignore := b.format, b.plan, b.plat, b.ignore
	s, err := newSession(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer s.close()
	ex, err := s.executor(ignore)
	if err != nil {
		return nil, err
	}
	img, err := ex.Build(ctx, plan, plat)
	if err != nil {
		return nil, &Failure{err}
	}
	_, cfgJSON, err := img.Manifest(format)
	if err != nil {
		return nil, err
	}
	res := &Result{ImageID: digest.FromBytes(cfgJSON), Tags: o.Tags}

	popts := pushers.Options{Store: o.Store.Storage(), Format: format}
	s.reg.configure(&popts)
	// The registry pushes read only the built layers' blobs, so they run
	// while the local store and the other outputs are written: with --push
	// the CI flow costs the longer of the two, not their sum.
	type pushed struct {
		d   digest.Digest
		err error
	}
	pushDone := make(chan pushed, 1)
	go func() {
		if s.up != nil {
			s.up.wait() // blobs streamed during the build are in place: the push only checks them
		}
		d, err := s.reg.pushAll(ctx, img, format, o.Out)
		pushDone <- pushed{d, err}
	}()
	outErr := s.writeOutputs(ctx, ex, img, res.ImageID, popts)
	p := <-pushDone
	if err := errors.Join(outErr, p.err); err != nil {
		return nil, err
	}
	res.Pushed = p.d
	ex.WaitExports(2 * time.Minute)
	if o.IIDFile != "" {
		if err := ioutils.AtomicWriteFile(o.IIDFile, []byte(res.ImageID.String()), 0o644); err != nil {
			return nil, fmt.Errorf("--iidfile: %w", err)
		}
	}
	return res, nil
}

// readFront reads and parses the Dockerfile and the .dockerignore that
// goes with it.
func (o *Options) readFront() (*dockerfile.File, *dockerfile.Ignore, error) {
	df, name, err := readDockerfile(o.Dockerfile, o.ContextDir, o.Stdin)
	if err != nil {
		return nil, nil, &OptionError{Err: err}
	}
	file, err := dockerfile.Parse(strings.NewReader(string(df)), name)
	if err != nil {
		return nil, nil, &Failure{err}
	}
	for _, w := range file.Warnings {
		printWarning(o.ErrOut, w)
	}
	ignore, err := LoadIgnore(o.Dockerfile, o.ContextDir)
	if err != nil {
		return nil, nil, &OptionError{Err: err}
	}
	return file, ignore, nil
}

// writeOutputs commits img to the local store (when tagged or when no
// --output is given) and writes every --output.
func (s *session) writeOutputs(ctx context.Context, ex *executor.Executor, img *image.Image, id digest.Digest, popts pushers.Options) error {
	o := s.o
	if len(o.Tags) > 0 || len(o.Outputs) == 0 {
		dest := "containers-storage:@" + id.Encoded()
		if len(o.Tags) > 0 {
			dest = "containers-storage:" + o.Tags[0]
			popts.Tags = o.Tags[1:]
		}
		fmt.Fprintln(o.Out, strings.TrimSpace("COMMIT "+strings.Join(o.Tags, " ")))
		if _, err := pushers.Push(ctx, img, dest, popts); err != nil {
			return fmt.Errorf("commit to local store: %w", err)
		}
		popts.Tags = nil
	}
	for _, out := range o.Outputs {
		switch out.Type {
		case "oci":
			if _, err := pushers.Push(ctx, img, "oci:"+out.Dest+ociTag(o.Tags), popts); err != nil {
				return fmt.Errorf("--output type=oci: %w", err)
			}
		case "docker-archive", "tar":
			ref := ""
			if len(o.Tags) > 0 {
				ref = ":" + o.Tags[0]
			}
			if _, err := pushers.Push(ctx, img, "docker-archive:"+out.Dest+ref, popts); err != nil {
				return fmt.Errorf("--output type=docker-archive: %w", err)
			}
		case "local":
			if err := ex.ExportRootfs(ctx, img, out.Dest); err != nil {
				return fmt.Errorf("--output type=local: %w", err)
			}
		}
	}
	return nil
}

// ociTag gives the OCI layout tag for --output type=oci: the first -t's tag.
func ociTag(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	t := tags[0]
	if i := strings.LastIndex(t, ":"); i > strings.LastIndex(t, "/") {
		return ":" + t[i+1:]
	}
	return ":latest"
}

// readDockerfile reads file (or CONTEXT/Dockerfile, then Containerfile;
// "-" is stdin).
func readDockerfile(file, contextDir string, stdin io.Reader) ([]byte, string, error) {
	if file == "-" {
		if stdin == nil {
			return nil, "", errors.New("-f -: no standard input")
		}
		data, err := io.ReadAll(io.LimitReader(stdin, dockerfile.MaxDockerfileSize+1))
		return data, "Dockerfile", err
	}
	if file == "" {
		for _, n := range []string{"Dockerfile", "Containerfile"} {
			p := filepath.Join(contextDir, n)
			if _, err := os.Stat(p); err == nil {
				file = p
				break
			}
		}
		if file == "" {
			return nil, "", fmt.Errorf("no Dockerfile or Containerfile in %s (use -f)", contextDir)
		}
	}
	// Parse refuses a file over the limit; no need to read more of it.
	f, err := os.Open(file)
	if err != nil {
		return nil, "", fmt.Errorf("read Dockerfile: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, dockerfile.MaxDockerfileSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read Dockerfile: %w", err)
	}
	return data, filepath.Base(file), nil
}

// LoadIgnore reads <Dockerfile>.dockerignore beside the Dockerfile, else
// CONTEXT/.dockerignore (or .containerignore); nil when there is none.
func LoadIgnore(dockerfilePath, contextDir string) (*dockerfile.Ignore, error) {
	var cands []string
	if dockerfilePath != "" && dockerfilePath != "-" {
		cands = append(cands, dockerfilePath+".dockerignore", dockerfilePath+".containerignore")
	}
	cands = append(cands, filepath.Join(contextDir, ".dockerignore"), filepath.Join(contextDir, ".containerignore"))
	for _, c := range cands {
		f, err := os.Open(c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pats, err := dockerfile.ReadIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		return dockerfile.NewIgnore(pats)
	}
	return nil, nil
}

// contextAbs is the context's absolute, symlink-free path: the name its
// file-hash index is kept under.
func contextAbs(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return dir
}

func printWarning(w io.Writer, warn dockerfile.Warning) {
	rule := ""
	if warn.Rule != "" {
		rule = warn.Rule + ": "
	}
	fmt.Fprintf(w, "[Warning] %s: %s%s\n", warn.At, rule, warn.Msg)
}
