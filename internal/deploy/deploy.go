package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// Deployer runs the lifecycle of one spec against one cloud.
type Deployer struct {
	Cloud cloud.Cloud
	Spec  *spec.Spec
	// Step is told each phase as it starts (progress output); may be nil.
	Step func(phase string)
	// NewID makes deploy IDs; nil uses 6 random hex digits.
	NewID func() string
	// Remote reaches droplets over SSH, for stack deploys.
	Remote *Remote

	phases     []Phase
	phaseStart time.Time
	shipped    *ShipStats // what a local build shipped (stack.build: local)
	carried    *Transfer  // the live data restored onto the candidate
}

func (d *Deployer) step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := time.Now()
	if n := len(d.phases); n > 0 && d.phases[n-1].Duration == 0 {
		d.phases[n-1].Duration = now.Sub(d.phaseStart)
	}
	d.phases = append(d.phases, Phase{Name: msg})
	d.phaseStart = now
	if d.Step != nil {
		d.Step(msg)
	}
}

// Phase is one step of a command and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

// finishPhases closes the last phase and returns them all.
func (d *Deployer) finishPhases() []Phase {
	if n := len(d.phases); n > 0 && d.phases[n-1].Duration == 0 {
		d.phases[n-1].Duration = time.Since(d.phaseStart)
	}
	return d.phases
}

func (d *Deployer) timeouts() cloud.Timeouts {
	t := d.Spec.Timeouts
	return cloud.Timeouts{Create: t.Create, Active: t.Active, Assign: t.Assign}
}

func newID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// UpResult is what `fleet up` made.
type UpResult struct {
	Droplet Member
	Resumed bool    // an interrupted up of the same version was picked up
	Phases  []Phase // what took how long
	// With stack.build: local: compressed bytes of image layers sent from
	// this machine, and layers relayed from the live droplet instead.
	ShippedBytes int64
	ReusedLayers int
	// The live droplet's data restored onto the candidate, if any.
	Data *Transfer
}

// UpOptions tune `fleet up`.
type UpOptions struct {
	FromWorktree bool // deploy the working tree instead of the git tag
}

// Up creates a candidate droplet for version and, with a stack, deploys
// it and gates it on health. It never touches the live droplet or the
// reserved IP. A failed candidate is kept, tagged failed.
func (d *Deployer) Up(ctx context.Context, version string, opt UpOptions) (*UpResult, error) {
	if err := spec.ParseVersion(version); err != nil {
		return nil, err
	}
	// Every input is checked before anything is created.
	var stk *prepared
	if d.Spec.Stack != nil {
		var err error
		if stk, err = d.prepareStack(ctx, version, opt.FromWorktree); err != nil {
			return nil, err
		}
		defer stk.bundle.Close()
	}
	d.step("reading state of %s", d.Spec.Project)
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if c := st.Candidate(); c != nil {
		if c.Version != version {
			return nil, &ConflictError{Msg: fmt.Sprintf("candidate %s (%s) is waiting: promote it with `fleet promote`, or discard it with `fleet rollback`", c.Name, c.Version)}
		}
		// Same version: an earlier up was interrupted. Finish it.
		d.step("resuming %s", c.Name)
		ready, err := d.Cloud.WaitReady(ctx, &c.Droplet, 0, d.timeouts())
		if err == nil && stk != nil {
			err = d.deployStack(ctx, ready, version, stk, st.Live())
		}
		if err != nil {
			return nil, d.fail(ctx, &c.Droplet, err)
		}
		return d.upResult(&UpResult{Droplet: Member{Droplet: *ready, Version: version, Role: RoleCandidate}, Resumed: true, Phases: d.finishPhases()}), nil
	}

	id := newID()
	if d.NewID != nil {
		id = d.NewID()
	}
	name := spec.DropletName(d.Spec.Project, version, id)
	data := cloudinit.Data{Project: d.Spec.Project, Version: version, DropletName: name, DeployID: id, Stack: stk != nil}
	if stk != nil {
		// A host key of fleet's making means even the first SSH connection
		// is verified.
		if data.HostKey, err = cloudinit.NewHostKey(); err != nil {
			return nil, err
		}
	}
	userData, err := cloudinit.Render(d.Spec.Droplet.CloudInit, data)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	d.step("checking SSH keys")
	keys := make([]cloud.SSHKey, len(d.Spec.Droplet.SSHKeys))
	for i, k := range d.Spec.Droplet.SSHKeys {
		keys[i] = cloud.SSHKey{Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Name: k.Name}
	}
	fps, err := d.Cloud.EnsureSSHKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	tags := append([]string{ProjectTag(d.Spec.Project), VersionTag(version)}, d.Spec.Droplet.Tags...)
	if opt.FromWorktree {
		tags = append(tags, TagWorktree)
	}
	req := cloud.CreateRequest{
		Name: name, Region: d.Spec.Droplet.Region, Size: d.Spec.Droplet.Size, Image: d.Spec.Droplet.Image,
		SSHKeys: fps, Tags: tags, UserData: string(userData), DeployTag: DeployTag(id),
	}
	d.step("creating %s", name)
	dr, actionID, err := d.Cloud.CreateDroplet(ctx, req)
	if err != nil {
		// The create may have taken effect before it failed: find and mark it.
		return nil, d.fail(ctx, d.findByDeployTag(ctx, req.DeployTag), err)
	}
	d.step("waiting for %s to boot", name)
	ready, err := d.Cloud.WaitReady(ctx, dr, actionID, d.timeouts())
	if err == nil && stk != nil {
		if err = d.Remote.Dialer.KnownHosts.Pin(name, ready.PublicIPv4, data.HostKey.Public); err == nil {
			err = d.deployStack(ctx, ready, version, stk, st.Live())
		}
	}
	if err != nil {
		return nil, d.fail(ctx, dr, err)
	}
	return d.upResult(&UpResult{Droplet: Member{Droplet: *ready, Version: version, Role: RoleCandidate}, Phases: d.finishPhases()}), nil
}

