package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/fleetdeploy/fleet/internal/spec"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// Hold and forward (stack.data.hold/forward; stacks/blog/README.md "Hold
// and forward"). Opted in, the droplet giving up the IP holds writes
// instead of refusing them (hold), and once the droplet taking it is
// writable it forwards what it holds, and every later request, there over
// the private network (forward). From the forward on, the droplet taking
// the IP may have acknowledged writes: that is the switch's commit point.
// After it nothing is undone; a failed move is retried, then reported as a
// *ForwardingError, and a re-run finds the marker the forward wrote and
// only moves the IP.

// forwardPort is where the droplet taking the IP serves the site (nginx,
// TLS: the forwarding side pins the site's own key).
const forwardPort = "443"

// holdMargin is how much longer than the freeze budget a write may wait
// before it gets today's 503: it covers what follows the budgeted sync
// until the forward (health, unfreeze, forward: 1.4 s measured idle in
// TestBlog, about twice that under its load).
const holdMargin = 3 * time.Second

// maxHold is the longest hold the blog's stack accepts (fleet-data and the
// gate refuse FLEET_HOLD_MS over 120000): a larger budget holds writes
// that long, then 503s them, rather than failing the hold.
const maxHold = 120 * time.Second

// forwardMarkerFile names, on the droplet that forwards, the droplet ID it
// forwards to. It counts only while newer than the droplet's promoted-at:
// a droplet made live again since is not forwarding.
func forwardMarkerFile(project string) string { return "/etc/fleet/" + project + "/forwarding-to" }

// Held is what the forwarding droplet's gate held during the freeze.
type Held struct {
	Count     int   `json:"count"`      // writes held
	LongestMS int64 `json:"longest_ms"` // the longest a held write waited for the forward
}

// forwarding is a switch's hold-and-forward state.
type forwarding struct {
	target  *Member // the droplet taking the IP
	addr    string  // its private ip:443
	tried   bool    // startForward ran
	started bool    // forward ran, or may have: past the commit point
	resumed bool    // an earlier run had started it: the data is there already
	held    *Held
	at      time.Time
}

// ForwardingError is a move that failed after the droplet giving up the IP
// started forwarding to the one taking it: the latter may hold acknowledged
// writes, so fleet undid nothing. The site works (through the forward);
// a re-run of the command moves the IP.
type ForwardingError struct {
	IP, From, To string
	Command      string // promote or rollback
	Err          error
}

func (e *ForwardingError) Error() string {
	return fmt.Sprintf("moving %s to %s failed after %s started forwarding every request to it: %v\n"+
		"%s holds acknowledged writes, so nothing was undone: the site is served by %s through %s; re-run `fleet %s`: it finds the forward and only moves the IP",
		e.IP, e.To, e.From, e.Err, e.To, e.To, e.From, e.Command)
}

// planForward decides, before the freeze, whether this switch to target
// holds and forwards: the stack opts in and target has a private address
// in the same network as the droplet giving up the IP.
func (sw *switchover) planForward(target *Member) {
	data := sw.d.Spec.Stack.Data
	if data == nil || data.Hold == "" || data.Forward == "" || sw.fromM == nil {
		return
	}
	switch {
	case target.PrivateIPv4 == "":
		sw.d.warn("%s has no private address: writes are refused during the freeze, not held", target.Name)
		return
	case sw.fromM.VPCUUID != "" && target.VPCUUID != "" && sw.fromM.VPCUUID != target.VPCUUID:
		sw.d.warn("%s and %s are in different VPCs: writes are refused during the freeze, not held", sw.fromM.Name, target.Name)
		return
	}
	sw.fw = &forwarding{target: target, addr: net.JoinHostPort(target.PrivateIPv4, forwardPort)}
}

// holdFor is how long the droplet giving up the IP holds a write: the
// freeze budget (spec's default when none is set) plus holdMargin.
func (sw *switchover) holdFor() time.Duration {
	b := sw.budget()
	if b <= 0 {
		b = spec.DefaultFreezeBudget
	}
	return min(b+holdMargin, maxHold)
}

// freezeFrom freezes the droplet giving up the IP: hold when forwarding,
// else the stack's freeze.
func (sw *switchover) freezeFrom(ctx context.Context) error {
	d, data := sw.d, sw.d.Spec.Stack.Data
	if sw.fw == nil {
		return d.runData(ctx, sw.from, "freeze", data.Freeze, sw.out)
	}
	ms := strconv.FormatInt(sw.holdFor().Milliseconds(), 10)
	if err := sw.from.Run(ctx, dataCmd(d.Spec.Project, data.Hold, "FLEET_HOLD_MS="+ms), nil, sw.out.stdout, sw.out.stderr); err != nil {
		return fmt.Errorf("hold on %s: %w", sw.from.Droplet(), err)
	}
	return nil
}

