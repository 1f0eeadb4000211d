package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// IOStreams carries the three streams and what they are connected to.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	StdinTTY, StdoutTTY, StderrTTY bool
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		StdinTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		StdoutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		StderrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}

// TestStreams returns streams backed by buffers, none of them a TTY.
func TestStreams() (*IOStreams, *bytes.Buffer, *bytes.Buffer) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: &bytes.Buffer{}, Out: out, ErrOut: errOut}, out, errOut
}

// CanPrompt reports whether a person can answer a question.
func (s *IOStreams) CanPrompt() bool { return s.StdinTTY && s.StderrTTY }

// Progress shows one phase at a time on stderr, with a spinner, and only
// on a TTY: piped output and CI logs stay clean.
type Progress struct {
	s       *IOStreams
	mu      sync.Mutex
	phase   string
	started time.Time
	stop    chan struct{}
	done    chan struct{}
}

// NewProgress returns a Progress; on a non-TTY stderr it does nothing.
func (s *IOStreams) NewProgress() *Progress { return &Progress{s: s} }

var spinFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Phase ends the current phase (marked done) and starts the next.
func (p *Progress) Phase(name string) {
	if !p.s.StderrTTY {
		return
	}
	p.finish("✓")
	p.mu.Lock()
	p.phase, p.started = name, time.Now()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	stop, done := p.stop, p.done
	p.mu.Unlock()
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			p.mu.Lock()
			fmt.Fprintf(p.s.ErrOut, "\r\033[K%s %s", spinFrames[i%len(spinFrames)], p.phase)
			p.mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the last phase: ✓ when ok, ✗ otherwise.
func (p *Progress) Stop(ok bool) {
	if !p.s.StderrTTY {
		return
	}
	mark := "✓"
	if !ok {
		mark = "✗"
	}
	p.finish(mark)
}

func (p *Progress) finish(mark string) {
	p.mu.Lock()
	stop, done, phase, started := p.stop, p.done, p.phase, p.started
	p.stop = nil
	p.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
	fmt.Fprintf(p.s.ErrOut, "\r\033[K%s %s (%s)\n", mark, phase, time.Since(started).Round(100*time.Millisecond))
}
