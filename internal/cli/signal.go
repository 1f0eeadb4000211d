package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
)

// cleanupNoteAfter is how long the clean-up after a first Ctrl-C may run
// before fleet says that a second one exits at once.
const cleanupNoteAfter = time.Second

// interruptible returns the command's context. The first SIGINT or SIGTERM
// cancels it: every wait stops, and the clean-up that records what
// happened (under context.WithoutCancel) waits out no rate limit longer
// than cloud.CleanupWait. A second signal exits at once with 130 and a
// line naming what was left undone.
func interruptible(parent context.Context) (context.Context, context.CancelFunc) {
	return notify(parent, os.Stderr, os.Exit, os.Interrupt, syscall.SIGTERM)
}

func notify(parent context.Context, errOut io.Writer, exit func(int), sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ctx, in := cloud.WithInterrupt(ctx, ctx.Done())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
		case <-stopped:
			return
		}
		note := time.NewTimer(cleanupNoteAfter)
		defer note.Stop()
		for {
			select {
			case <-ch:
				fmt.Fprintln(errOut, undoneNote(in.Pending()))
				exit(ExitInterrupted)
				return
			case <-note.C:
				fmt.Fprintln(errOut, "fleet: interrupted: recording what happened; press Ctrl-C again to exit now")
			case <-stopped:
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(ch)
			close(stopped)
			cancel()
		})
	}
}

// undoneNote is the one line a second Ctrl-C leaves.
func undoneNote(pending []string) string {
	const check = "run `fleet status` to see where things stand"
	if len(pending) == 0 {
		return "fleet: interrupted again: exiting now; the clean-up in progress was cut short; " + check
	}
	return fmt.Sprintf("fleet: interrupted again: exiting now; left undone: %s; %s", strings.Join(pending, ", "), check)
}