// markerCheck is the shell line that prints the marker's droplet ID if it
// is newer than the droplet's promoted-at.
func markerCheck(project string) string {
	return ifFreshMarker(project, sh("cat", forwardMarkerFile(project)))
}

// ifFreshMarker runs cmd if the forward marker is newer than promoted-at.
func ifFreshMarker(project, cmd string) string {
	return ifFresh(project, forwardMarkerFile(project), cmd)
}

// ifFresh runs cmd if file is newer than the droplet's promoted-at (a
// droplet made live since does not count it).
func ifFresh(project, file, cmd string) string {
	m, p := word(file), word(promotedAtFile(project))
	return "if [ -f " + m + " ] && { [ ! -f " + p + " ] || [ " + m + " -nt " + p + " ]; }; then " + cmd + "; fi"
}

// forwardTarget is the droplet ID c's fresh marker names; 0 when none.
func (d *Deployer) forwardTarget(ctx context.Context, c *remote.Client) (int, error) {
	out, err := c.Output(ctx, markerCheck(d.Spec.Project))
	if err != nil {
		return 0, fmt.Errorf("reading %s on %s: %w", forwardMarkerFile(d.Spec.Project), c.Droplet(), err)
	}
	id, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || id < 0 {
		return 0, nil
	}
	return id, nil
}

// forwardsTo reports whether c's fresh marker names the droplet id.
func (d *Deployer) forwardsTo(ctx context.Context, c *remote.Client, id int) (bool, error) {
	t, err := d.forwardTarget(ctx, c)
	return err == nil && t != 0 && t == id, err
}

// notForwarding refuses to read data from a live droplet that forwards
// since a switch that stopped past its commit point: the droplet it
// forwards to holds acknowledged writes this one lacks.
func (d *Deployer) notForwarding(ctx context.Context, c *remote.Client, name string) error {
	if data := d.Spec.Stack.Data; data == nil || data.Forward == "" {
		return nil
	}
	t, err := d.forwardTarget(ctx, c)
	if err != nil || t == 0 {
		return err
	}
	return forwardingConflict(name, t)
}

func forwardingConflict(name string, t int) error {
	return &ConflictError{Msg: fmt.Sprintf("%s forwards to droplet %d since a promote or rollback that stopped past its commit point: that droplet holds writes %s lacks; re-run that `fleet promote` or `fleet rollback` to finish it first", name, t, name)}
}

// resumeForward reports whether an earlier run of this switch got past
// its commit point: the droplet giving up the IP forwards to target
// already, which holds the final data and acknowledged writes. Then no
// data may move again (it would overwrite them): only the IP does.
func (sw *switchover) resumeForward(ctx context.Context, target *Member) (bool, error) {
	if sw.from == nil || sw.d.Spec.Stack.Data == nil || sw.d.Spec.Stack.Data.Forward == "" {
		return false, nil
	}
	t, err := sw.d.forwardTarget(ctx, sw.from)
	if err != nil || t == 0 {
		return false, err
	}
	if t != target.ID {
		// Carrying data from it now would overwrite what t acknowledged.
		return false, forwardingConflict(sw.fromName, t)
	}
	sw.d.step("%s forwards to %s since an earlier run: only the IP moves", sw.fromName, target.Name)
	sw.fw = &forwarding{target: target, started: true, resumed: true, at: time.Now()}
	return true, nil
}

// startForward runs the stack's forward on the droplet giving up the IP,
// with the marker written first in the same run (removed again when the
// stack says it could not forward, exit 4). Any other outcome counts as
// started: an unknown one may have forwarded writes. It runs alongside
// the move, so it returns its warning rather than printing it.
func (sw *switchover) startForward(ctx context.Context) (warning string) {
	fw := sw.fw
	fw.tried = true
	d := sw.d
	p := d.Spec.Project
	mk := forwardMarkerFile(p)
	line := forwardLine(p, mk, fw.target.ID, fw.addr, d.Spec.Stack.Data.Forward)
	var so bytes.Buffer
	err := sw.from.Run(ctx, line, nil, &so, sw.out.stderr)
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Code == 4 {
		return fmt.Sprintf("%s cannot forward to %s (%s): writes held there get 503 at their deadline, as without hold", sw.fromName, fw.target.Name, strings.TrimSpace(ee.Stderr))
	}
	fw.started, fw.at = true, time.Now()
	if err != nil {
		return fmt.Sprintf("forward on %s: %v; fleet goes on as if it forwards (%s may hold acknowledged writes)", sw.fromName, err, fw.target.Name)
	}
	fw.held = parseHeld(so.String())
	return ""
}

