package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

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
	// FreezeBudget is stack.data.freeze_budget and Window the freeze
	// window's phases (they sum to Freeze, but forward and move run at
	// once); 0 and nil without a freeze.
	FreezeBudget time.Duration
	Window       []WindowPhase
	Held         *Held // stack.data.hold: what live held and forwarded; nil without
	// AlreadyDone: the last rollback (perhaps interrupted after its move)
	// had made Live live; nothing was changed. RollbackOptions.Further
	// rolls back one more release.
	AlreadyDone bool
}

// RollbackOptions tune a rollback after a promote.
type RollbackOptions struct {
	// DiscardWrites rolls back even when the writes made since the
	// promote cannot be carried back to the previous droplet.
	DiscardWrites bool
	// Further rolls back past a droplet that the last rollback made live.
	Further bool
}

// Rollback undoes the last step. After an up (the newest droplet was never
// promoted) it destroys that candidate; after a promote it moves the IP
// back to the newest previous droplet and marks the one it left failed.
//
// The droplet a rollback leaves live keeps the fleet-rollback-target mark,
// set before the move, until the next promote: a re-run after an
// interruption (or after a success the operator never saw) finds the step
// done, or redoes it if the IP had not moved. It never rolls back one
// release further unless opt.Further says so.
func (d *Deployer) Rollback(ctx context.Context, opt RollbackOptions) (*RollbackResult, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Members) == 0 {
		return nil, &ConflictError{Msg: "nothing to roll back: project " + st.Project + " has no droplets"}
	}
	if newest := st.Members[0]; newest.Role != RoleLive && !newest.promoted() {
		return d.discardCandidate(ctx, &newest, st.Live())
	}
	prev := st.tagged(TagRollbackTarget)
	switch {
	case prev != nil && prev.Role == RoleLive && !opt.Further:
		return d.rolledBack(st, prev), nil
	case prev == nil || prev.Role == RoleLive:
		// No rollback under way, or --further past the droplet the last
		// one made live (its mark goes once the IP has left it).
		prev = st.Previous()
	}
	if prev == nil {
		return nil, &ConflictError{Msg: "nothing to roll back to: no previous droplet is left (keep: " + fmt.Sprint(d.Spec.Keep) + ")"}
	}
	if st.ReservedIP == nil {
		return nil, &ConflictError{Msg: "no reserved IP is assigned to a droplet of " + st.Project}
	}
	if err := checkRegion(st.ReservedIP, prev); err != nil {
		return nil, err
	}
	live := st.Live()
	res := &RollbackResult{ReservedIP: st.ReservedIP.IP, Live: prev, Failed: live, Writes: -1}
	var sw *switchover
	if live != nil && d.Spec.Stack != nil && d.Spec.Stack.Data != nil {
		if sw, res.Writes, err = d.prepareRollback(ctx, live, prev, res.ReservedIP, opt.DiscardWrites); err != nil {
			return nil, err
		}
		defer sw.close()
		res.Data = sw.transfer
		res.Discarded = opt.DiscardWrites && res.Writes > 0 // -1: unknown, or a resumed rollback
	}
	if err := d.markRollback(ctx, prev, live); err != nil {
		return nil, sw.abort(ctx, d.unmarkRollback(ctx, prev, live, err))
	}
	// With hold, the forward (the commit point) runs alongside.
	step := fmt.Sprintf("moving %s back to %s", res.ReservedIP, prev.Name)
	if _, err := d.forwardAndMove(ctx, sw, res.ReservedIP, prev, "rollback", step); err != nil {
		var nm *NotMovedError
		if errors.As(err, &nm) {
			err = d.unmarkRollback(ctx, prev, live, err)
		}
		return nil, sw.abort(ctx, err)
	}
	res.Freeze = sw.moved()
	res.FreezeBudget, res.Window = sw.figures()
	sw.overran(res.Freeze)
	res.Held = sw.held()
	ctx, cancel := afterCommit(ctx)
	defer cancel()
	res, err = d.finishRollback(ctx, res)
	if err == nil {
		res.Writes = sw.recounted(ctx, res.Writes)
	}
	return res, err
}

