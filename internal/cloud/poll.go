package cloud

import (
	"context"
	"time"
)

// backoff yields gently growing waits: first, then ×1.2 up to max. A
// droplet boots in seconds, so a steep curve would mostly add latency.
type backoff struct {
	next, max time.Duration
}

func (c *Client) backoff() *backoff { return &backoff{next: c.cfg.PollInterval, max: c.cfg.MaxPoll} }

func (b *backoff) wait() time.Duration {
	d := b.next
	b.next = time.Duration(float64(b.next) * 1.2)
	if b.next > b.max {
		b.next = b.max
	}
	return d
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poll calls check until it reports done, it fails, ctx ends, or timeout
// passes. check returns a description of what it saw for timeout errors.
// The first check is immediate; later ones back off, so one resource is
// never polled more often than PollInterval.
func (c *Client) poll(ctx context.Context, what string, timeout time.Duration, check func(ctx context.Context) (done bool, seen string, err error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b := c.backoff()
	var last string
	for {
		done, seen, err := check(pctx)
		if seen != "" {
			last = seen
		}
		if err == nil && done {
			return nil
		}
		if err != nil && pctx.Err() == nil {
			return err
		}
		if err == nil {
			err = sleep(pctx, b.wait())
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pctx.Err() != nil {
				return &TimeoutError{What: what, After: timeout, Last: last}
			}
			return err
		}
	}
}
