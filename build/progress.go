package build

// Progress views: plain (the text lines, as before), tty (a live view:
// each running step with its elapsed time and its last output lines,
// finished steps collapsed to one line with their time, as BuildKit's
// tty view) and json (one event per line, for CI systems). Both views
// read the same two streams: the executor's step events and the text
// lines everything else writes to Options.Out.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/builder-dev/builder/executor"
	"golang.org/x/term"
)

// progress is a view: a line writer for Out and an event sink.
type progress interface {
	io.Writer
	event(executor.Event)
	// finish stops the view (before the final summary is printed).
	finish()
}

// newProgress picks the view for mode ("auto", "plain", "tty", "json")
// writing to w; nil means plain (write w as it is).
func newProgress(mode string, w io.Writer, multi bool) (progress, error) {
	switch mode {
	case "", "auto":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
			return newTTY(w, multi), nil
		}
		return nil, nil
	case "plain":
		return nil, nil
	case "tty":
		return newTTY(w, multi), nil
	case "json":
		return &jsonView{w: w}, nil
	}
	return nil, optionf("--progress %q: want auto, plain, tty or json", mode)
}

// lines splits writes into whole lines.
type lines struct {
	buf []byte
}

func (l *lines) feed(b []byte, line func(string)) {
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return
		}
		line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
}

// stepLine and outputLine recognise the executor's own text lines.
var (
	stepLine   = regexp.MustCompile(`^(\[[a-z0-9/._-]+\] )?\[\d+/\d+\] STEP \d+/\d+: `)
	outputLine = regexp.MustCompile(`^(\[([a-z0-9/._-]+)\] )?\[\d+/\d+\] \| (.*)$`)
	cacheLine  = regexp.MustCompile(`^(\[[a-z0-9/._-]+\] )?--> Using cache `)
)

// jsonView writes one JSON object per line: the step events, and "log"
// events for every other line of output.
type jsonView struct {
	mu sync.Mutex
	w  io.Writer
	l  lines
}

func (j *jsonView) put(v any) {
	b, _ := json.Marshal(v)
	j.w.Write(append(b, '\n'))
}

func (j *jsonView) Write(b []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.l.feed(b, func(line string) {
		if stepLine.MatchString(line) || cacheLine.MatchString(line) {
			return // the events say it
		}
		ev := map[string]any{"type": "log", "time": time.Now().UTC().Format(time.RFC3339Nano), "text": line}
		if m := outputLine.FindStringSubmatch(line); m != nil {
			ev["type"], ev["text"] = "output", m[3]
			if m[2] != "" {
				ev["platform"] = m[2]
			}
		}
		j.put(ev)
	})
	return len(b), nil
}

func (j *jsonView) event(ev executor.Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.put(struct {
		executor.Event
		Time string `json:"time"`
	}{ev, time.Now().UTC().Format(time.RFC3339Nano)})
}

func (j *jsonView) finish() {}

// ttyView redraws the running steps below the finished ones.
type ttyView struct {
	mu      sync.Mutex
	w       io.Writer
	l       lines
	running []*runningStep
	drawn   int // lines of the live region on the screen
	stop    chan struct{}
	stopped sync.WaitGroup
	multi   bool // several platforms: steps are labelled with theirs
	once    sync.Once
}

type runningStep struct {
	ev    executor.Event
	start time.Time
	tail  []string
}

const tailLines = 5

func newTTY(w io.Writer, multi bool) *ttyView {
	t := &ttyView{w: w, stop: make(chan struct{}), multi: multi}
	t.stopped.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.mu.Lock()
				t.redraw()
				t.mu.Unlock()
			}
		}
	})
	return t
}

func (t *ttyView) label(ev executor.Event) string {
	p := ""
	if t.multi {
		p = "[" + ev.Platform + "] "
	}
	return fmt.Sprintf("%s[%d/%d] STEP %d/%d: %s", p, ev.Stage, ev.Stages, ev.Step, ev.Steps, ev.Text)
}

// clear erases the live region; print then writes above where it was.
func (t *ttyView) clear() {
	if t.drawn > 0 {
		fmt.Fprintf(t.w, "\x1b[%dA\x1b[J", t.drawn)
		t.drawn = 0
	}
}

func (t *ttyView) redraw() {
	t.clear()
	width := 120
	if f, ok := t.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			width = w
		}
	}
	cut := func(s string) string {
		if r := []rune(s); len(r) > width-1 {
			return string(r[:width-2]) + "…"
		}
		return s
	}
	var b strings.Builder
	n := 0
	for _, r := range t.running {
		fmt.Fprintf(&b, "%s\n", cut(fmt.Sprintf("=> %s  %.1fs", t.label(r.ev), time.Since(r.start).Seconds())))
		n++
		for _, line := range r.tail {
			fmt.Fprintf(&b, "%s\n", cut("   | "+line))
			n++
		}
	}
	io.WriteString(t.w, b.String())
	t.drawn = n
}

func (t *ttyView) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.l.feed(b, func(line string) {
		switch {
		case stepLine.MatchString(line), cacheLine.MatchString(line):
			return
		}
		if m := outputLine.FindStringSubmatch(line); m != nil && len(t.running) > 0 {
			r := t.running[len(t.running)-1]
			for i := len(t.running) - 1; i >= 0; i-- {
				if t.running[i].ev.Platform == m[2] || m[2] == "" {
					r = t.running[i]
					break
				}
			}
			r.tail = append(r.tail, m[3])
			if len(r.tail) > tailLines {
				r.tail = r.tail[len(r.tail)-tailLines:]
			}
			return
		}
		t.clear()
		fmt.Fprintln(t.w, line)
		t.redraw()
	})
	return len(b), nil
}

func (t *ttyView) event(ev executor.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch ev.Type {
	case "step-start":
		t.running = append(t.running, &runningStep{ev: ev, start: time.Now()})
	case "step-end":
		for i, r := range t.running {
			if r.ev.Platform == ev.Platform && r.ev.Stage == ev.Stage && r.ev.Step == ev.Step {
				t.running = append(t.running[:i], t.running[i+1:]...)
				break
			}
		}
		mark, how := "✔", fmt.Sprintf("%.1fs", ev.Duration.Seconds())
		switch {
		case ev.Error != "":
			mark, how = "✘", "ERROR"
		case ev.Cached:
			how = "CACHED"
		case ev.Duration == 0:
			how = ""
		}
		t.clear()
		fmt.Fprintf(t.w, "%s %s  %s\n", mark, t.label(ev), how)
	}
	t.redraw()
}

func (t *ttyView) finish() {
	t.once.Do(func() { close(t.stop) })
	t.stopped.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clear()
	if len(t.l.buf) > 0 {
		fmt.Fprintln(t.w, string(t.l.buf))
		t.l.buf = nil
	}
}
