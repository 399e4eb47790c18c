package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// drainTimeout bounds how long output is still read after the RUN's
// processes are gone, in case something escaped the kill and holds a pipe.
const drainTimeout = 2 * time.Second

// start re-executes this binary as the sandbox child with clone flags,
// sends it cfg, collects its reports and waits for it.
func (s *Sandbox) start(ctx context.Context, cfg childConfig, flags uintptr, stdin io.Reader, stdout, stderr io.Writer) error {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		cfgW.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer repR.Close()
	cmd := command(initName)
	cmd.Env = []string{} // the RUN's environment comes from the spec
	cmd.ExtraFiles = []*os.File{cfgR, repW}
	if cfg.JoinNet {
		// The build's private network: the child joins it first thing.
		ns, err := s.privateNet()
		if err != nil {
			cfgR.Close()
			cfgW.Close()
			repR.Close()
			repW.Close()
			return &StartError{Op: "setting up the RUN's network", Code: codeSetup, Err: err}
		}
		cmd.ExtraFiles = append(cmd.ExtraFiles, ns)
	}
	// Without a PID namespace, a process group is what can be killed whole.
	group := flags&syscall.CLONE_NEWPID == 0
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL, Setpgid: group}
	st := &stdio{}
	if err := st.attach(cmd, stdin, stdout, stderr); err != nil {
		cfgR.Close()
		cfgW.Close()
		repW.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	s.sayHelper()
	err = start(cmd)
	cfgR.Close()
	repW.Close()
	st.closeChildEnds()
	if err != nil {
		cfgW.Close()
		st.abort()
		return &StartError{Op: "starting sandbox", Code: codeSetup, Err: err}
	}
	pid := cmd.Process.Pid
	kill := func() {
		if group {
			syscall.Kill(-pid, syscall.SIGKILL)
		} else {
			cmd.Process.Kill() // PID 1 of the namespace: the kernel kills the rest
		}
	}
	stop := context.AfterFunc(ctx, kill)
	go func() {
		json.NewEncoder(cfgW).Encode(cfg) // a child that died early is reported below
		cfgW.Close()
	}()
	var werr *wireError
	dec := json.NewDecoder(repR)
	for {
		var r report
		if dec.Decode(&r) != nil {
			break // EOF: exec closed the pipe, or the child exited
		}
		if len(r.Skipped) > 0 {
			s.warnOnce(r.Skipped, "chroot isolation could not mount everything")
		}
		if r.Err != nil {
			werr = r.Err
		}
	}
	waitErr := cmd.Wait()
	stop()
	if group {
		syscall.Kill(-pid, syscall.SIGKILL) // background leftovers of the RUN
	}
	st.wait()
	switch {
	case ctx.Err() != nil && (waitErr != nil || werr != nil):
		return fmt.Errorf("sandbox: RUN stopped: %w", context.Cause(ctx))
	case werr != nil:
		return startError(werr)
	}
	return exitError(waitErr)
}

// exitError turns cmd.Wait's result into nil or an *ExitError.
func exitError(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		return nil
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		return &ExitError{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	case ok:
		return &ExitError{Code: ws.ExitStatus()}
	}
	return &ExitError{Code: ee.ExitCode()}
}

// stdio connects the RUN's standard streams. Files are handed over as
// they are; other readers and writers go through pipes we copy, so the
// copies can be bounded after the RUN ends (exec.Cmd would wait for any
// escaped process that keeps a pipe open).
type stdio struct {
	childEnds []*os.File
	ourEnds   []*os.File
	copies    sync.WaitGroup
}

func (st *stdio) attach(cmd *exec.Cmd, stdin io.Reader, stdout, stderr io.Writer) error {
	if f, ok := stdin.(*os.File); ok || stdin == nil {
		if f != nil {
			cmd.Stdin = f
		}
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		cmd.Stdin = r
		st.childEnds = append(st.childEnds, r)
		go func() { // not waited for: stdin may block forever
			io.Copy(w, stdin)
			w.Close()
		}()
	}
	out, err := st.output(stdout)
	if err != nil {
		return err
	}
	if out != nil { // a nil *os.File would reach exec as a closed fd
		cmd.Stdout = out
	}
	if sameWriter(stdout, stderr) {
		cmd.Stderr = cmd.Stdout // one pipe, so one goroutine writes to the writer
		return nil
	}
	errf, err := st.output(stderr)
	if errf != nil {
		cmd.Stderr = errf
	}
	return err
}

func (st *stdio) output(w io.Writer) (*os.File, error) {
	if w == nil {
		return nil, nil
	}
	if f, ok := w.(*os.File); ok {
		return f, nil // may be nil: then /dev/null, as for a nil writer
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	st.childEnds = append(st.childEnds, pw)
	st.ourEnds = append(st.ourEnds, r)
	st.copies.Add(1)
	go func() {
		defer st.copies.Done()
		io.Copy(w, r)
	}()
	return pw, nil
}

func sameWriter(a, b io.Writer) (same bool) {
	defer func() { recover() }() // uncomparable dynamic types
	return a != nil && a == b
}

func (st *stdio) closeChildEnds() {
	for _, f := range st.childEnds {
		f.Close()
	}
	st.childEnds = nil
}

// wait lets the copies reach EOF, or cuts them off after drainTimeout.
func (st *stdio) wait() {
	done := make(chan struct{})
	go func() { st.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		st.abort()
		<-done
	}
	for _, f := range st.ourEnds {
		f.Close()
	}
}

func (st *stdio) abort() {
	st.closeChildEnds()
	for _, f := range st.ourEnds {
		f.Close()
	}
}
