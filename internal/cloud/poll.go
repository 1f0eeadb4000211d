package cloud

import (
	"context"
	"time"
)

// backoff yields gently growing waits: first, then ×1.2 up to max. A
// droplet boots in seconds, so a steep curve would mostly add latency.
// early waits, if any, come before first.
type backoff struct {
	early     []time.Duration
	next, max time.Duration
}

func (c *Client) backoff() *backoff { return &backoff{next: c.cfg.PollInterval, max: c.cfg.MaxPoll} }

// earlyPolls are the waits before the first full PollInterval when an
// action is expected to finish within a second (a reserved IP's assign:
// about 300 ms locally), as fractions of PollInterval: 150, 300, 600 ms at
// the default. The IP's move is inside promote's freeze window, where a
// full second of sleep is a second of refused writes. At most 3 reads of
// the action fall in its first second; from then on, one per interval.
var earlyPolls = []float64{0.15, 0.3, 0.6}

// fastBackoff is backoff with the early waits first.
func (c *Client) fastBackoff() *backoff {
	b := c.backoff()
	for _, f := range earlyPolls {
		b.early = append(b.early, time.Duration(f*float64(c.cfg.PollInterval)))
	}
	return b
}

func (b *backoff) wait() time.Duration {
	if len(b.early) > 0 {
		d := b.early[0]
		b.early = b.early[1:]
		return d
	}
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
	return c.pollWith(ctx, c.backoff(), what, timeout, check)
}

// pollWith is poll with the waits of b.
func (c *Client) pollWith(ctx context.Context, b *backoff, what string, timeout time.Duration, check func(ctx context.Context) (done bool, seen string, err error)) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
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
