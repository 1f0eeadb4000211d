package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// The freeze budget (stack.data.freeze_budget): the freeze window of a
// promote or rollback, from the freeze until the IP has moved, must fit
// in it. Before the freeze, an estimate that says it cannot fit refuses
// (nothing to undo). During the window every phase runs under a deadline,
// frozenAt + budget - reserve; one that reaches it is stopped, and the
// switch aborts before the IP moves.

// Window phase names, in the order a switch runs them.
const (
	PhaseFreeze   = "freeze"   // the stack's freeze on both droplets
	PhaseWrites   = "writes"   // rollback: counting the writes since the promote
	PhaseSync     = "sync"     // the final backup → restore
	PhaseHealth   = "health"   // the HTTP gate on the droplet taking the IP
	PhaseUnfreeze = "unfreeze" // promoted-at, then unfreeze, on the droplet taking the IP
	PhaseForward  = "forward"  // hold: the forward on the droplet giving up the IP (the commit point)
	PhaseMove     = "move"     // the reserved IP's assign, read back
)

// WindowPhase is one phase of the freeze window: when it began (after
// the freeze began) and how long it took. The phases run one after the
// other, except forward and move, which run at once.
type WindowPhase struct {
	Name     string
	Start    time.Duration
	Duration time.Duration
}

// Overlaps reports whether q began before p ended (forward and move run
// at once); the window's phases otherwise run one after the other.
func Overlaps(p, q WindowPhase) bool {
	return q.Start > 0 && q.Start+10*time.Millisecond < p.Start+p.Duration
}