// markRollback records the target, then marks the live droplet failed:
// from here on the droplet left behind is never again a rollback target,
// and a re-run knows where this rollback was going.
func (d *Deployer) markRollback(ctx context.Context, prev, live *Member) error {
	if err := d.Cloud.Tag(ctx, prev.ID, TagRollbackTarget); err != nil {
		return err
	}
	if live != nil {
		if err := d.Cloud.Tag(ctx, live.ID, TagFailed); err != nil {
			return err
		}
		live.Tags = append(live.Tags, TagFailed) // the result reports it failed
	}
	return nil
}

// unmarkRollback undoes markRollback after a move that, read back, did
// not happen.
func (d *Deployer) unmarkRollback(ctx context.Context, prev, live *Member, cause error) error {
	uctx, cancel := detached(ctx)
	defer cancel()
	if live != nil {
		if err := d.Cloud.Untag(uctx, live.ID, TagFailed); err != nil {
			cause = errors.Join(cause, fmt.Errorf("also could not clear %s on %s: %w", TagFailed, live.Name, err))
		}
	}
	if err := d.Cloud.Untag(uctx, prev.ID, TagRollbackTarget); err != nil {
		cause = errors.Join(cause, fmt.Errorf("also could not clear %s on %s: %w", TagRollbackTarget, prev.Name, err))
	}
	return cause
}

// rolledBack is the result of a rollback already done: prev is live and
// carries the mark; the droplet it left is the newest failed one.
func (d *Deployer) rolledBack(st *State, prev *Member) *RollbackResult {
	d.step("the last rollback is done: %s is live", prev.Name)
	res := &RollbackResult{ReservedIP: st.ReservedIP.IP, Live: prev, Writes: -1, AlreadyDone: true}
	for i := range st.Members {
		if m := &st.Members[i]; m.Role == RoleFailed && m.promoted() {
			res.Failed = m
			break
		}
	}
	return res
}

// finishRollback is the bookkeeping once the IP is on res.Live: the
// droplet left behind was marked failed before the move, and the mark on
// res.Live stays until the next promote.
func (d *Deployer) finishRollback(ctx context.Context, res *RollbackResult) (*RollbackResult, error) {
	if f := res.Failed; f != nil && f.HasTag(TagRollbackTarget) {
		// --further: the mark of the rollback before. A failed droplet's
		// mark is never read, so a failure here is only clutter.
		if err := d.Cloud.Untag(ctx, f.ID, TagRollbackTarget); err != nil {
			d.warn("clearing %s on %s: %v", TagRollbackTarget, f.Name, err)
		}
	}
	res.Live.Role = RoleLive
	if res.Failed != nil {
		res.Failed.Role = RoleFailed
	}
	return res, nil
}

// discardCandidate destroys the newest droplet, never promoted. The live
// droplet, if any, is marked as the rollback's target first: a re-run
// after the destroy finds the step done, instead of rolling back further.
func (d *Deployer) discardCandidate(ctx context.Context, c, live *Member) (*RollbackResult, error) {
	if err := d.refuseDiscard(ctx, c, live); err != nil { // forward.go
		return nil, err
	}
	if live != nil && !live.HasTag(TagRollbackTarget) {
		if err := d.Cloud.Tag(ctx, live.ID, TagRollbackTarget); err != nil {
			return nil, err
		}
	}
	d.step("destroying candidate %s", c.Name)
	if err := d.Cloud.DeleteDroplet(ctx, c.ID); err != nil {
		return nil, err
	}
	d.forget(c.Name)
	return &RollbackResult{Destroyed: c}, nil
}

// tagged returns the newest member carrying tag that is not failed, or
// nil.
func (s *State) tagged(tag string) *Member {
	for i := range s.Members {
		if s.Members[i].HasTag(tag) && s.Members[i].Role != RoleFailed {
			return &s.Members[i]
		}
	}
	return nil
}