// detached outlives an interrupted command just long enough to record
// what happened.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

func (d *Deployer) findByDeployTag(ctx context.Context, tag string) *cloud.Droplet {
	ctx, cancel := detached(ctx)
	defer cancel()
	ds, err := d.Cloud.ListByTag(ctx, tag)
	if err != nil || len(ds) == 0 {
		return nil
	}
	return &ds[0]
}

// fail tags the candidate failed, keeping it for inspection, and says how
// to remove it.
func (d *Deployer) fail(ctx context.Context, dr *cloud.Droplet, cause error) error {
	if dr == nil {
		return cause
	}
	tctx, cancel := detached(ctx)
	defer cancel()
	hint := fmt.Sprintf("the live droplet and the reserved IP are untouched; %s is kept, marked failed: remove it with `fleet rollback` or `fleet destroy %s`", dr.Name, dr.Name)
	if d.Spec.Stack != nil {
		hint += fmt.Sprintf("; inspect it with `fleet logs --droplet %s` or `fleet ssh %s`", dr.Name, dr.Name)
	}
	if err := d.Cloud.Tag(tctx, dr.ID, TagFailed); err != nil {
		hint = fmt.Sprintf("the live droplet and the reserved IP are untouched; marking %s failed also failed (%v): remove it with `fleet destroy %s`", dr.Name, err, dr.Name)
	}
	return &DeployError{Droplet: dr.Name, Err: cause, Hint: hint}
}

// PromoteResult is what `fleet promote` did.
type PromoteResult struct {
	ReservedIP string
	Live       Member
	Previous   *Member  // the droplet that was live, if any
	Created    bool     // the reserved IP was reserved by this promote
	Pruned     []Member // previous droplets destroyed beyond keep
	// With stack.data: the final backup carried from the old live droplet,
	// and how long writes were frozen (freeze until the IP moved).
	Data   *Transfer
	Freeze time.Duration
	// AfterPromoteError: stack.after_promote failed (the promote stands).
	AfterPromoteError string
	Phases            []Phase
}