// JoinPhases joins the window's phases as each formats them: ", " between
// phases one after the other, " alongside " before one that overlaps the
// phase before it.
func JoinPhases(w []WindowPhase, each func(WindowPhase) string) string {
	var b strings.Builder
	for i, p := range w {
		switch {
		case i == 0:
		case Overlaps(w[i-1], p):
			b.WriteString(" alongside ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(each(p))
	}
	return b.String()
}

// budgetReserve is kept for the move out of the deadline (its API action
// takes about 300 ms once the poll asks early), at most a third of the
// budget.
const budgetReserve = 300 * time.Millisecond

// errOverBudget is the deadline's cause: the window would overrun.
var errOverBudget = errors.New("the freeze budget ran out")

// FreezeBudgetError is a promote or rollback that would have overrun
// stack.data.freeze_budget: refused before the freeze (Stage "estimate"),
// or aborted before the IP moved. What it says of the IP and the old
// droplet was read back after the abort.
type FreezeBudgetError struct {
	Budget   time.Duration
	Elapsed  time.Duration // from the freeze to the abort; 0 for an estimate
	Stage    string        // "estimate", or the window phase stopped: freeze, writes, sync, health, unfreeze
	Estimate time.Duration // Stage estimate: the window fleet expected
	Basis    string        // Stage estimate: what the estimate came from
	Window   []WindowPhase // the phases run, the last one cut short
	Sync     *Transfer     // the final transfer as far as it got; nil before it started
	// Read back after the abort.
	IP          string // the reserved IP
	Droplet     string // the droplet that keeps it, frozen then unfrozen
	Holder      string // where the API says IP points; "" when the read failed
	HolderErr   error
	Unfrozen    bool  // Droplet's unfreeze succeeded
	UnfreezeErr error // why it did not
	Unfreeze    string
}

func (e *FreezeBudgetError) Error() string {
	var b strings.Builder
	if e.Stage == "estimate" {
		fmt.Fprintf(&b, "refused: the freeze window would overrun stack.data.freeze_budget %s: %s are expected (%s); nothing was frozen or moved\nto let the window take that long, raise stack.data.freeze_budget", e.Budget, secs(e.Estimate), e.Basis)
		return b.String()
	}
	fmt.Fprintf(&b, "aborted: %s would overrun stack.data.freeze_budget %s (stopped %s after the freeze: %s)", stageWhat(e.Stage), e.Budget, secs(e.Elapsed), windowText(e.Window, e.Sync))
	if e.Droplet == "" {
		return b.String()
	}
	switch {
	case e.HolderErr != nil:
		fmt.Fprintf(&b, "\nfleet did not move %s, but reading it back failed: %v", e.IP, e.HolderErr)
	case e.Holder == e.Droplet:
		fmt.Fprintf(&b, "\nthe reserved IP did not move (read back: %s is on %s)", e.IP, e.Holder)
	default:
		fmt.Fprintf(&b, "\nfleet did not move %s, but reading it back shows it on %s", e.IP, orNone(e.Holder))
	}
	if e.Unfrozen {
		fmt.Fprintf(&b, "; %s is live and writable again (its unfreeze succeeded)", e.Droplet)
	} else {
		fmt.Fprintf(&b, "; %s is still frozen (read-only): unfreezing it failed: %v; run `fleet exec --droplet %s -- %s`", e.Droplet, e.UnfreezeErr, e.Droplet, e.Unfreeze)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "no droplet"
	}
	return s
}

func stageWhat(stage string) string {
	switch stage {
	case PhaseFreeze:
		return "the freeze (draining in-flight writes)"
	case PhaseWrites:
		return "counting the writes"
	case PhaseSync:
		return "the final sync"
	case PhaseHealth:
		return "the health check"
	case PhaseUnfreeze:
		return "making the new droplet writable"
	}
	return stage
}

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s" }

// windowText is "freeze 0.05s, sync 0.95s of 12.3 MB".
func windowText(w []WindowPhase, sync *Transfer) string {
	if len(w) == 0 {
		return "no phase ran"
	}
	return JoinPhases(w, func(p WindowPhase) string {
		s := p.Name + " " + secs(p.Duration)
		if p.Name == PhaseSync && sync != nil {
			s += " of " + mb(sync.Bytes) + " so far"
		}
		return s
	})
}

func mb(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB" }

// budget is the switch's freeze budget; 0: none (no stack.data, or a
// Deployer built without a spec file, whose Data has no default).
func (sw *switchover) budget() time.Duration {
	if data := sw.d.Spec.Stack.Data; data != nil {
		return data.FreezeBudget
	}
	return 0
}

// reserve is what the deadline keeps for the move.
func (sw *switchover) reserve() time.Duration {
	return min(budgetReserve, sw.budget()/3)
}

// deadline is when the window's phases must be done; zero without a
// budget or a freeze.
func (sw *switchover) deadline() time.Time {
	if sw.budget() <= 0 || sw.frozenAt.IsZero() {
		return time.Time{}
	}
	return sw.frozenAt.Add(sw.budget() - sw.reserve())
}

// phase runs one phase of the freeze window under the budget's deadline
// and records how long it took. A phase the deadline stopped (or that
// ended past it) is a *FreezeBudgetError: the caller aborts before the
// move.
func (sw *switchover) phase(ctx context.Context, name string, f func(context.Context) error) error {
	start := time.Now()
	dl := sw.deadline()
	pctx := ctx
	if !dl.IsZero() {
		var cancel context.CancelFunc
		pctx, cancel = context.WithDeadlineCause(ctx, dl, errOverBudget)
		defer cancel()
	}
	err := f(pctx)
	sw.record(name, start)
	if !dl.IsZero() && ctx.Err() == nil && (context.Cause(pctx) == errOverBudget || time.Now().After(dl)) {
		return &FreezeBudgetError{Budget: sw.budget(), Elapsed: time.Since(sw.frozenAt), Stage: name,
			Window: append([]WindowPhase(nil), sw.window...), Sync: sw.transfer, Unfreeze: sw.d.Spec.Stack.Data.Unfreeze}
	}
	return err
}

// record adds a phase that began at start and ends now to the window.
func (sw *switchover) record(name string, start time.Time) { sw.recordUntil(name, start, time.Now()) }

// recordUntil adds a phase that ran from start to end.
func (sw *switchover) recordUntil(name string, start, end time.Time) {
	sw.window = append(sw.window, WindowPhase{Name: name, Start: max(start.Sub(sw.frozenAt), 0), Duration: end.Sub(start)})
}

// timeForward records the forward (with the move, the window's last
// phases): past the commit point, timed, never stopped by the budget.
func (sw *switchover) timeForward(start, end time.Time) {
	if sw != nil && sw.fw != nil && sw.fw.tried && !sw.frozenAt.IsZero() {
		sw.recordUntil(PhaseForward, start, end)
	}
}

// timeMove records the move, from start to end.
func (sw *switchover) timeMove(start, end time.Time) {
	// after the commit point the move no longer holds writes;
	// the phase stays, for stacks that do not hold.
	if sw != nil && !sw.frozenAt.IsZero() {
		sw.recordUntil(PhaseMove, start, end)
	}
}

// figures are the budget and the window's phases, in order; 0 and nil
// without a freeze.
func (sw *switchover) figures() (time.Duration, []WindowPhase) {
	if sw == nil || sw.frozenAt.IsZero() {
		return 0, nil
	}
	return sw.budget(), sw.window
}

// overran warns when a window that was not stopped (its last phase, the
// move, cannot be) still took longer than the budget.
func (sw *switchover) overran(window time.Duration) {
	if sw == nil || sw.frozenAt.IsZero() {
		return
	}
	if b := sw.budget(); b > 0 && window > b {
		sw.d.warn("the freeze window took %s, over stack.data.freeze_budget %s (%s)", secs(window), b, windowText(sw.window, sw.transfer))
	}
}

// readBack fills e with what the API and the unfreeze said after an
// abort: where the IP points, and whether the old droplet took its
// unfreeze.
func (sw *switchover) readBack(ctx context.Context, e *FreezeBudgetError, unfreezeErr error) {
	e.Droplet, e.IP = sw.fromName, sw.ip
	e.Unfrozen, e.UnfreezeErr = unfreezeErr == nil, unfreezeErr
	if sw.ip == "" {
		e.HolderErr = errors.New("no reserved IP is known")
		return
	}
	r, err := sw.d.Cloud.ReservedIP(ctx, sw.ip)
	if err != nil {
		e.HolderErr = err
		return
	}
	switch {
	case r.DropletID == 0:
		e.Holder = ""
	case sw.fromM != nil && r.DropletID == sw.fromM.ID:
		e.Holder = sw.fromName
	default:
		e.Holder = fmt.Sprintf("droplet %d", r.DropletID)
	}
}

// The last sync onto a droplet, kept on it for the next switch's
// estimate: "bytes seconds 1" for up's restore of the live data (the same
// full archive a final sync carries today), "bytes seconds 0 budget" for
// a final sync that freeze_budget budget stopped.
func lastSyncFile(project string) string { return "/var/lib/fleet/" + project + "/last-sync" }

// noteSync records t on c, stopped by the budget stoppedBy (0: it
// finished); best effort (the estimate is an aid, the deadline guards).
func (d *Deployer) noteSync(ctx context.Context, c *remote.Client, t *Transfer, stoppedBy time.Duration) {
	if t == nil || c == nil {
		return
	}
	f := lastSyncFile(d.Spec.Project)
	line := fmt.Sprintf("%d %.3f 1\n", t.Bytes, t.Duration.Seconds())
	if stoppedBy > 0 {
		line = fmt.Sprintf("%d %.3f 0 %.3f\n", t.Bytes, t.Duration.Seconds(), stoppedBy.Seconds())
	}
	err := c.Run(ctx, then(sh("mkdir", "-p", path.Dir(f)), replace(sh("cat"), f)), strings.NewReader(line), nil, nil)
	if err != nil {
		d.warn("recording the sync's figures on %s: %v", c.Droplet(), err)
	}
}

// syncRecord is a last-sync line.
type syncRecord struct {
	Bytes     int64
	Duration  time.Duration
	StoppedBy time.Duration // the budget that stopped it; 0: it finished
}

// lastSync reads the record on c; nil when there is none (or it cannot
// be read: no estimate, the deadline still guards).
func (d *Deployer) lastSync(ctx context.Context, c *remote.Client) *syncRecord {
	f := lastSyncFile(d.Spec.Project)
	out, err := c.Output(ctx, "if [ -f "+remote.ShellQuote(f)+" ]; then "+sh("head", "-c", "200", f)+"; fi")
	if err != nil {
		return nil
	}
	return parseSyncRecord(string(out))
}

func parseSyncRecord(s string) *syncRecord {
	fs := strings.Fields(s)
	if len(fs) < 3 || len(fs) > 4 || (fs[2] == "0") != (len(fs) == 4) || (fs[2] != "0" && fs[2] != "1") {
		return nil
	}
	n, err := strconv.ParseInt(fs[0], 10, 64)
	if err != nil || n < 0 {
		return nil
	}
	secsOf := func(v string) (time.Duration, bool) {
		f, err := strconv.ParseFloat(v, 64)
		return time.Duration(f * float64(time.Second)), err == nil && f >= 0 && f <= 1e6
	}
	r := &syncRecord{Bytes: n}
	var ok bool
	if r.Duration, ok = secsOf(fs[1]); !ok {
		return nil
	}
	if len(fs) == 4 {
		if r.StoppedBy, ok = secsOf(fs[3]); !ok || r.StoppedBy == 0 {
			return nil
		}
	}
	return r
}

// maxPreSyncs bounds the pre-sync rounds: each carries what changed
// during the one before, so they shrink unless writes outpace the copy.
const maxPreSyncs = 3

// preSync brings the droplet taking the IP close to the live data while
// the site stays writable (delta.go), so the window carries only the
// seconds since. A round that would not fit the budget is followed by
// another, which carries only what changed meanwhile.
func (sw *switchover) preSync(ctx context.Context) error {
	for range maxPreSyncs {
		t, err := sw.d.preSync(ctx, sw.from, sw.fromName, sw.to, sw.toName, sw.out)
		if err != nil || t == nil {
			return err
		}
		sw.preSynced = t
		if b := sw.budget(); b <= 0 || t.Duration+sw.reserve() <= b {
			return nil
		}
	}
	return nil
}

// estimate refuses, before anything is frozen, a window that cannot fit.
// After a pre-sync its own figure is the estimate: the final sync carries
// what changed since, at the same fixed cost. Without one, the last sync
// onto the droplet taking the IP plus the reserve; a final sync a budget
// stopped refuses every budget up to that one (the data only grew), and
// is a lower bound above it.
func (sw *switchover) estimate(ctx context.Context) error {
	b := sw.budget()
	if b <= 0 {
		return nil
	}
	if p := sw.preSynced; p != nil {
		est := p.Duration + sw.reserve()
		if est <= b {
			return nil
		}
		basis := fmt.Sprintf("the last pre-sync onto %s moved %s in %s, plus %s for the move (writes outpace the copy)", sw.toName, mb(p.Bytes), secs(p.Duration), secs(sw.reserve()))
		return &FreezeBudgetError{Budget: b, Stage: "estimate", Estimate: est, Basis: basis}
	}
	rec := sw.d.lastSync(ctx, sw.to)
	if rec == nil {
		return nil
	}
	est := rec.Duration + sw.reserve()
	var basis string
	switch {
	case rec.StoppedBy == 0 && est > b:
		basis = fmt.Sprintf("the last sync onto %s moved %s in %s, plus %s for the move", sw.toName, mb(rec.Bytes), secs(rec.Duration), secs(sw.reserve()))
	case rec.StoppedBy > 0 && (b <= rec.StoppedBy || est >= b):
		basis = fmt.Sprintf("the last final sync onto %s was stopped by freeze_budget %s after %s and %s, unfinished (a lower bound)", sw.toName, rec.StoppedBy, mb(rec.Bytes), secs(rec.Duration))
		est = max(est, rec.StoppedBy)
	default:
		return nil
	}
	return &FreezeBudgetError{Budget: b, Stage: "estimate", Estimate: est, Basis: basis}
}

// waitIdle waits, before the freeze, until the droplet taking the IP has
// no action in progress, so the move inside the window need not: one API
// round trip (or a wait for an action) less while writes are frozen.
func (sw *switchover) waitIdle(ctx context.Context, m *Member) error {
	if sw.ip == "" {
		return nil
	}
	if err := sw.d.Cloud.WaitIdle(ctx, m.ID, sw.d.timeouts()); err != nil {
		return err
	}
	sw.idleChecked = true
	return nil
}

// idle reports whether waitIdle ran (nil: no switch, so no).
func (sw *switchover) idle() bool { return sw != nil && sw.idleChecked }
