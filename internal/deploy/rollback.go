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
	// Resumed: an interrupted rollback had already moved the IP; this one
	// finished its bookkeeping.
	Resumed bool
}

// RollbackOptions tune a rollback after a promote.
type RollbackOptions struct {
	// DiscardWrites rolls back even when the writes made since the
	// promote cannot be carried back to the previous droplet.
	DiscardWrites bool
}

// Rollback undoes the last step. After an up (the newest droplet was never
// promoted) it destroys that candidate; after a promote it moves the IP
// back to the newest previous droplet and marks the one it left failed.
// The target is marked before the move, so a re-run after an interruption
// finishes that rollback (the IP had moved) or redoes it: it never rolls
// back one step further.
func (d *Deployer) Rollback(ctx context.Context, opt RollbackOptions) (*RollbackResult, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Members) == 0 {
		return nil, &ConflictError{Msg: "nothing to roll back: project " + st.Project + " has no droplets"}
	}
	newest := st.Members[0]
	discard := newest.Role != RoleLive && !newest.promoted()
	prev := st.tagged(TagRollbackTarget)
	switch {
	case prev != nil && prev.Role == RoleLive && discard:
		return d.discardCandidate(ctx, &newest, prev) // an interrupted discard
	case prev != nil && prev.Role == RoleLive:
		return d.finishRollback(ctx, d.resumedRollback(st, prev))
	case prev != nil && prev.Role == RoleFailed:
		prev = nil // not a target any more
	}
	if prev == nil {
		if discard {
			return d.discardCandidate(ctx, &newest, st.Live())
		}
		prev = st.Previous()
	}
	if prev == nil {
		return nil, &ConflictError{Msg: "nothing to roll back to: no previous droplet is left (keep: " + fmt.Sprint(d.Spec.Keep) + ")"}
	}
	if st.ReservedIP == nil {
		return nil, &ConflictError{Msg: "no reserved IP is assigned to a droplet of " + st.Project}
	}
	live := st.Live()
	res := &RollbackResult{ReservedIP: st.ReservedIP.IP, Live: prev, Failed: live, Writes: -1}
	var sw *switchover
	if live != nil && d.Spec.Stack != nil && d.Spec.Stack.Data != nil {
		if sw, res.Writes, err = d.prepareRollback(ctx, live, prev, opt.DiscardWrites); err != nil {
			return nil, err
		}
		defer sw.close()
		res.Data = sw.transfer
		res.Discarded = opt.DiscardWrites && res.Writes != 0
	}
	if err := d.markRollback(ctx, prev, live); err != nil {
		return nil, sw.abort(ctx, d.unmarkRollback(ctx, prev, live, err))
	}
	d.step("moving %s back to %s", res.ReservedIP, prev.Name)
	if _, err := d.move(ctx, res.ReservedIP, prev); err != nil {
		var nm *NotMovedError
		if errors.As(err, &nm) {
			err = d.unmarkRollback(ctx, prev, live, err)
		}
		return nil, sw.abort(ctx, err)
	}
	res.Freeze = sw.moved()
	ctx, cancel := afterCommit(ctx)
	defer cancel()
	return d.finishRollback(ctx, res)
}

// markRollback records the target, then marks the live droplet failed:
// from here on the droplet left behind is never again a rollback target,
// and a re-run knows where this rollback was going.
func (d *Deployer) markRollback(ctx context.Context, prev, live *Member) error {
	if err := d.Cloud.Tag(ctx, prev.ID, TagRollbackTarget); err != nil {
		return err
	}
	if live != nil {
		return d.Cloud.Tag(ctx, live.ID, TagFailed)
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

// resumedRollback is the result of a rollback whose move an earlier,
// interrupted run made: the droplet it left is the newest failed one.
func (d *Deployer) resumedRollback(st *State, prev *Member) *RollbackResult {
	d.step("finishing the rollback to %s (the IP had moved)", prev.Name)
	res := &RollbackResult{ReservedIP: st.ReservedIP.IP, Live: prev, Writes: -1, Resumed: true}
	for i := range st.Members {
		if m := &st.Members[i]; m.Role == RoleFailed && m.promoted() {
			res.Failed = m
			break
		}
	}
	return res
}

// finishRollback is the bookkeeping once the IP is on res.Live: the
// target mark goes; the droplet left behind was marked failed before the
// move.
func (d *Deployer) finishRollback(ctx context.Context, res *RollbackResult) (*RollbackResult, error) {
	prev := res.Live
	if err := d.Cloud.Untag(ctx, prev.ID, TagRollbackTarget); err != nil {
		return nil, fmt.Errorf("%s is live again on %s, but clearing %s failed: %w; re-run `fleet rollback` to finish", prev.Name, res.ReservedIP, TagRollbackTarget, err)
	}
	prev.Role = RoleLive
	if res.Failed != nil {
		res.Failed.Role = RoleFailed
	}
	return res, nil
}

// discardCandidate destroys the newest droplet, never promoted. The live
// droplet, if any, is marked as the rollback's target first: a re-run
// after the destroy finds the step done, instead of rolling back further.
func (d *Deployer) discardCandidate(ctx context.Context, c, live *Member) (*RollbackResult, error) {
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
	if live != nil {
		ctx, cancel := afterCommit(ctx)
		defer cancel()
		if err := d.Cloud.Untag(ctx, live.ID, TagRollbackTarget); err != nil {
			return nil, fmt.Errorf("destroyed candidate %s, but clearing %s on %s failed: %w; re-run `fleet rollback` to finish", c.Name, TagRollbackTarget, live.Name, err)
		}
	}
	return &RollbackResult{Destroyed: c}, nil
}

// tagged returns the newest member carrying tag, or nil.
func (s *State) tagged(tag string) *Member {
	for i := range s.Members {
		if s.Members[i].HasTag(tag) {
			return &s.Members[i]
		}
	}
	return nil
}
