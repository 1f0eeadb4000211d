package deploy

import (
	"context"
	"fmt"
	"time"
)

// PromoteResult is what `fleet promote` did.
type PromoteResult struct {
	ReservedIP string
	Live       Member
	Previous   *Member  // the droplet that was live, if any
	Created    bool     // the reserved IP was reserved by this promote
	Pruned     []Member // previous droplets destroyed beyond keep
	// With stack.data: the final backup carried from the old live droplet,
	// and how long writes were frozen (freeze until the IP moved, and the
	// forward ran, when holding).
	Data   *Transfer
	Freeze time.Duration
	// FreezeBudget is stack.data.freeze_budget and Window the freeze
	// window's phases (they sum to Freeze, but forward and move run at
	// once); 0 and nil without a freeze.
	FreezeBudget time.Duration
	Window       []WindowPhase
	// Held: what the old live droplet held during the freeze and
	// forwarded (stack.data.hold); nil without.
	Held *Held
	// AfterPromoteError: stack.after_promote failed (the promote stands).
	AfterPromoteError string
	// Resumed: an interrupted promote had already moved the IP; this one
	// finished its bookkeeping.
	Resumed bool
	Phases  []Phase
}

// Promote moves the reserved IP to the candidate: it becomes live and the
// droplet that was live becomes previous. Re-run after an interruption, it
// finishes (the IP had moved) or does it again (it had not).
func (d *Deployer) Promote(ctx context.Context, force bool) (*PromoteResult, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	cand := d.promotable(st, force)
	if cand == nil {
		if live := st.Live(); live != nil && !live.promoted() {
			return d.finishPromote(ctx, st, &PromoteResult{ReservedIP: st.ReservedIP.IP, Live: *live, Resumed: true})
		}
		return nil, &ConflictError{Msg: "no candidate to promote: run `fleet up VERSION` first"}
	}
	if cand.Status != "active" || cand.PublicIPv4 == "" {
		return nil, &ConflictError{Msg: fmt.Sprintf("candidate %s is %s and not ready: wait for `fleet up` to finish, or discard it with `fleet rollback`", cand.Name, cand.Status)}
	}
	if !cand.HasTag(TagHealthy) && !force {
		return nil, &ConflictError{Msg: fmt.Sprintf("candidate %s has not passed the readiness gate (SSH with its recorded host key, cloud-init, health paths): re-run `fleet up %s` to finish it, inspect it with `fleet ssh %s`, or pass --force to promote it anyway", cand.Name, cand.Version, cand.Name)}
	}
	if err := checkRegion(st.ReservedIP, cand); err != nil {
		return nil, err
	}
	res := &PromoteResult{Live: *cand, Previous: st.Live()}
	// Mark the old live droplet before anything is frozen, so it reads
	// as previous whatever happens after the move.
	if old := res.Previous; old != nil && !old.promoted() {
		if err := d.Cloud.Tag(ctx, old.ID, TagPromoted); err != nil {
			return nil, err
		}
	}
	// With a stack: freeze writes on the live droplet, carry its final
	// data over, and check the candidate again, before the IP moves.
	var sw *switchover
	if d.Spec.Stack != nil && (d.Spec.Stack.Data != nil || d.Spec.Stack.AfterPromote != "") {
		if sw, err = d.prepareSwitch(ctx, res.Previous, cand, ipOf(st)); err != nil {
			return nil, err
		}
		defer sw.close()
		res.Data = sw.transfer
	}
	if st.ReservedIP != nil {
		res.ReservedIP = st.ReservedIP.IP
		// With hold, the forward (the commit point) runs alongside.
		step := fmt.Sprintf("moving %s to %s", res.ReservedIP, cand.Name)
		if _, err := d.forwardAndMove(ctx, sw, res.ReservedIP, cand, "promote", step); err != nil {
			return nil, sw.abort(ctx, err)
		}
	} else {
		moveStart := time.Now()
		if res.ReservedIP, res.Created, err = d.reserve(ctx, st, cand); err != nil {
			return nil, sw.abort(ctx, err)
		}
		sw.timeMove(moveStart, time.Now())
	}
	res.Freeze = sw.moved()
	res.FreezeBudget, res.Window = sw.figures()
	sw.overran(res.Freeze)
	res.Held = sw.held()
	// The IP moved: finish even if interrupted, on a context of its own.
	ctx, cancel := afterCommit(ctx)
	defer cancel()
	if sw != nil && d.Spec.Stack.AfterPromote != "" && !interrupted(ctx) {
		d.step("running after_promote on %s", cand.Name)
		if err := d.runData(ctx, sw.to, "after_promote", d.Spec.Stack.AfterPromote, sw.out); err != nil {
			// The site is live on the new droplet: report, don't undo.
			res.AfterPromoteError = err.Error()
			d.warn("%v", err)
		}
	}
	// The state after the move is known: prune from it, without a re-read.
	for i := range st.Members {
		switch m := &st.Members[i]; m.ID {
		case cand.ID:
			m.Role = RoleLive
		case res.Previous.idOr0():
			m.Role = RolePrevious
			m.Tags = append(m.Tags, TagPromoted)
		}
	}
	if res.Previous != nil {
		res.Previous.Role = RolePrevious
	}
	return d.finishPromote(ctx, st, res)
}

// promotable is the droplet promote would move the IP to, or nil.
func (d *Deployer) promotable(st *State, force bool) *Member {
	if c := st.Candidate(); c != nil {
		return c
	}
	// --force may promote a candidate whose health gate failed.
	if force && d.Spec.Stack != nil && len(st.Members) > 0 {
		if m := &st.Members[0]; m.Role == RoleFailed && !m.promoted() {
			return m
		}
	}
	return nil
}

// finishPromote is the bookkeeping once the IP is on res.Live: mark it
// promoted, then prune beyond keep (skipped when interrupted).
func (d *Deployer) finishPromote(ctx context.Context, st *State, res *PromoteResult) (*PromoteResult, error) {
	live := st.member(res.Live.ID)
	if !res.Live.promoted() {
		if err := d.Cloud.Tag(ctx, res.Live.ID, TagPromoted); err != nil {
			return nil, fmt.Errorf("%s is live on %s, but tagging it %s failed: %w; re-run `fleet promote` to finish", res.Live.Name, res.ReservedIP, TagPromoted, err)
		}
		res.Live.Tags = append(res.Live.Tags, TagPromoted)
	}
	res.Live.Role = RoleLive
	if live != nil {
		live.Role, live.Tags = RoleLive, res.Live.Tags
	}
	// A promote is a new last step: no droplet is "made live by the last
	// rollback" any more.
	for i := range st.Members {
		if m := &st.Members[i]; m.HasTag(TagRollbackTarget) {
			if err := d.Cloud.Untag(ctx, m.ID, TagRollbackTarget); err != nil {
				return nil, fmt.Errorf("%s is live on %s, but clearing %s on %s failed: %w; re-run `fleet promote` to finish", res.Live.Name, res.ReservedIP, TagRollbackTarget, m.Name, err)
			}
		}
	}
	var err error
	if !interrupted(ctx) {
		res.Pruned, err = d.prune(ctx, st, d.Spec.Keep)
	}
	res.Phases = d.finishPhases()
	return res, err
}

// ipOf is the project's reserved IP, "" before the first promote.
func ipOf(st *State) string {
	if st.ReservedIP == nil {
		return ""
	}
	return st.ReservedIP.IP
}

func (m *Member) idOr0() int {
	if m == nil {
		return 0
	}
	return m.ID
}
