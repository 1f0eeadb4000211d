package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	toName    string
	ip        string // the reserved IP ("" on a first promote)
	out       outputs
	frozenAt  time.Time
	fromFroze bool
	toFroze   bool
	transfer  *Transfer
	window    []WindowPhase // the freeze window's phases so far
	// preSynced is the last pre-sync's transfer (nil: none finished): the
	// budget's estimate of the final sync.
	preSynced *Transfer
	// recount: a rollback that knew before the freeze that it carries
	// writes back did not count them in the window; it counts them after
	// the move, for the result.
	recount bool
	// carried: a --discard-writes rollback's target holds the live
	// droplet's data as of this time (its clock, unix s) already.
	carried int64
	// idleChecked: the droplet taking the IP was idle before the freeze.
	idleChecked bool
	fw          *forwarding // hold and forward (forward.go)
}

func (d *Deployer) dialMember(ctx context.Context, m *Member) (*remote.Client, error) {
	if d.Remote == nil {
		return nil, &ConfigError{Msg: "a stack's data needs SSH; this fleet was built without it"}
	}
	d.step("connecting to %s", m.Name)
	return d.Remote.Dial(ctx, &m.Droplet, time.Minute)
}

// prepareSwitch readies cand to take ip from old (nil on a first
// promote): freeze old, carry its final backup to cand, check cand's
// health, and make cand writable, all within the freeze budget.
func (d *Deployer) prepareSwitch(ctx context.Context, old, cand *Member, ip string) (sw *switchover, err error) {
	sw = &switchover{d: d, out: d.outputs(nil), toName: cand.Name, ip: ip}
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
	if d.Spec.Stack.Data == nil {
		return sw, nil // after_promote only
	}
	if old != nil {
		sw.fromName, sw.fromM = old.Name, old
		if sw.from, err = d.dialMember(ctx, old); err != nil {
			return sw, err
		}
		// Hold and forward (forward.go): a switch already past its commit
		// point only moves the IP; nothing may overwrite cand's writes.
		if done, err := sw.resumeForward(ctx, cand); done || err != nil {
			return sw, err
		}
		sw.planForward(cand)
		if err = sw.preSync(ctx); err != nil {
			return sw, err
		}
		if err = sw.estimate(ctx); err != nil {
			return sw, err
		}
		if err = sw.waitIdle(ctx, cand); err != nil {
			return sw, err
		}
		// cand is not live: freezing it just before the window costs the
		// site nothing and keeps its freeze out of the window. From here a
		// write on cand's own address is refused, never overwritten by the
		// final sync.
		if err = sw.freezeTo(ctx); err != nil {
			return sw, err
		}
		if err = sw.freezeOld(ctx); err != nil {
			return sw, err
		}
		d.step("final backup of %s onto %s", old.Name, cand.Name)
		if err = sw.finalSync(ctx); err != nil {
			return sw, err
		}
		if err = sw.checkHealth(ctx, cand); err != nil {
			return sw, err
		}
	}
	// Writable before the move: until the IP arrives only its own address
	// reaches it, and new connections to the IP must find it writable.
	return sw, sw.phase(ctx, PhaseUnfreeze, func(ctx context.Context) error { return sw.makeWritable(ctx, cand.Name) })
}

// freezeTo freezes the droplet taking the IP until its data is final,
// before the freeze window.
func (sw *switchover) freezeTo(ctx context.Context) error {
	d := sw.d
	d.step("freezing writes on %s until its data is final", sw.toName)
	sw.toFroze = true // a freeze that failed halfway is left as it is: cand is not live
	return d.runData(ctx, sw.to, "freeze", d.Spec.Stack.Data.Freeze, sw.out)
}

// freezeOld freezes (or holds) the old live droplet: the freeze window
// is the site's downtime for writes, and it starts here. The droplet
// taking the IP was frozen before (freezeTo).
func (sw *switchover) freezeOld(ctx context.Context) error {
	sw.d.step("freezing writes on %s", sw.fromName)
	sw.frozenAt = time.Now()
	sw.fromFroze = true // a freeze that failed halfway is undone too
	// hold instead when forwarding (forward.go)
	return sw.phase(ctx, PhaseFreeze, sw.freezeFrom)
}

// finalSync carries the frozen droplet's final backup to the one taking
// the IP. A sync the budget stopped is recorded on the target (by abort)
// as a lower bound, so a re-run's estimate refuses before freezing again.
func (sw *switchover) finalSync(ctx context.Context) error {
	err := sw.phase(ctx, PhaseSync, func(ctx context.Context) (err error) {
		sw.transfer, err = sw.d.transfer(ctx, sw.from, sw.fromName, sw.to, sw.toName, sw.out)
		return err
	})
	var fb *FreezeBudgetError
	if errors.As(err, &fb) {
		fb.Sync = sw.transfer // abort records it once the old droplet is writable
	}
	return err
}

