package deploy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The freeze budget (stack.data.freeze_budget) on the abort tests' fake
// cloud and droplets: an overrun aborts before the move, with the IP and
// the old droplet's unfreeze read back; an estimate refuses before the
// freeze.

func withBudget(w *world, b time.Duration) { w.d.Spec.Stack.Data.FreezeBudget = b }

func windowNames(ws []WindowPhase) []string {
	var out []string
	for _, p := range ws {
		out = append(out, p.Name)
	}
	return out
}

func TestPromoteFreezeBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget time.Duration
		setup  func(w *world)
		end    end
		stage  string // of the FreezeBudgetError; "" = success
		check  func(t *testing.T, w *world, res *PromoteResult, fb *FreezeBudgetError)
	}{
		{name: "fits: the window's phases are reported", budget: 5 * time.Second,
			end: end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: append([]string{"last-sync"}, candWritable...)}},
			check: func(t *testing.T, w *world, res *PromoteResult, _ *FreezeBudgetError) {
				if got, want := windowNames(res.Window), []string{PhaseFreeze, PhaseSync, PhaseHealth, PhaseUnfreeze, PhaseMove}; !slices.Equal(got, want) {
					t.Errorf("window %q, want %q", got, want)
				}
				var sum time.Duration
				for _, p := range res.Window {
					sum += p.Duration
				}
				if res.FreezeBudget != 5*time.Second || sum > res.Freeze || res.Freeze-sum > 100*time.Millisecond {
					t.Errorf("budget %v, freeze %v, phases sum to %v", res.FreezeBudget, res.Freeze, sum)
				}
				// The candidate's idle wait ran before the freeze, not in the move.
				w.cloud.mu.Lock()
				calls := slices.Clone(w.cloud.calls)
				w.cloud.mu.Unlock()
				if i, j := slices.Index(calls, "WaitIdle 2"), slices.Index(calls, "Assign "+testIP+" 2 (idle)"); i < 0 || j < i {
					t.Errorf("cloud calls %q: want WaitIdle 2, then an idle Assign", calls)
				}
			}},
		{name: "the final restore hangs past a 1s budget", budget: time.Second,
			setup: func(w *world) { w.drops[2].script("restore", step{hang: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"last-sync", "freeze", "restore!", "note-sync"}},
				err: []string{"aborted: the final sync would overrun stack.data.freeze_budget 1s", "sync 0.", "the reserved IP did not move (read back: " + testIP + " is on {1})",
					"{1} is live and writable again (its unfreeze succeeded)"}, as: new(*FreezeBudgetError)},
			stage: PhaseSync,
			check: func(t *testing.T, w *world, _ *PromoteResult, fb *FreezeBudgetError) {
				if fb.Elapsed < 600*time.Millisecond || fb.Elapsed > 1500*time.Millisecond {
					t.Errorf("aborted %v after the freeze, want about 0.7s (1s budget - 0.3s reserve)", fb.Elapsed)
				}
				if fb.Sync == nil || fb.Sync.Bytes != int64(len(w.drops[1].payload)) || !fb.Unfrozen || fb.Holder != w.name(1) {
					t.Errorf("error %+v, sync %+v", fb, fb.Sync)
				}
				// The stopped sync is a lower bound for the next estimate.
				if rec := parseSyncRecord(w.drops[2].lastSync); rec == nil || rec.StoppedBy != time.Second || rec.Duration < 500*time.Millisecond {
					t.Errorf("record on the candidate %q", w.drops[2].lastSync)
				}
			}},
		{name: "a slow freeze (draining writes) overruns", budget: time.Second,
			setup: func(w *world) { w.drops[1].script("freeze", step{hang: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze!", "unfreeze"}, 2: {"last-sync", "freeze"}},
				err: []string{"the freeze (draining in-flight writes) would overrun", "{1} is live and writable again"}, as: new(*FreezeBudgetError)},
			stage: PhaseFreeze},
		{name: "overrun, and the old droplet's unfreeze fails", budget: time.Second,
			setup: func(w *world) {
				w.drops[2].script("restore", step{hang: true})
				w.drops[1].script("unfreeze", step{code: 1})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup", "unfreeze!"}, 2: {"last-sync", "freeze", "restore!", "note-sync"}},
				err: []string{"the final sync would overrun", "is on {1}", "{1} is still frozen (read-only): unfreezing it failed", "fleet exec --droplet {1} -- fleet-data unfreeze"}, as: new(*FreezeBudgetError)},
			stage: PhaseSync},
		{name: "overrun, and the IP cannot be read back", budget: time.Second,
			setup: func(w *world) {
				w.drops[2].script("restore", step{hang: true})
				// After State's read: the sync hangs until about 0.7s.
				time.AfterFunc(300*time.Millisecond, func() {
					w.cloud.inject("ReservedIP", fault{err: errors.New("get reserved IP: API answered 500")})
				})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"last-sync", "freeze", "restore!", "note-sync"}},
				err: []string{"fleet did not move " + testIP + ", but reading it back failed: get reserved IP: API answered 500", "{1} is live and writable again"}, as: new(*FreezeBudgetError)},
			stage: PhaseSync},
		{name: "the estimate refuses before the freeze", budget: time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "52000000 2.400 1\n" },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{2: {"last-sync"}},
				err: []string{"refused: the freeze window would overrun stack.data.freeze_budget 1s: 2.70s are expected", "the last sync onto {2} moved 52.0 MB in 2.40s", "nothing was frozen or moved"}, as: new(*FreezeBudgetError)},
			stage: "estimate"},
		{name: "a stopped sync's record refuses the re-run", budget: 2 * time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "9000000 1.200 0 2.000\n" },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{2: {"last-sync"}},
				err: []string{"was stopped by freeze_budget 2s after 9.0 MB and 1.20s"}, as: new(*FreezeBudgetError)},
			stage: "estimate"},
		{name: "a stopped sync's record refuses a smaller budget", budget: time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "9000000 0.100 0 2.000\n" },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{2: {"last-sync"}},
				err: []string{"was stopped by freeze_budget 2s"}, as: new(*FreezeBudgetError)},
			stage: "estimate"},
		{name: "a raised budget tries again", budget: 5 * time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "9000000 1.200 0 2.000\n" },
			end:   end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: append([]string{"last-sync"}, candWritable...)}}},
		{name: "an estimate that fits goes ahead", budget: 5 * time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "52000000 2.400 1\n" },
			end:   end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: append([]string{"last-sync"}, candWritable...)}}},
		{name: "a damaged record is no estimate", budget: time.Second,
			setup: func(w *world) { w.drops[2].lastSync = "99 99 0\n" },
			end:   end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: append([]string{"last-sync"}, candWritable...)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := promoteWorld(t)
			withBudget(w, tc.budget)
			if tc.setup != nil {
				tc.setup(w)
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			start := time.Now()
			res, err := w.d.Promote(ctx, false)
			w.check(t, tc.end, err)
			var fb *FreezeBudgetError
			if errors.As(err, &fb) && fb.Stage != tc.stage {
				t.Errorf("stage %q, want %q", fb.Stage, tc.stage)
			}
			if tc.check != nil && (err == nil) == (tc.stage == "") {
				tc.check(t, w, res, fb)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestRollbackFreezeBudget(t *testing.T) {
	w := rollbackWorld(t)
	withBudget(w, time.Second)
	w.drops[2].writes = "3\n"
	w.drops[1].script("restore", step{hang: true})
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 2, tags: notRolledBack,
		logs: map[int][]string{2: {"freeze", "since", "writes", "backup", "unfreeze"}, 1: {"last-sync", "restore!", "note-sync"}},
		err:  []string{"the final sync would overrun stack.data.freeze_budget 1s", "writes 0.", "is on {2}", "{2} is live and writable again"},
		as:   new(*FreezeBudgetError)}, err)
	if strings.Contains(err.Error(), "writes at risk") {
		t.Errorf("error %v", err)
	}
}

func TestParseSyncRecord(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *syncRecord
	}{
		{"52000000 2.400 1\n", &syncRecord{Bytes: 52000000, Duration: 2400 * time.Millisecond}},
		{"9 1.5 0 2.000", &syncRecord{Bytes: 9, Duration: 1500 * time.Millisecond, StoppedBy: 2 * time.Second}},
		{"", nil},
		{"lots 99 1", nil},
		{"1 2 0", nil},     // stopped, but by what
		{"1 2 1 3", nil},   // finished, yet stopped
		{"1 2 0 0", nil},   // stopped by no budget
		{"-1 2 1", nil},    // negative bytes
		{"1 -2 1", nil},    // negative seconds
		{"1 1e300 1", nil}, // absurd
		{"1 NaN 1", nil},   // not a number of seconds
		{"1 2 2", nil},     // not a flag
		{"1 2 1 2 3", nil}, // too many fields
	} {
		got := parseSyncRecord(tc.in)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("parseSyncRecord(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestRollbackWindow(t *testing.T) {
	w := rollbackWorld(t)
	withBudget(w, 5*time.Second)
	w.drops[2].writes = "3\n"
	ctx, cancel := runCtx(t)
	defer cancel()
	res, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 1, tags: rolledBack,
		logs: map[int][]string{2: {"freeze", "since", "writes", "backup"}, 1: {"last-sync", "restore", "mark+unfreeze"}}}, err)
	if err != nil {
		return
	}
	if got, want := windowNames(res.Window), []string{PhaseFreeze, PhaseWrites, PhaseSync, PhaseHealth, PhaseUnfreeze, PhaseMove}; !slices.Equal(got, want) || res.FreezeBudget != 5*time.Second {
		t.Errorf("window %q (want %q), budget %v", got, want, res.FreezeBudget)
	}
}
