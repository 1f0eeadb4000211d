package remotetest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Handler runs one command. ctx ends when the client signals the command
// (as the process would die of it), closes the session or the connection,
// or the server closes; a handler must return soon after.
type Handler func(ctx context.Context, x *Exec) Result

// Exec is one command being run.
type Exec struct {
	Line  string   // the command line as received
	Calls []Call   // the simple commands the shell would run (see Command)
	Env   []string // NAME=value pairs the client sent before exec
	// Stdin is the session's stdin; what a handler reads of it is
	// recorded in Command.Stdin.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	s   *Server
	cmd *Command
}

// Signals are the signals the client sent to this command so far.
func (x *Exec) Signals() []string {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	return append([]string(nil), x.cmd.Signals...)
}

// Result is how a command ends.
type Result struct {
	Code int // exit status
	// Signal, if set, ends it as "killed by" that signal ("TERM", "KILL"):
	// exit-signal instead of exit-status.
	Signal string
	// Drop closes the whole connection without an exit status, as when a
	// droplet vanishes mid-command.
	Drop bool
}

// Reply is a canned answer to a command.
type Reply struct {
	Stdout, Stderr string
	Code           int
	Signal         string // see Result.Signal
	// ReadStdin reads stdin to its end before answering (Command.Stdin
	// records it, up to MaxStdinRecord bytes).
	ReadStdin bool
	// Hang blocks, after the output, until ctx ends (the client gives up),
	// then ends as killed by the last signal sent, or TERM.
	Hang bool
	// Drop drops the connection after the output (see Result.Drop).
	Drop bool
}

// Handle answers x with r; Reply values can be used as a Handler.
func (r Reply) Handle(ctx context.Context, x *Exec) Result {
	if r.ReadStdin {
		io.Copy(io.Discard, x.Stdin)
	}
	io.WriteString(x.Stdout, r.Stdout)
	io.WriteString(x.Stderr, r.Stderr)
	if r.Hang {
		<-ctx.Done()
		sig := "TERM"
		if s := x.Signals(); len(s) > 0 {
			sig = s[len(s)-1]
		}
		return Result{Signal: sig}
	}
	return Result{Code: r.Code, Signal: r.Signal, Drop: r.Drop}
}

// Rule answers the commands Match accepts with Reply.
type Rule struct {
	Match func(*Exec) bool
	Reply Reply
}

// Script is a Handler answering each command with the Reply of the first
// rule that matches it; other commands get exit 127 ("command not found").
func Script(rules ...Rule) Handler {
	return func(ctx context.Context, x *Exec) Result {
		for _, r := range rules {
			if r.Match(x) {
				return r.Reply.Handle(ctx, x)
			}
		}
		return notFound(ctx, x)
	}
}

// Runs matches a command in which some simple command's argv begins with
// args: Runs("sh", "-c", "freeze") matches
// "cd /srv/p && A=1 sh -c 'freeze'", not "sh -c 'freeze; rm -rf /'".
func Runs(args ...string) func(*Exec) bool {
	return func(x *Exec) bool {
		for _, c := range x.Calls {
			if len(c.Args) >= len(args) && slices.Equal(c.Args[:len(args)], args) {
				return true
			}
		}
		return false
	}
}

// Contains matches a command line holding s.
func Contains(s string) func(*Exec) bool {
	return func(x *Exec) bool { return strings.Contains(x.Line, s) }
}

// Any matches every command.
func Any(*Exec) bool { return true }

func notFound(_ context.Context, x *Exec) Result {
	name := x.Line
	if len(x.Calls) > 0 && len(x.Calls[0].Args) > 0 {
		name = x.Calls[0].Args[0]
	}
	fmt.Fprintf(x.Stderr, "remotetest: %s: command not found\n", name)
	return Result{Code: 127}
}

// MaxStdinRecord bounds what Command.Stdin keeps of a command's stdin.
const MaxStdinRecord = 1 << 20

// stdinRecorder passes stdin on and records it in the command.
type stdinRecorder struct {
	s   *Server
	cmd *Command
	r   io.Reader
}

func (r *stdinRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.s.mu.Lock()
	r.cmd.StdinBytes += int64(n)
	if keep := min(n, MaxStdinRecord-len(r.cmd.Stdin)); keep > 0 {
		r.cmd.Stdin = append(r.cmd.Stdin, p[:keep]...)
	}
	r.s.mu.Unlock()
	return n, err
}
