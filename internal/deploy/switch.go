package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// switchover is the data side of moving the reserved IP between two
// droplets of a stack: the droplet giving up the IP is frozen (read-only)
// before its final backup, and the one taking it gets that data and is
// writable again before the IP arrives. Until the move, only the frozen
// droplet serves the site: no write can land on the wrong side.
type switchover struct {
	d         *Deployer
	from, to  *remote.Client // from is nil on a first promote
	fromName  string
	fromM     *Member // to dial again if the connection is lost
	out       outputs
	frozenAt  time.Time
	fromFroze bool
	toFroze   bool
	transfer  *Transfer
	fw        *forwarding // h-gate: hold and forward (forward.go)
}

func (d *Deployer) dialMember(ctx context.Context, m *Member) (*remote.Client, error) {
	if d.Remote == nil {
		return nil, &ConfigError{Msg: "a stack's data needs SSH; this fleet was built without it"}
	}
	d.step("connecting to %s", m.Name)
	return d.Remote.Dial(ctx, &m.Droplet, time.Minute)
}

// prepareSwitch readies cand to take the IP from old (nil on a first
// promote): freeze old, carry its final backup to cand, check cand's
// health, and make cand writable.
func (d *Deployer) prepareSwitch(ctx context.Context, old, cand *Member) (sw *switchover, err error) {
	sw = &switchover{d: d, out: d.outputs(nil)}
	defer func() {
		if err != nil {
			err = sw.abort(ctx, err)
			sw.close()
			sw = nil
		}
	}()
	if sw.to, err = d.dialMember(ctx, cand); err != nil {
		return sw, err
	}
	data := d.Spec.Stack.Data
	if data == nil {
		return sw, nil // after_promote only
	}
	if old != nil {
		sw.fromName, sw.fromM = old.Name, old
		if sw.from, err = d.dialMember(ctx, old); err != nil {
			return sw, err
		}
		// h-gate: hold and forward (forward.go).
		if done, err := sw.resumeForward(ctx, cand); done || err != nil {
			return sw, err
		}
		sw.planForward(cand)
		// Both at once: the freeze window is the site's downtime for writes.
		d.step("freezing writes on %s (and on %s until its data is final)", old.Name, cand.Name)
		sw.frozenAt = time.Now()
		sw.fromFroze = true // a freeze that failed halfway is undone too
		sw.toFroze = true
		candErr := make(chan error, 1)
		candOut := d.outputs(nil) // redactors are not shared between sessions
		go func() {
			candErr <- d.runData(ctx, sw.to, "freeze", data.Freeze, candOut)
			candOut.flush()
		}()
		err = sw.freezeFrom(ctx) // h-gate: hold instead when forwarding
		if cerr := <-candErr; err == nil {
			err = cerr
		}
		if err != nil {
			return sw, err
		}
		d.step("final backup of %s onto %s", old.Name, cand.Name)
		if sw.transfer, err = d.transfer(ctx, sw.from, old.Name, sw.to, cand.Name, sw.out); err != nil {
			return sw, err
		}
		d.step("checking health of %s", cand.Name)
		if err = d.checkHTTP(ctx, cand.PublicIPv4, d.Spec.Stack.Health.Timeout); err != nil {
			return sw, err
		}
	}
	// Writable before the move: until the IP arrives only its own address
	// reaches it, and new connections to the IP must find it writable.
	return sw, sw.makeWritable(ctx, cand.Name)
}

// makeWritable records on the droplet taking the IP that it is live from
// now (rollback counts writes from then) and unfreezes it.
func (sw *switchover) makeWritable(ctx context.Context, name string) error {
	if err := sw.d.markPromoted(ctx, sw.to); err != nil {
		return fmt.Errorf("recording the promote time on %s: %w", name, err)
	}
	sw.d.step("unfreezing %s", name)
	if err := sw.d.runData(ctx, sw.to, "unfreeze", sw.d.Spec.Stack.Data.Unfreeze, sw.out); err != nil {
		return err
	}
	sw.toFroze = false
	return nil
}

// abort undoes the freeze of the droplet that keeps the IP: the switch
// did not happen (before the move, or read back after it), so it must take
// writes again. The other side is left frozen (it is not live). When the
// move's outcome is unknown nothing is unfrozen: writes on the wrong side
// would be lost, a read-only site for a re-run's length is not.
func (sw *switchover) abort(ctx context.Context, cause error) error {
	if sw == nil || !sw.fromFroze || sw.from == nil {
		return cause
	}
	if sw.forwarding() {
		return cause // h-gate: past the commit point nothing is undone (forward.go)
	}
	var unknown *MoveUnknownError
	if errors.As(cause, &unknown) {
		return fmt.Errorf("%w\n%s and the droplet taking the IP stay frozen (read-only) until a re-run of the command settles the move", cause, sw.fromName)
	}
	uctx, cancel := detached(ctx)
	defer cancel()
	data := sw.d.Spec.Stack.Data
	if sw.to != nil && !sw.toFroze {
		// It was made writable for the move that did not happen.
		_ = sw.d.runData(uctx, sw.to, "freeze", data.Freeze, sw.out)
	}
	if err := sw.d.mustRunData(uctx, &sw.from, sw.fromM, "unfreeze", data.Unfreeze, sw.out); err != nil {
		return fmt.Errorf("%w\nthe reserved IP did not move, but %s is still frozen (read-only): unfreezing it failed: %v; run `fleet exec --droplet %s -- %s`", cause, sw.fromName, err, sw.fromName, data.Unfreeze)
	}
	sw.fromFroze = false
	return fmt.Errorf("%w\nthe reserved IP did not move: %s is live and writable again", cause, sw.fromName)
}