// forwardLine writes the marker (naming id), then runs the stack's
// forward to addr; on its exit 4 (nothing forwarded) the marker goes again.
func forwardLine(project, marker string, id int, addr, forward string) string {
	return recordLine(project, marker, strconv.Itoa(id)) +
		" && { " + dataCmd(project, forward, "FLEET_FORWARD_TO="+addr) +
		"; rc=$?; if [ $rc -eq 4 ]; then " + sh("rm", "-f", marker) + "; fi; exit $rc; }"
}

// parseHeld reads "… held=N longest_ms=M …" from forward's output; nil if
// it says neither.
func parseHeld(out string) *Held {
	var h Held
	found := false
	for _, f := range strings.Fields(lastLine(out)) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch k {
		case "held":
			h.Count, found = int(min(n, 1<<31-1)), true
		case "longest_ms":
			h.LongestMS, found = n, true
		}
	}
	if !found {
		return nil
	}
	return &h
}

// forwarding reports whether the switch is past its commit point.
func (sw *switchover) forwarding() bool { return sw != nil && sw.fw != nil && sw.fw.started }

// held is the hold's figures, nil without one.
func (sw *switchover) held() *Held {
	if sw == nil || sw.fw == nil {
		return nil
	}
	return sw.fw.held
}

// forwardAndMove moves ip to target and, when the switch holds, runs the
// forward (the commit point) at the same time: the move never depended
// on the forward's outcome (one the stack refuses moves too, as without
// hold), so the window's last two phases overlap. Either order is safe:
// the IP first sends new writes to a writable target with the final data
// while the held ones wait a little longer; the forward first sends them
// over the private network. The outcome is decided once both are done:
// past the commit point a failed move is tried once more, then returned
// as a *ForwardingError, which abort leaves alone. step is the move's
// progress line.
func (d *Deployer) forwardAndMove(ctx context.Context, sw *switchover, ip string, target *Member, command, step string) (bool, error) {
	fwd := sw.pendingForward()
	if fwd {
		d.step("forwarding %s to %s (%s) while %s", sw.fromName, target.Name, sw.fw.addr, step)
	} else {
		d.step("%s", step)
	}
	start := time.Now()
	var warning string
	var fwEnd time.Time
	done := make(chan struct{})
	if fwd {
		go func() {
			defer close(done)
			warning = sw.startForward(ctx)
			fwEnd = time.Now()
		}()
	} else {
		close(done)
	}
	moved, err := d.move(ctx, ip, target, sw.idle())
	moveEnd := time.Now()
	<-done
	if fwd {
		sw.timeForward(start, fwEnd)
		if warning != "" {
			d.warn("%s", warning)
		}
	}
	if sw.forwarding() {
		// This run's forward, or an earlier run's it resumed: the droplet
		// drains its connections through it after the move.
		d.markForwarding(sw.fromM)
	}
	if err == nil || !sw.forwarding() {
		sw.timeMove(start, moveEnd)
		return moved, err
	}
	d.warn("moving %s to %s: %v; %s forwards to it, so fleet tries once more", ip, target.Name, err, sw.fromName)
	moved, err = d.move(ctx, ip, target, false)
	sw.timeMove(start, time.Now())
	if err == nil {
		return moved, nil
	}
	return false, &ForwardingError{IP: ip, From: sw.fromName, To: target.Name, Command: command, Err: err}
}

// pendingForward reports whether this switch holds and has not tried its
// forward yet (nil-safe).
func (sw *switchover) pendingForward() bool {
	return sw != nil && sw.fw != nil && !sw.fw.tried && !sw.fw.started && sw.from != nil
}

// markForwarding records, for prune in this run, that m forwards: its
// open connections drain through it after the move.
func (d *Deployer) markForwarding(m *Member) {
	if m == nil {
		return
	}
	if d.forwardingFrom == nil {
		d.forwardingFrom = map[int]bool{}
	}
	d.forwardingFrom[m.ID] = true
}

// forwardDrain is how long after its forward began a droplet may still
// serve connections that reached it before the move (the local cloud
// drains them for 30 s; on DigitalOcean the move resets them): a prune of
// its own keeps it that long.
const forwardDrain = time.Minute

