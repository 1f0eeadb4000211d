package deploy

import (
	"context"
	"time"
)

// Once the reserved IP has moved, the command is committed: its
// bookkeeping (tags, unfreezing) must finish even if the operator pressed
// Ctrl-C, or the cloud would say something half true.

type commandKey struct{}

// afterCommit returns a context that survives the command's cancellation
// for a bounded time, and still tells whether the command was interrupted.
func afterCommit(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	return context.WithValue(c, commandKey{}, ctx), cancel
}

// interrupted reports whether the command was cancelled, before or after
// it committed: optional steps (after_promote, prune) are then skipped.
func interrupted(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	orig, _ := ctx.Value(commandKey{}).(context.Context)
	return orig != nil && orig.Err() != nil
}

// detached outlives an interrupted command just long enough to record
// what happened.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}