// mustRunData runs a data command that must happen on the way out of a
// failure (an unfreeze). If the connection was lost (the droplet's network
// dropped midway through a backup), it dials m once more.
func (d *Deployer) mustRunData(ctx context.Context, c **remote.Client, m *Member, what, cmd string, out outputs) error {
	err := d.runData(ctx, *c, what, cmd, out)
	var exit *remote.ExitError
	if err == nil || errors.As(err, &exit) || m == nil || ctx.Err() != nil {
		return err // it ran and said no, or no time is left
	}
	d.step("connecting to %s again", m.Name)
	nc, derr := d.Remote.Dial(ctx, &m.Droplet, 10*time.Second)
	if derr != nil {
		return fmt.Errorf("%w; connecting again: %v", err, derr)
	}
	(*c).Close()
	*c = nc
	return d.runData(ctx, nc, what, cmd, out)
}

// moved is how long writes were frozen: from the freeze until the IP
// moved (0 without a freeze).
func (sw *switchover) moved() time.Duration {
	if sw == nil || sw.frozenAt.IsZero() {
		return 0
	}
	return time.Since(sw.frozenAt)
}

func (sw *switchover) close() {
	if sw == nil {
		return
	}
	for _, c := range []*remote.Client{sw.from, sw.to} {
		if c != nil {
			c.Close()
		}
	}
}

// WritesAtRiskError is a rollback refused because writes made since the
// promote cannot be carried back.
type WritesAtRiskError struct {
	Writes int // -1: unknown
	From   string
	To     string
	Reason error
}

func (e *WritesAtRiskError) Error() string {
	n := fmt.Sprintf("%d writes", e.Writes)
	if e.Writes == 1 {
		n = "1 write"
	}
	if e.Writes < 0 {
		n = "an unknown number of writes"
	}
	return fmt.Sprintf("rollback refused: %s made on %s since it was promoted would be lost: %v\nto roll back anyway, losing them, run `fleet rollback --discard-writes`", n, e.From, e.Reason)
}

func (e *WritesAtRiskError) Unwrap() error { return e.Reason }

// prepareRollback readies prev to take the IP back from live: freeze
// live, count the writes it took since its promote, carry them back
// (prev's restore migrates them) unless discard, and make prev writable.
func (d *Deployer) prepareRollback(ctx context.Context, live, prev *Member, discard bool) (sw *switchover, writes int, err error) {
	sw = &switchover{d: d, out: d.outputs(nil), fromName: live.Name, fromM: live}
	writes = -1
	defer func() {
		if err != nil {
			err = sw.abort(ctx, err)
			sw.close()
			sw = nil
		}
	}()
	if sw.from, err = d.dialMember(ctx, live); err != nil {
		return sw, writes, err
	}
	if sw.to, err = d.dialMember(ctx, prev); err != nil {
		return sw, writes, err
	}
	// h-gate: hold and forward (forward.go).
	if done, err := sw.resumeForward(ctx, prev); done || err != nil {
		return sw, writes, err
	}
	sw.planForward(prev)
	d.step("freezing writes on %s", live.Name)
	sw.frozenAt = time.Now()
	sw.fromFroze = true
	sw.toFroze = true                         // previous droplets stay frozen
	if err = sw.freezeFrom(ctx); err != nil { // h-gate: hold instead when forwarding
		return sw, writes, err
	}
	if writes, err = d.writesSince(ctx, sw.from, sw.out); err != nil {
		return sw, writes, err
	}
	switch {
	case writes == 0:
		d.step("no writes on %s since its promote", live.Name)
	case discard:
		d.step("discarding %s on %s", Plural(writes, "write"), live.Name)
	default:
		d.step("carrying %s back from %s to %s", Plural(writes, "write"), live.Name, prev.Name)
		if sw.transfer, err = d.transfer(ctx, sw.from, live.Name, sw.to, prev.Name, sw.out); err != nil {
			var inc *IncompatibleDataError
			if errors.As(err, &inc) {
				return sw, writes, &WritesAtRiskError{Writes: writes, From: live.Name, To: prev.Name, Reason: err}
			}
			return sw, writes, err
		}
		d.step("checking health of %s", prev.Name)
		if err = d.checkHTTP(ctx, prev.PublicIPv4, d.Spec.Stack.Health.Timeout); err != nil {
			return sw, writes, err
		}
	}
	return sw, writes, sw.makeWritable(ctx, prev.Name)
}

// Plural is "1 write", "3 writes" or "an unknown number of writes" (n < 0).
func Plural(n int, noun string) string {
	if n < 0 {
		return "an unknown number of " + noun + "s"
	}
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