// checkHealth runs the HTTP gate on the droplet taking the IP.
func (sw *switchover) checkHealth(ctx context.Context, m *Member) error {
	sw.d.step("checking health of %s", m.Name)
	return sw.phase(ctx, PhaseHealth, func(ctx context.Context) error {
		return sw.d.checkHTTP(ctx, m.PublicIPv4, sw.d.Spec.Stack.Health.Timeout)
	})
}

// makeWritable records on the droplet taking the IP that it is live from
// now (rollback counts writes from then) and unfreezes it, in one SSH run
// (each run costs round trips inside the window); no unfreeze without the
// record.
func (sw *switchover) makeWritable(ctx context.Context, name string) error {
	d := sw.d
	d.step("unfreezing %s", name)
	line := then(markLine(d.Spec.Project), dataCmd(d.Spec.Project, d.Spec.Stack.Data.Unfreeze))
	if err := sw.to.Run(ctx, line, nil, sw.out.stdout, sw.out.stderr); err != nil {
		return fmt.Errorf("recording the promote time and unfreezing on %s: %w", name, err)
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
	if sw != nil && !sw.fromFroze && sw.from != nil && !strings.Contains(cause.Error(), "nothing was frozen") {
		// Before the freeze (the candidate's freeze runs first): say so.
		return fmt.Errorf("%w\nthis run froze nothing on %s and did not touch the reserved IP", cause, sw.fromName)
	}
	if sw == nil || !sw.fromFroze || sw.from == nil {
		return cause
	}
	if sw.forwarding() {
		return cause // past the commit point nothing is undone (forward.go)
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
	uerr := sw.d.mustRunData(uctx, &sw.from, sw.fromM, "unfreeze", data.Unfreeze, sw.out)
	if uerr == nil {
		sw.fromFroze = false
	}
	var fb *FreezeBudgetError
	if errors.As(cause, &fb) {
		// Say only what was read back: where the IP is, and the unfreeze.
		sw.readBack(uctx, fb, uerr)
		if fb.Stage == PhaseSync {
			sw.d.noteSync(uctx, sw.to, fb.Sync, fb.Budget)
		}
		return cause
	}
	if err := uerr; err != nil {
		return fmt.Errorf("%w\nthe reserved IP did not move, but %s is still frozen (read-only): unfreezing it failed: %v; run `fleet exec --droplet %s -- %s`", cause, sw.fromName, err, sw.fromName, data.Unfreeze)
	}
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

// prepareRollback readies prev to take ip back from live: freeze live,
// count the writes it took since its promote, carry them back (prev's
// restore migrates them) unless discard, and make prev writable, all
// within the freeze budget. With a state command, writes counted before
// the freeze are pre-synced (preSyncBack), and the final sync is a delta.
func (d *Deployer) prepareRollback(ctx context.Context, live, prev *Member, ip string, discard bool) (sw *switchover, writes int, err error) {
	sw = &switchover{d: d, out: d.outputs(nil), fromName: live.Name, fromM: live, toName: prev.Name, ip: ip}
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
	// Hold and forward (forward.go): see prepareSwitch.
	if done, err := sw.resumeForward(ctx, prev); done || err != nil {
		return sw, writes, err
	}
	sw.planForward(prev)
	if writes, err = sw.preSyncBack(ctx, discard); err != nil {
		return sw, writes, err
	}
	if err = sw.estimate(ctx); err != nil {
		return sw, writes, err
	}
	if err = sw.waitIdle(ctx, prev); err != nil {
		return sw, writes, err
	}
	d.step("freezing writes on %s", live.Name)
	sw.frozenAt = time.Now()
	sw.fromFroze = true
	sw.toFroze = true                                                // previous droplets stay frozen
	if err = sw.phase(ctx, PhaseFreeze, sw.freezeFrom); err != nil { // hold instead when forwarding
		return sw, writes, err
	}
	if !sw.recount {
		if err = sw.phase(ctx, PhaseWrites, func(ctx context.Context) (err error) {
			writes, err = d.writesAfter(ctx, sw.from, sw.out, sw.carried)
			return err
		}); err != nil {
			return sw, writes, err
		}
	}
	switch {
	case writes == 0:
		d.step("no writes on %s since its promote", live.Name)
	case discard:
		d.step("discarding %s on %s", Plural(writes, "write"), live.Name)
	default:
		d.step("carrying %s back from %s to %s", Plural(writes, "write"), live.Name, prev.Name)
		if err = sw.finalSync(ctx); err != nil {
			var inc *IncompatibleDataError
			if errors.As(err, &inc) {
				return sw, writes, &WritesAtRiskError{Writes: writes, From: live.Name, To: prev.Name, Reason: err}
			}
			return sw, writes, err
		}
		if err = sw.checkHealth(ctx, prev); err != nil {
			return sw, writes, err
		}
	}
	return sw, writes, sw.phase(ctx, PhaseUnfreeze, func(ctx context.Context) error { return sw.makeWritable(ctx, prev.Name) })
}

// preSyncBack is a rollback's pre-sync, before the freeze while live
// still takes writes: when the stack says what data a droplet holds and
// live has writes to carry back (counted now; -1, unknown, carries too),
// live's data goes to prev as in a promote's pre-sync. prev sent its
// final data at the promote and keeps it as its base, which live restored
// then, so the pre-sync is a delta, and the final sync inside the window
// carries only what changed since the pre-sync. Writes counted here need
// not be counted inside the window (there will be some to carry): they
// are counted again after the move (sw.recount). A prev whose release
// cannot read live's data refuses here, before anything is frozen. It
// returns the writes counted, or -1 when it counted none.
func (sw *switchover) preSyncBack(ctx context.Context, discard bool) (int, error) {
	d, data := sw.d, sw.d.Spec.Stack.Data
	if discard {
		return -1, sw.readCarried(ctx)
	}
	if data.State == "" {
		return -1, nil
	}
	n, err := d.writesSince(ctx, sw.from, sw.out)
	if err != nil || n == 0 {
		return n, err
	}
	sw.recount = true
	d.step("%s on %s since its promote: carrying them to %s before the freeze", Plural(n, "write"), sw.fromName, sw.toName)
	at, err := sw.from.Output(ctx, sh("date", "+%s"))
	if err != nil {
		return n, fmt.Errorf("reading the clock of %s: %w", sw.fromName, err)
	}
	if err := sw.preSync(ctx); err != nil {
		var inc *IncompatibleDataError
		if errors.As(err, &inc) {
			return n, fmt.Errorf("%w\nnothing was frozen or moved: %s is live and writable", &WritesAtRiskError{Writes: n, From: sw.fromName, To: sw.toName, Reason: err}, sw.fromName)
		}
		return n, err
	}
	if sw.preSynced != nil {
		// A rollback stopped after this leaves prev holding these writes:
		// a later --discard-writes discards only those after them.
		if err := sw.to.Run(ctx, recordLine(d.Spec.Project, carriedFile(d.Spec.Project), strings.TrimSpace(string(at))), nil, sw.out.stdout, sw.out.stderr); err != nil {
			return n, fmt.Errorf("recording on %s what the pre-sync carried: %w", sw.toName, err)
		}
	}
	return n, nil
}

// carriedFile records, on a rollback's target, the live droplet's clock
// when a rollback's pre-sync read the data it carried there.
func carriedFile(project string) string { return "/etc/fleet/" + project + "/carried-since" }

// readCarried reads, for a --discard-writes rollback, whether an earlier
// rollback's pre-sync left prev holding the live droplet's data as of a
// time (sw.carried, 0: no): only the writes after it are discarded.
func (sw *switchover) readCarried(ctx context.Context) error {
	p := sw.d.Spec.Project
	out, err := sw.to.Output(ctx, ifFresh(p, carriedFile(p), sh("cat", carriedFile(p))))
	if err != nil {
		return fmt.Errorf("reading %s on %s: %w", carriedFile(p), sw.toName, err)
	}
	if t, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && t > 0 {
		sw.carried = t
		sw.d.warn("%s holds the data of %s as of %s (carried by a rollback that stopped): only the writes since are discarded",
			sw.toName, sw.fromName, time.Unix(t, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// recountWait bounds the count of a rollback's writes after its move.
const recountWait = 20 * time.Second

// recounted is the writes a rollback carried back, counted after the move
// when it did not count them in the window (sw.recount); else, or when
// counting fails (the data went anyway), n.
func (sw *switchover) recounted(ctx context.Context, n int) int {
	if sw == nil || !sw.recount || sw.from == nil {
		return n
	}
	if interrupted(ctx) {
		sw.d.warn("interrupted: the writes carried back from %s are the count before the freeze", sw.fromName)
		return n
	}
	// Only a figure, after the commit: a hung app must not hold the command.
	ctx, cancel := context.WithTimeout(ctx, recountWait)
	defer cancel()
	m, err := sw.d.writesSince(ctx, sw.from, sw.out)
	if err != nil {
		sw.d.warn("counting the writes carried back from %s: %v", sw.fromName, err)
		return n
	}
	return m
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
