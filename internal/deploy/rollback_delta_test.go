package deploy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A rollback with stack.data.state (issue 12): writes counted before the
// freeze are pre-synced onto prev with prev's base (what it sent at the
// promote), the final sync is a delta with the base prev reported after
// the pre-sync, asked outside the window, and the writes are counted
// again after the move instead of inside the window.
func TestRollbackPreSync(t *testing.T) {
	const prevState = baseID + "\n"
	presynced := []string{"state", "restore", "state", "carried-write", "restore"} // pre-sync (recorded), then the final sync
	for _, tc := range []struct {
		name    string
		writes  string
		discard bool
		setup   func(w *world)
		end     end
		window  []string
		// wantBase: the live droplet's backups, with FLEET_BASE=baseID (b)
		// or another one (o)
		wantBase string
		check    func(t *testing.T, res *RollbackResult)
	}{
		{name: "writes: pre-synced, final delta, counted after the move", writes: "3\n",
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"since", "writes", "clock", "backup", "freeze", "backup", "since", "writes"},
				1: append(presynced, prevWritable...)}},
			window: []string{PhaseFreeze, PhaseSync, PhaseHealth, PhaseUnfreeze, PhaseMove}, wantBase: "bb",
			check: func(t *testing.T, res *RollbackResult) {
				if res.Writes != 3 || res.Data == nil {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "no writes: no pre-sync, counted in the window, nothing carried", writes: "0\n",
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"since", "writes", "freeze", "since", "writes"}, 1: prevWritable}},
			window: []string{PhaseFreeze, PhaseWrites, PhaseUnfreeze, PhaseMove},
			check: func(t *testing.T, res *RollbackResult) {
				if res.Writes != 0 || res.Data != nil {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "discard: no pre-sync", writes: "3\n", discard: true,
			end:    end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: append([]string{"carried-read"}, prevWritable...)}},
			window: []string{PhaseFreeze, PhaseWrites, PhaseUnfreeze, PhaseMove},
			check: func(t *testing.T, res *RollbackResult) {
				if !res.Discarded || res.Writes != 3 || res.Data != nil {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "prev cannot read the data: refused before the freeze", writes: "3\n",
			setup: func(w *world) { w.drops[1].script("restore", step{code: 3, stderr: "unknown migration blog.0009\n"}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"since", "writes", "clock", "backup"}, 1: {"state", "restore!"}},
				err: []string{"rollback refused: 3 writes made on {2}", "unknown migration blog.0009", "nothing was frozen or moved: {2} is live and writable"},
				as:  new(*WritesAtRiskError)},
			wantBase: "b"},
		{name: "counting fails before the freeze: nothing frozen", writes: "3\n",
			setup: func(w *world) { w.drops[2].script("writes", step{code: 1}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"since", "writes!"}},
				err: []string{"counting writes on {2}"}}},
		{name: "pre-sync fails: warned, the final sync carries it all", writes: "3\n",
			setup: func(w *world) { w.drops[1].script("restore", step{code: 1}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{
				2: {"since", "writes", "clock", "backup", "freeze", "backup", "unfreeze"}, 1: {"state", "restore!", "state", "restore!"}},
				err: []string{"restore on {1}", "{2} is live and writable again"}},
			wantBase: "bb"},
		{name: "counting after the move fails: the count before the freeze", writes: "3\n",
			setup: func(w *world) { w.drops[2].writesSeq = []step{{}, {code: 1, stderr: "database is locked\n"}} },
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"since", "writes", "clock", "backup", "freeze", "backup", "since", "writes"},
				1: append(presynced, prevWritable...)}},
			window: []string{PhaseFreeze, PhaseSync, PhaseHealth, PhaseUnfreeze, PhaseMove}, wantBase: "bb",
			check: func(t *testing.T, res *RollbackResult) {
				if res.Writes != 3 || res.Data == nil {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "the count after the move is the result's", writes: "3\n",
			setup: func(w *world) { w.drops[2].writesSeq = []step{{}, {stdout: "5\n"}} },
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"since", "writes", "clock", "backup", "freeze", "backup", "since", "writes"},
				1: append(presynced, prevWritable...)}},
			wantBase: "bb",
			check: func(t *testing.T, res *RollbackResult) {
				if res.Writes != 5 {
					t.Errorf("writes %d, want 5 (counted after the move)", res.Writes)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rollbackWorld(t)
			w.d.Spec.Stack.Data.State = stateData
			w.drops[2].writes = tc.writes
			w.drops[1].state = prevState
			if tc.setup != nil {
				tc.setup(w)
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			res, err := w.d.Rollback(ctx, RollbackOptions{DiscardWrites: tc.discard})
			w.check(t, tc.end, err)
			var bases []string
			for _, c := range w.drops[2].srv.Commands() {
				if kind(c) == "backup" {
					b := "o"
					if strings.Contains(c.Line, "FLEET_BASE="+baseID) {
						b = "b"
					}
					bases = append(bases, b)
				}
			}
			if got := strings.Join(bases, ""); got != tc.wantBase {
				t.Errorf("live's backups had bases %q, want %q (b: prev's state)", got, tc.wantBase)
			}
			if err != nil {
				return
			}
			if got := windowNames(res.Window); tc.window != nil && !slices.Equal(got, tc.window) {
				t.Errorf("window %q, want %q", got, tc.window)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

// The estimate of a pre-synced rollback is the pre-sync's own figure (not
// prev's last sync, up's record): pre-sync rounds that all overrun the
// budget refuse before the freeze.
func TestRollbackPreSyncEstimate(t *testing.T) {
	w := rollbackWorld(t)
	w.d.Spec.Stack.Data.State = stateData
	withBudget(w, time.Second)
	w.drops[1].script("restore", step{delay: 900 * time.Millisecond}) // every pre-sync round overruns 1s - 0.3s
	w.drops[2].writes = "3\n"
	w.drops[1].state = baseID + "\n"
	w.drops[1].lastSync = "100 0.001 1\n" // up's carry would fit
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 2, tags: notRolledBack,
		logs: map[int][]string{
			2: {"since", "writes", "clock", "backup", "backup", "backup"},
			1: {"state", "restore", "state", "restore", "state", "restore", "state", "carried-write"}},
		err: []string{"refused: the freeze window would overrun", "the last pre-sync onto {1}"},
		as:  new(*FreezeBudgetError)}, err)
}

// TestDiscardAfterCarried: a rollback stopped after its pre-sync (here
// refused by the estimate) left prev holding the live droplet's data as of
// the pre-sync; a --discard-writes rollback then discards, counts and says
// only the writes after it.
func TestDiscardAfterCarried(t *testing.T) {
	for _, tc := range []struct {
		name    string
		carried string // prev's carried-since answer
		since   string // FLEET_SINCE the count must use
		warned  bool
	}{
		{name: "carried since the promote", carried: "1999999999\n", since: "FLEET_SINCE=1999999999", warned: true},
		{name: "nothing carried", carried: "", since: "FLEET_SINCE=1700000000"},
		{name: "carried before the promote (an older live)", carried: "1600000000\n", since: "FLEET_SINCE=1700000000", warned: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rollbackWorld(t)
			w.d.Spec.Stack.Data.State = stateData
			w.drops[2].writes = "2\n"
			w.drops[2].script("since", step{stdout: "1700000000\n"})
			w.drops[1].script("carried-read", step{stdout: tc.carried})
			ctx, cancel := runCtx(t)
			defer cancel()
			res, err := w.d.Rollback(ctx, RollbackOptions{DiscardWrites: true})
			w.check(t, end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: append([]string{"carried-read"}, prevWritable...)}}, err)
			if err != nil {
				return
			}
			if !res.Discarded || res.Writes != 2 {
				t.Errorf("result %+v", res)
			}
			for _, c := range w.drops[2].srv.Commands() {
				if kind(c) == "writes" && !strings.Contains(c.Line, tc.since) {
					t.Errorf("writes ran %q, want %s", c.Line, tc.since)
				}
			}
			if got := strings.Contains(w.warn.String(), "only the writes since are discarded"); got != tc.warned {
				t.Errorf("warned %v, want %v: %q", got, tc.warned, w.warn)
			}
		})
	}
}