// Promote moves the reserved IP to the candidate: it becomes live and the
// droplet that was live becomes previous.
func (d *Deployer) Promote(ctx context.Context, force bool) (*PromoteResult, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	cand := st.Candidate()
	if cand == nil && force && d.Spec.Stack != nil {
		// --force may promote a candidate whose health gate failed.
		if len(st.Members) > 0 && st.Members[0].Role == RoleFailed && !st.Members[0].promoted() {
			cand = &st.Members[0]
		}
	}
	if cand == nil {
		return nil, &ConflictError{Msg: "no candidate to promote: run `fleet up VERSION` first"}
	}
	if cand.Status != "active" || cand.PublicIPv4 == "" {
		return nil, &ConflictError{Msg: fmt.Sprintf("candidate %s is %s and not ready: wait for `fleet up` to finish, or discard it with `fleet rollback`", cand.Name, cand.Status)}
	}
	if d.Spec.Stack != nil && !cand.HasTag(TagHealthy) && !force {
		return nil, &ConflictError{Msg: fmt.Sprintf("candidate %s has not passed the health gate: see `fleet logs --droplet %s`, or pass --force to promote it anyway", cand.Name, cand.Name)}
	}
	res := &PromoteResult{Live: *cand}
	old := st.Live()
	// With a stack: freeze writes on the live droplet, carry its final
	// data over, and check the candidate again, before the IP moves.
	var sw *switchover
	if d.Spec.Stack != nil && (d.Spec.Stack.Data != nil || d.Spec.Stack.AfterPromote != "") {
		if sw, err = d.prepareSwitch(ctx, old, cand); err != nil {
			return nil, err
		}
		defer sw.close()
		res.Data = sw.transfer
	}
	if old != nil {
		res.Previous = old
		// Mark the old live droplet before the move, so it reads as
		// previous whatever happens after.
		if !old.promoted() {
			if err := d.Cloud.Tag(ctx, old.ID, TagPromoted); err != nil {
				return nil, err
			}
		}
	}
	if st.ReservedIP != nil {
		res.ReservedIP = st.ReservedIP.IP
		d.step("moving %s to %s", res.ReservedIP, cand.Name)
		if err := d.Cloud.Assign(ctx, res.ReservedIP, cand.ID, d.timeouts()); err != nil {
			return nil, sw.abort(ctx, err)
		}
	} else {
		d.step("reserving an IP for %s", cand.Name)
		r, err := d.Cloud.CreateReservedIP(ctx, cand.ID, d.timeouts())
		if err != nil {
			return nil, sw.abort(ctx, err)
		}
		res.ReservedIP, res.Created = r.IP, true
	}
	res.Freeze = sw.moved()
	if sw != nil && d.Spec.Stack.AfterPromote != "" {
		d.step("running after_promote on %s", cand.Name)
		if err := d.runData(ctx, sw.to, "after_promote", d.Spec.Stack.AfterPromote, sw.out); err != nil {
			// The site is live on the new droplet: report, don't undo.
			res.AfterPromoteError = err.Error()
			d.warn("%v", err)
		}
	}
	if err := d.Cloud.Tag(ctx, cand.ID, TagPromoted); err != nil {
		return nil, fmt.Errorf("%s is live, but tagging it %s failed: %w", cand.Name, TagPromoted, err)
	}
	res.Live.Role = RoleLive
	if res.Previous != nil {
		res.Previous.Role = RolePrevious
	}
	// The state after the move is known: prune from it, without a re-read.
	for i := range st.Members {
		switch m := &st.Members[i]; m.ID {
		case cand.ID:
			m.Role = RoleLive
			m.Tags = append(m.Tags, TagPromoted)
		case res.Previous.idOr0():
			m.Role = RolePrevious
		}
	}
	res.Pruned, err = d.prune(ctx, st, d.Spec.Keep)
	res.Phases = d.finishPhases()
	return res, err
}

func (m *Member) idOr0() int {
	if m == nil {
		return 0
	}
	return m.ID
}

// RollbackResult is what `fleet rollback` did.
type RollbackResult struct {
	Destroyed  *Member // the unpromoted candidate that was discarded
	ReservedIP string
	Live       *Member // the droplet live again
	Failed     *Member // the droplet rolled back from
	// With stack.data: writes made since the promote (-1 unknown), the
	// archive that carried them back (nil when none needed to go), whether
	// they were discarded, and how long writes were frozen.
	Writes    int
	Data      *Transfer
	Discarded bool
	Freeze    time.Duration
}

// Rollback undoes the last step. After an up (the newest droplet was never
// promoted) it destroys that candidate; after a promote it moves the IP
// back to the newest previous droplet and marks the one it left failed.
// RollbackOptions tune a rollback after a promote.
type RollbackOptions struct {
	// DiscardWrites rolls back even when the writes made since the
	// promote cannot be carried back to the previous droplet.
	DiscardWrites bool
}