// keepDraining marks, before a prune of its own (not a promote's or a
// rollback's), the droplets prune would destroy that may still forward to
// the live droplet: only within forwardDrain of the reserved IP's last
// move (the API says when), a promoted droplet whose fresh marker names
// the live one and is younger than that, or whose marker fleet cannot read.
func (d *Deployer) keepDraining(ctx context.Context, st *State, keep int) {
	s, live := d.Spec.Stack, st.Live()
	if s == nil || s.Data == nil || s.Data.Forward == "" || live == nil || st.ReservedIP == nil {
		return
	}
	var maybe []Member // newest first: the one that gave up the IP is among them
	for _, m := range d.pruneTargets(st, keep) {
		if m.promoted() && len(maybe) < maxDrainChecks {
			maybe = append(maybe, m)
		}
	}
	if len(maybe) == 0 {
		return
	}
	moved, err := d.Cloud.LastMove(ctx, st.ReservedIP.IP)
	if err != nil {
		d.warn("cannot tell when %s last moved (%v): asking the droplets whether they forward", st.ReservedIP.IP, err)
	} else if moved.IsZero() || time.Since(moved) >= forwardDrain {
		return
	}
	for i := range maybe {
		m := &maybe[i]
		id, age, err := d.forwardAge(ctx, m)
		switch {
		case err != nil:
			d.warn("cannot tell whether %s still forwards to %s (%v)", m.Name, live.Name, err)
		case id != live.ID || age >= forwardDrain:
			continue
		}
		d.markForwarding(m)
	}
}

// maxDrainChecks bounds the droplets a prune asks whether they forward.
const maxDrainChecks = 3

// forwardAge reads m's fresh forward marker: the droplet ID it names (0:
// none) and its age by m's own clock (0 when m cannot tell).
func (d *Deployer) forwardAge(ctx context.Context, m *Member) (int, time.Duration, error) {
	c, err := d.dialMember(ctx, m)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	mk := forwardMarkerFile(d.Spec.Project)
	line := ifFreshMarker(d.Spec.Project, sh("cat", mk)+" && echo $(( $(date +%s) - $(stat -c %Y "+word(mk)+") ))")
	out, err := c.Output(ctx, line)
	if err != nil {
		return 0, 0, fmt.Errorf("reading %s on %s: %w", forwardMarkerFile(d.Spec.Project), m.Name, err)
	}
	return parseForwardAge(string(out))
}

// parseForwardAge reads "ID\nSECONDS\n"; nothing is no marker.
func parseForwardAge(out string) (int, time.Duration, error) {
	f := strings.Fields(out)
	if len(f) == 0 {
		return 0, 0, nil
	}
	id, err := strconv.Atoi(f[0])
	if err != nil || id <= 0 || len(f) > 2 {
		return 0, 0, fmt.Errorf("unexpected forward marker %.80q", out)
	}
	if len(f) == 1 {
		return id, 0, nil
	}
	s, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || s < 0 || s > 1<<32 {
		return id, 0, nil // a clock set back, or no stat: count it as fresh
	}
	return id, time.Duration(s) * time.Second, nil
}

// keepForwarding reports whether prune must keep m: it forwards to the
// droplet this run made live, and its connections are draining through it.
func (d *Deployer) keepForwarding(m Member) bool {
	if !d.forwardingFrom[m.ID] {
		return false
	}
	d.warn("keeping %s: it forwards to the new live droplet while its connections drain; `fleet prune` removes it later", m.Name)
	return true
}

// refuseDiscard refuses to destroy candidate c when the live droplet
// forwards to it: an interrupted promote got past its commit point, and c
// holds acknowledged writes.
func (d *Deployer) refuseDiscard(ctx context.Context, c, live *Member) error {
	if live == nil || d.Spec.Stack == nil || d.Spec.Stack.Data == nil || d.Spec.Stack.Data.Forward == "" {
		return nil
	}
	lc, err := d.dialMember(ctx, live)
	if err != nil {
		return &ConflictError{Msg: fmt.Sprintf("cannot tell whether %s forwards to %s (%v): not discarding it, it may hold acknowledged writes; retry, or `fleet destroy %s` to remove it anyway", live.Name, c.Name, err, c.Name)}
	}
	defer lc.Close()
	fwd, err := d.forwardsTo(ctx, lc, c.ID)
	if err != nil {
		return &ConflictError{Msg: fmt.Sprintf("cannot tell whether %s forwards to %s (%v): not discarding it, it may hold acknowledged writes; retry, or `fleet destroy %s` to remove it anyway", live.Name, c.Name, err, c.Name)}
	}
	if fwd {
		return &ConflictError{Msg: fmt.Sprintf("%s forwards every request to candidate %s (a promote was interrupted after its commit point): %s holds acknowledged writes; run `fleet promote` to finish (it only moves the IP)", live.Name, c.Name, c.Name)}
	}
	return nil
}