func (d *Deployer) Rollback(ctx context.Context, opt RollbackOptions) (*RollbackResult, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Members) == 0 {
		return nil, &ConflictError{Msg: "nothing to roll back: project " + st.Project + " has no droplets"}
	}
	if newest := st.Members[0]; newest.Role != RoleLive && !newest.promoted() {
		d.step("destroying candidate %s", newest.Name)
		if err := d.Cloud.DeleteDroplet(ctx, newest.ID); err != nil {
			return nil, err
		}
		d.forget(newest.Name)
		return &RollbackResult{Destroyed: &newest}, nil
	}
	prev := st.Previous()
	if prev == nil {
		return nil, &ConflictError{Msg: "nothing to roll back to: no previous droplet is left (keep: " + fmt.Sprint(d.Spec.Keep) + ")"}
	}
	if st.ReservedIP == nil {
		return nil, &ConflictError{Msg: "no reserved IP is assigned to a droplet of " + st.Project}
	}
	live := st.Live()
	res := &RollbackResult{ReservedIP: st.ReservedIP.IP, Live: prev, Writes: -1}
	var sw *switchover
	if live != nil && d.Spec.Stack != nil && d.Spec.Stack.Data != nil {
		if sw, res.Writes, err = d.prepareRollback(ctx, live, prev, opt.DiscardWrites); err != nil {
			return nil, err
		}
		defer sw.close()
		res.Data = sw.transfer
		res.Discarded = opt.DiscardWrites && res.Writes != 0
	}
	if live != nil {
		// Failed first: if the move then fails, the IP still says live,
		// and the droplet is never again taken as a rollback target.
		if err := d.Cloud.Tag(ctx, live.ID, TagFailed); err != nil {
			return nil, sw.abort(ctx, err)
		}
		res.Failed = live
	}
	d.step("moving %s back to %s", res.ReservedIP, prev.Name)
	if err := d.Cloud.Assign(ctx, res.ReservedIP, prev.ID, d.timeouts()); err != nil {
		if live != nil {
			uctx, cancel := detached(ctx)
			defer cancel()
			if uerr := d.Cloud.Untag(uctx, live.ID, TagFailed); uerr != nil {
				err = errors.Join(err, fmt.Errorf("also could not clear %s on %s: %w", TagFailed, live.Name, uerr))
			}
		}
		return nil, sw.abort(ctx, err)
	}
	res.Freeze = sw.moved()
	prev.Role = RoleLive
	if live != nil {
		live.Role = RoleFailed
	}
	return res, nil
}

// Prune destroys all but the keep newest previous droplets, and every
// failed droplet: neither is a rollback target any more.
func (d *Deployer) Prune(ctx context.Context, keep int) ([]Member, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	return d.prune(ctx, st, keep)
}

func (d *Deployer) prune(ctx context.Context, st *State, keep int) ([]Member, error) {
	var doomed []Member
	kept := 0
	for _, m := range st.Members {
		switch m.Role {
		case RolePrevious:
			if kept < keep {
				kept++
				continue
			}
			doomed = append(doomed, m)
		case RoleFailed:
			if m.promoted() || !d.isNewest(st, m) {
				doomed = append(doomed, m)
			}
		}
	}
	var done []Member
	for _, m := range doomed {
		d.step("destroying %s (%s)", m.Name, m.Role)
		if err := d.Cloud.DeleteDroplet(ctx, m.ID); err != nil {
			return done, err
		}
		d.forget(m.Name)
		done = append(done, m)
	}
	return done, nil
}

// forget drops a destroyed droplet's pinned host key; the name is never
// reused, so a leftover pin is only clutter.
func (d *Deployer) forget(name string) {
	if d.Remote != nil && d.Remote.Dialer != nil {
		_ = d.Remote.Dialer.KnownHosts.Forget(name)
	}
}

// isNewest reports whether m is the newest droplet: a failed candidate
// that is the last step is kept for inspection until rollback removes it.
func (d *Deployer) isNewest(st *State, m Member) bool {
	return len(st.Members) > 0 && st.Members[0].ID == m.ID
}

// Destroy destroys the named droplets. Every name is checked before any
// droplet is touched; the live droplet needs force.
func (d *Deployer) Destroy(ctx context.Context, names []string, force bool) ([]Member, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	var targets []Member
	for _, n := range names {
		m := st.Find(n)
		if m == nil {
			return nil, &ConflictError{Msg: fmt.Sprintf("no droplet %q in project %s (droplets: %v)", n, st.Project, st.Names())}
		}
		if m.Role == RoleLive && !force {
			return nil, &ConflictError{Msg: fmt.Sprintf("%s is live (it holds %s): promote or roll back first, or pass --force to destroy it anyway", m.Name, st.ReservedIP.IP)}
		}
		targets = append(targets, *m)
	}
	var done []Member
	for _, m := range targets {
		d.step("destroying %s", m.Name)
		if err := d.Cloud.DeleteDroplet(ctx, m.ID); err != nil {
			return done, err
		}
		d.forget(m.Name)
		done = append(done, m)
	}
	return done, nil
}
