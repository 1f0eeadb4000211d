package deploy

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Abort paths of promote and rollback (DEVELOPERS.md "Off the happy
// path"): each row scripts one fault into the fake cloud or a fake
// droplet and states the end: who holds the IP, the tags, the data
// commands each droplet received ("!": scripted to fail), the error.

const (
	P  = TagPromoted
	H  = TagHealthy
	F  = TagFailed
	RT = TagRollbackTarget
)

// end is the state a row expects after the command.
type end struct {
	ip     string // "" = testIP
	holder int    // droplet holding it (0: none)
	tags   map[int][]string
	logs   map[int][]string
	err    []string // substrings of the error ({N}: droplet N's name); nil = success
	as     any      // the error's type, as for errors.As (new(*T)); nil: any
}

func (w *world) check(t *testing.T, e end, err error) {
	t.Helper()
	w.checkState(t, e, err)
	for id, fd := range w.drops {
		want := e.logs[id]
		if got := fd.log(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("droplet %d ran %q, want %q", id, got, want)
		}
	}
}

// checkState checks e but the droplets' logs.
func (w *world) checkState(t *testing.T, e end, err error) {
	t.Helper()
	if e.err == nil && err != nil {
		t.Errorf("error: %v", err)
	}
	if e.err != nil {
		if err == nil {
			t.Errorf("no error, want one saying %q", e.err)
		} else {
			for _, s := range e.err {
				if s = w.expand(s); !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q:\n%v", s, err)
				}
			}
		}
	}
	if e.as != nil && !errors.As(err, e.as) {
		t.Errorf("error %T is not a %T", err, e.as)
	}
	ip := e.ip
	if ip == "" {
		ip = testIP
	}
	if got := w.cloud.holder(ip); got != e.holder {
		t.Errorf("%s is on droplet %d, want %d", ip, got, e.holder)
	}
	for id, want := range e.tags {
		want = slices.Sorted(slices.Values(want))
		if got := w.cloud.tags(id); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("droplet %d tags %q, want %q", id, got, want)
		}
	}
	if t.Failed() {
		t.Logf("cloud calls: %q\nwarnings: %s", w.cloud.calls, w.warn)
	}
}

// promoteWorld: droplet 1 (v1.0.0) is live, 2 (v1.1.0) a healthy
// candidate.
func promoteWorld(t *testing.T) *world {
	return newWorld(t, testIP,
		member{id: 1, version: "v1.0.0", tags: []string{P}, live: true},
		member{id: 2, version: "v1.1.0", tags: []string{H}})
}

// firstPromoteWorld: droplet 2 is the only droplet, reserved_ip: auto.
func firstPromoteWorld(t *testing.T) *world {
	return newWorld(t, "auto", member{id: 2, version: "v1.1.0", tags: []string{H}})
}

const firstIP = "198.51.100.1" // the fake cloud's first new address

var (
	promoted     = map[int][]string{1: {P}, 2: {H, P}}
	notPromoted  = map[int][]string{1: {P}, 2: {H}}
	oldFinal     = []string{"freeze", "backup"} // frozen for good: it is not live
	candWritable = []string{"freeze", "restore", "mark+unfreeze"}
	oldUnfrozen  = []string{"freeze", "backup", "unfreeze"}
)

// inRegion moves droplet id to region, as if created there.
func (w *world) inRegion(id int, region string) {
	w.cloud.mu.Lock()
	defer w.cloud.mu.Unlock()
	w.cloud.droplets[id].Region = region
}

func runCtx(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 30*time.Second)
}

func TestPromoteAbort(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first bool // first promote: no live droplet, reserved_ip: auto
		setup func(w *world, cancel context.CancelFunc)
		end   end
		check func(t *testing.T, w *world, res *PromoteResult)
	}{
		{name: "promoted",
			end: end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: candWritable}},
			check: func(t *testing.T, w *world, res *PromoteResult) {
				cmds := w.drops[2].srv.Commands()
				if got := cmds[1].Stdin; string(got) != string(w.drops[1].payload) {
					t.Errorf("candidate's restore got %d bytes, want the old droplet's %d", len(got), len(w.drops[1].payload))
				}
				if res.Data == nil || res.Data.Bytes != int64(len(w.drops[1].payload)) || res.Resumed {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "keep 0 prunes the old droplet",
			setup: func(w *world, _ context.CancelFunc) { w.d.Spec.Keep = 0 },
			end:   end{holder: 2, tags: map[int][]string{1: {"(destroyed)"}, 2: {H, P}}, logs: map[int][]string{1: oldFinal, 2: candWritable}}},

		// A reserved IP moves only within its region: refused before
		// anything is tagged, frozen or moved.
		{name: "candidate in another region than the reserved IP",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.mu.Lock()
				w.cloud.droplets[1].Tags = w.cloud.droplets[1].Tags[:2] // not tagged promoted yet
				w.cloud.mu.Unlock()
				w.inRegion(2, "ams3")
			},
			end: end{holder: 1, tags: map[int][]string{1: {}, 2: {H}},
				err: []string{"reserved IP " + testIP + " is in fra1", "{2} is in ams3", "nothing was changed"}, as: new(*RegionError)}},

		// Before the move: the IP stays, the old live droplet is writable.
		{name: "old droplet unreachable",
			setup: func(w *world, _ context.CancelFunc) { w.unreachable(1) },
			end:   end{holder: 1, tags: notPromoted, err: []string{"authentication failed"}}},
		{name: "candidate unreachable",
			setup: func(w *world, _ context.CancelFunc) { w.unreachable(2) },
			end:   end{holder: 1, tags: notPromoted, err: []string{"authentication failed"}}},
		{name: "old live droplet's freeze fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[1].script("freeze", step{code: 1, stderr: "nginx: busy\n"})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze!", "unfreeze"}, 2: {"freeze"}},
				err: []string{"freeze on {1}", "nginx: busy", "{1} is live and writable again"}}},
		{name: "candidate's freeze fails",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("freeze", step{code: 2}) },
			// Before the window: nothing was frozen on {1}, nothing to undo.
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {}, 2: {"freeze!"}},
				err: []string{"freeze on {2}", "this run froze nothing on {1} and did not touch the reserved IP"}}},
		{name: "backup fails midway",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[1].script("backup", step{midway: true, stderr: "pg_dump: lost\n"})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup!", "unfreeze"}, 2: {"freeze", "restore"}},
				err: []string{"backup on {1}", "pg_dump: lost", "{1} is live and writable again"}}},
		{name: "backup's droplet hangs midway",
			setup: func(w *world, cancel context.CancelFunc) {
				w.drops[1].script("backup", step{hang: true})
				time.AfterFunc(300*time.Millisecond, cancel) // Ctrl-C
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup!", "unfreeze"}, 2: {"freeze", "restore"}},
				err: []string{"context canceled", "{1} is live and writable again"}}},
		{name: "old droplet's connection drops midway through the backup",
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("backup", step{drop: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup!", "unfreeze"}, 2: {"freeze", "restore"}},
				err: []string{"backup on {1}", "{1} is live and writable again"}}},
		{name: "old droplet vanishes midway through the backup",
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("backup", step{drop: true, gone: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup!"}, 2: {"freeze", "restore"}},
				err: []string{"backup on {1}", "{1} is still frozen", "connecting again", "authentication failed", "fleet exec --droplet {1}"}}},
		{name: "backup's sha256 disagrees",
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("backup", step{badSum: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore"}},
				err: []string{"checksum mismatch", "{1} is live and writable again"}}},
		{name: "restore's sha256 disagrees",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("restore", step{badSum: true}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore"}},
				err: []string{"checksum mismatch: archive as received by {2}", "{1} is live and writable again"}}},
		{name: "candidate cannot read the data (restore exit 3)",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].script("restore", step{code: 3, stderr: "schema 7 is newer than 6\n"})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore!"}},
				err: []string{"{2} cannot read the data: schema 7 is newer than 6", "{1} is live and writable again"}, as: new(*IncompatibleDataError)}},
		{name: "restore fails",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("restore", step{code: 1}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore!"}},
				err: []string{"restore on {2}", "{1} is live and writable again"}}},
		{name: "candidate fails its health check",
			setup: func(w *world, _ context.CancelFunc) { w.unhealthy() },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore"}},
				err: []string{"health paths", "{1} is live and writable again"}}},
		{name: "recording promoted-at or the candidate's unfreeze fails", // one SSH run
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("mark+unfreeze", step{code: 1}) },
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: {"freeze", "restore", "mark+unfreeze!"}},
				err: []string{"recording the promote time and unfreezing on {2}", "{1} is live and writable again"}}},
		{name: "old droplet's unfreeze fails too",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].script("restore", step{code: 1})
				w.drops[1].script("unfreeze", step{code: 1})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"freeze", "backup", "unfreeze!"}, 2: {"freeze", "restore!"}},
				err: []string{"restore on {2}", "{1} is still frozen", "fleet exec --droplet {1} -- fleet-data unfreeze"}}},
		{name: "tagging the old live droplet fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.mu.Lock()
				w.cloud.droplets[1].Tags = w.cloud.droplets[1].Tags[:2] // not promoted yet
				w.cloud.mu.Unlock()
				w.cloud.inject("Tag:"+P, fault{err: errors.New("tag droplet 1: API answered 500")})
			},
			end: end{holder: 1, tags: map[int][]string{1: {}, 2: {H}}, err: []string{"tag droplet 1: API answered 500"}}},

		// The move, read back.
		{name: "assign fails, not moved",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: errors.New("assign: API answered 503")})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: append(candWritable[:3:3], "freeze")},
				err: []string{"assign: API answered 503", "did not move", "{1} is live and writable again"}, as: new(*NotMovedError)}},
		{name: "assign times out, its action errors",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{mode: failPendingLost, err: errors.New("timed out waiting for the assign")})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: append(candWritable[:3:3], "freeze")},
				err: []string{"did not move", "{1} is live and writable again"}}},
		{name: "assign's answer lost, it moved",
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("Assign", fault{mode: failAfter}) },
			end:   end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: candWritable}},
			check: func(t *testing.T, w *world, res *PromoteResult) {
				if !strings.Contains(w.warn.String(), "the move took effect") {
					t.Errorf("warnings %q", w.warn)
				}
			}},
		{name: "assign times out, its action completes later",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{mode: failPending, err: errors.New("timed out waiting for the assign")})
			},
			end: end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: candWritable}}},
		{name: "assign fails and the read-back fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: errors.New("connection reset")})
				w.cloud.inject("Settle", fault{err: errors.New("get reserved IP: API answered 500")})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldFinal, 2: candWritable},
				err: []string{"connection reset", "cannot tell whether it moved", "{1} and the droplet taking the IP stay frozen"}, as: new(*MoveUnknownError)}},
		{name: "Ctrl-C during a move that took effect",
			setup: func(w *world, cancel context.CancelFunc) {
				w.d.Spec.Keep = 0 // prune is skipped when interrupted
				w.cloud.inject("Assign", fault{mode: failAfter, err: context.Canceled, hook: cancel})
			},
			end: end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: candWritable}}},
		{name: "Ctrl-C during a move that did not happen",
			setup: func(w *world, cancel context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: context.Canceled, hook: cancel})
			},
			end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldUnfrozen, 2: append(candWritable[:3:3], "freeze")},
				err: []string{"did not move", "{1} is live and writable again"}}},
		{name: "tagging the new live droplet fails after the move",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Tag:"+P, fault{err: errors.New("API answered 500")})
			},
			end: end{holder: 2, tags: notPromoted, logs: map[int][]string{1: oldFinal, 2: candWritable},
				err: []string{"{2} is live on " + testIP, "re-run `fleet promote` to finish"}}},

		// First promote (reserved_ip: auto): nothing to freeze or undo.
		{name: "first promote", first: true,
			end: end{ip: firstIP, holder: 2, tags: map[int][]string{2: {H, P, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}}}},
		{name: "first promote: reserving fails", first: true,
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("CreateReservedIP", fault{err: errors.New("API answered 422: quota")})
			},
			end: end{ip: firstIP, holder: -1, tags: map[int][]string{2: {H}}, logs: map[int][]string{2: {"mark+unfreeze"}},
				err: []string{"quota"}}},
		{name: "first promote: reserved, assign completes later", first: true,
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("CreateReservedIP", fault{mode: failPending}) },
			end:   end{ip: firstIP, holder: 2, tags: map[int][]string{2: {H, P, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}}}},
		{name: "first promote: reserved, assign errors", first: true,
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("CreateReservedIP", fault{mode: failPendingLost}) },
			end: end{ip: firstIP, holder: 0, tags: map[int][]string{2: {H, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}},
				err: []string{firstIP + " was reserved for {2} but is not assigned to it", "reuses it"}}},
		{name: "first promote: reserved, read-back fails", first: true,
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("CreateReservedIP", fault{mode: failPending})
				w.cloud.inject("Settle", fault{})
			},
			end: end{ip: firstIP, holder: 0, tags: map[int][]string{2: {H, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}},
				err: []string{"cannot tell whether it moved"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := promoteWorld(t)
			if tc.first {
				w = firstPromoteWorld(t)
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			if tc.setup != nil {
				tc.setup(w, cancel)
			}
			res, err := w.d.Promote(ctx, false)
			w.check(t, tc.end, err)
			if err == nil && tc.check != nil {
				tc.check(t, w, res)
			}
			if err == nil && (res.Live.ID != tc.end.holder || res.Resumed) {
				t.Errorf("result: live %d, resumed %v", res.Live.ID, res.Resumed)
			}
			var unknown *MoveUnknownError
			if wantUnknown := slices.Contains(tc.end.err, "cannot tell whether it moved"); errors.As(err, &unknown) != wantUnknown {
				t.Errorf("MoveUnknownError: %v, want %v", !wantUnknown, wantUnknown)
			}
		})
	}
}

// rollbackWorld: droplet 1 (v1.0.0) is previous, 2 (v1.1.0) live.
func rollbackWorld(t *testing.T) *world {
	return newWorld(t, testIP,
		member{id: 1, version: "v1.0.0", tags: []string{P}},
		member{id: 2, version: "v1.1.0", tags: []string{H, P}, live: true})
}

var (
	rolledBack    = map[int][]string{1: {P, RT}, 2: {F, H, P}} // RT stays until the next promote
	notRolledBack = map[int][]string{1: {P}, 2: {H, P}}
	counted       = []string{"freeze", "since", "writes"}
	liveUnfrozen  = []string{"freeze", "since", "writes", "unfreeze"}
	prevWritable  = []string{"mark+unfreeze"}
	prevRefrozen  = []string{"mark+unfreeze", "freeze"}
)

func TestRollbackAbort(t *testing.T) {
	for _, tc := range []struct {
		name    string
		discard bool
		setup   func(w *world, cancel context.CancelFunc)
		end     end
		check   func(t *testing.T, w *world, res *RollbackResult)
	}{
		{name: "no writes: moved back",
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: prevWritable}},
			check: func(t *testing.T, w *world, res *RollbackResult) {
				if res.Writes != 0 || res.Data != nil || res.Live.ID != 1 || res.Failed.ID != 2 {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "3 writes carried back",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].writes = "3\n" },
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"freeze", "since", "writes", "backup"}, 1: {"restore", "mark+unfreeze"}}},
			check: func(t *testing.T, w *world, res *RollbackResult) {
				if res.Writes != 3 || res.Data == nil || res.Data.Bytes != int64(len(w.drops[2].payload)) {
					t.Errorf("result %+v", res)
				}
				cmds := w.drops[2].srv.Commands()
				if c := cmds[2].Find("sh"); c == nil || !slices.Contains(c.Assigns, "FLEET_SINCE="+promotedAt) {
					t.Errorf("writes ran as %q, want FLEET_SINCE=%s", cmds[2].Line, promotedAt)
				}
			}},
		{name: "no record of the promote: unknown writes are carried",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("since", step{stdout: "\n"}) },
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{
				2: {"freeze", "since", "backup"}, 1: {"restore", "mark+unfreeze"}}},
			check: func(t *testing.T, w *world, res *RollbackResult) {
				if res.Writes != -1 || res.Data == nil {
					t.Errorf("result %+v", res)
				}
			}},
		{name: "writes cannot be carried back (restore exit 3)",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].writes = "3\n"
				w.drops[1].script("restore", step{code: 3, stderr: "schema 7 is newer than 6\n"})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{
				2: {"freeze", "since", "writes", "backup", "unfreeze"}, 1: {"restore!"}},
				err: []string{"rollback refused: 3 writes made on {2}", "schema 7 is newer than 6", "--discard-writes", "{2} is live and writable again"},
				as:  new(*WritesAtRiskError)},
			check: nil},
		{name: "writes discarded",
			discard: true,
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].writes = "3\n"
				w.drops[1].script("restore", step{code: 3})
			},
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: append([]string{"carried-read"}, prevWritable...)}},
			check: func(t *testing.T, w *world, res *RollbackResult) {
				if !res.Discarded || res.Writes != 3 || res.Data != nil {
					t.Errorf("result %+v", res)
				}
			}},

		// Before the move.
		{name: "previous droplet in another region than the reserved IP",
			setup: func(w *world, _ context.CancelFunc) { w.inRegion(1, "ams3") },
			end: end{holder: 2, tags: notRolledBack,
				err: []string{"reserved IP " + testIP + " is in fra1", "{1} is in ams3", "nothing was changed"}, as: new(*RegionError)}},
		{name: "live droplet unreachable",
			setup: func(w *world, _ context.CancelFunc) { w.unreachable(2) },
			end:   end{holder: 2, tags: notRolledBack, err: []string{"authentication failed"}}},
		{name: "previous droplet unreachable",
			setup: func(w *world, _ context.CancelFunc) { w.unreachable(1) },
			end:   end{holder: 2, tags: notRolledBack, err: []string{"authentication failed"}}},
		{name: "freeze fails",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("freeze", step{code: 1}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"freeze!", "unfreeze"}},
				err: []string{"freeze on {2}", "{2} is live and writable again"}}},
		{name: "counting writes fails",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("writes", step{code: 1}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"freeze", "since", "writes!", "unfreeze"}},
				err: []string{"counting writes on {2}", "{2} is live and writable again"}}},
		{name: "writes prints no count",
			setup: func(w *world, _ context.CancelFunc) { w.drops[2].script("writes", step{stdout: "lots\n"}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen},
				err: []string{`"lots" is not a count`, "{2} is live and writable again"}}},
		{name: "backup fails midway",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].writes = "3\n"
				w.drops[2].script("backup", step{midway: true})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"freeze", "since", "writes", "backup!", "unfreeze"}, 1: {"restore"}},
				err: []string{"backup on {2}", "{2} is live and writable again"}}},
		{name: "live droplet's connection drops midway through the backup",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].writes = "3\n"
				w.drops[2].script("backup", step{drop: true})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"freeze", "since", "writes", "backup!", "unfreeze"}, 1: {"restore"}},
				err: []string{"backup on {2}", "{2} is live and writable again"}}},
		{name: "previous droplet fails its health check",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[2].writes = "3\n"
				w.unhealthy()
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: {"freeze", "since", "writes", "backup", "unfreeze"}, 1: {"restore"}},
				err: []string{"health paths", "{2} is live and writable again"}}},
		{name: "recording promoted-at or the previous droplet's unfreeze fails", // one SSH run
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("mark+unfreeze", step{code: 1}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: {"mark+unfreeze!"}},
				err: []string{"recording the promote time and unfreezing on {1}", "{2} is live and writable again"}}},
		{name: "marking the target fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Tag:"+RT, fault{err: errors.New("API answered 500")})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"API answered 500", "{2} is live and writable again"}}},
		{name: "marking the live droplet failed fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Tag:"+F, fault{err: errors.New("API answered 500")})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"API answered 500", "{2} is live and writable again"}}},
		{name: "marking the live droplet failed: answer lost",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Tag:"+F, fault{mode: failAfter, err: errors.New("connection reset")})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"connection reset", "{2} is live and writable again"}}},

		// The move, read back.
		{name: "assign fails, not moved",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: errors.New("API answered 503")})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"API answered 503", "did not move", "{2} is live and writable again"}, as: new(*NotMovedError)}},
		{name: "assign times out, its action errors",
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("Assign", fault{mode: failPendingLost}) },
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"did not move", "{2} is live and writable again"}}},
		{name: "assign fails, not moved, and clearing the marks fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: errors.New("API answered 503")})
				w.cloud.inject("Untag:"+F, fault{err: errors.New("API answered 500")})
			},
			end: end{holder: 2, tags: map[int][]string{1: {P}, 2: {F, H, P}}, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"did not move", "also could not clear fleet-failed on {2}", "{2} is live and writable again"}}},
		{name: "assign's answer lost, it moved",
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("Assign", fault{mode: failAfter}) },
			end:   end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: prevWritable}}},
		{name: "assign times out, its action completes later",
			setup: func(w *world, _ context.CancelFunc) { w.cloud.inject("Assign", fault{mode: failPending}) },
			end:   end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: prevWritable}}},
		{name: "assign fails and the read-back fails",
			setup: func(w *world, _ context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: errors.New("connection reset")})
				w.cloud.inject("Settle", fault{err: errors.New("API answered 500")})
			},
			end: end{holder: 2, tags: map[int][]string{1: {P, RT}, 2: {F, H, P}}, logs: map[int][]string{2: counted, 1: prevWritable},
				err: []string{"cannot tell whether it moved", "{2} and the droplet taking the IP stay frozen"}, as: new(*MoveUnknownError)}},
		{name: "Ctrl-C during a move that took effect",
			setup: func(w *world, cancel context.CancelFunc) {
				w.cloud.inject("Assign", fault{mode: failAfter, err: context.Canceled, hook: cancel})
			},
			end: end{holder: 1, tags: rolledBack, logs: map[int][]string{2: counted, 1: prevWritable}}},
		{name: "Ctrl-C during a move that did not happen",
			setup: func(w *world, cancel context.CancelFunc) {
				w.cloud.inject("Assign", fault{err: context.Canceled, hook: cancel})
			},
			end: end{holder: 2, tags: notRolledBack, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen},
				err: []string{"did not move", "{2} is live and writable again"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rollbackWorld(t)
			ctx, cancel := runCtx(t)
			defer cancel()
			if tc.setup != nil {
				tc.setup(w, cancel)
			}
			res, err := w.d.Rollback(ctx, RollbackOptions{DiscardWrites: tc.discard})
			w.check(t, tc.end, err)
			if err == nil && (res.Live.ID != tc.end.holder || res.AlreadyDone) {
				t.Errorf("result: live %d, already done %v", res.Live.ID, res.AlreadyDone)
			}
			if err == nil && tc.check != nil {
				tc.check(t, w, res)
			}
			var risk *WritesAtRiskError
			if errors.As(err, &risk) && risk.Writes != 3 {
				t.Errorf("writes at risk: %d, want 3", risk.Writes)
			}
		})
	}
}

// Re-running a command that failed halfway converges: it finishes a move
// that happened, redoes one that did not, and a rollback never goes one
// step further than its target.
func TestRerunAfterAbort(t *testing.T) {
	type run struct {
		setup func(w *world)
		end   end
		// resumed: the re-run only finished the bookkeeping (no droplet
		// touched); logs are what it added on each droplet.
		resumed bool
	}
	rollback := func(w *world) (any, bool, int, error) {
		res, err := w.d.Rollback(t.Context(), RollbackOptions{})
		if err != nil {
			return nil, false, 0, err
		}
		return res, res.AlreadyDone, res.Live.ID, nil
	}
	promote := func(w *world) (any, bool, int, error) {
		res, err := w.d.Promote(t.Context(), false)
		if err != nil {
			return nil, false, 0, err
		}
		return res, res.Resumed, res.Live.ID, nil
	}
	// threeWorld: 3 (oldest) and 1 are previous droplets, 2 is live: a rollback
	// goes to 1, and one step further would be 3.
	threeWorld := func(t *testing.T) *world {
		return newWorld(t, testIP,
			member{id: 3, version: "v0.9.0", tags: []string{P}},
			member{id: 1, version: "v1.0.0", tags: []string{P}},
			member{id: 2, version: "v1.1.0", tags: []string{H, P}, live: true})
	}
	rolledBack3 := map[int][]string{3: {P}, 1: {P, RT}, 2: {F, H, P}}
	for _, tc := range []struct {
		name  string
		world func(t *testing.T) *world
		cmd   func(w *world) (res any, resumed bool, live int, err error)
		runs  []run
	}{
		{name: "promote: tagging the new live droplet failed",
			world: promoteWorld, cmd: promote,
			runs: []run{
				{setup: func(w *world) { w.cloud.inject("Tag:"+P, fault{times: 1}) },
					end: end{holder: 2, tags: notPromoted, logs: map[int][]string{1: oldFinal, 2: candWritable}, err: []string{"re-run `fleet promote`"}}},
				{end: end{holder: 2, tags: promoted}, resumed: true},
			}},
		{name: "promote: read-back failed, the IP had moved",
			world: promoteWorld, cmd: promote,
			runs: []run{
				{setup: func(w *world) {
					w.cloud.inject("Assign", fault{mode: failAfter, times: 1})
					w.cloud.inject("Settle", fault{times: 1})
				},
					end: end{holder: 2, tags: notPromoted, logs: map[int][]string{1: oldFinal, 2: candWritable}, err: []string{"cannot tell"}}},
				{end: end{holder: 2, tags: promoted}, resumed: true},
			}},
		{name: "promote: read-back failed, the IP had not moved",
			world: promoteWorld, cmd: promote,
			runs: []run{
				{setup: func(w *world) {
					w.cloud.inject("Assign", fault{times: 1})
					w.cloud.inject("Settle", fault{times: 1})
				},
					end: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: oldFinal, 2: candWritable}, err: []string{"cannot tell"}}},
				{end: end{holder: 2, tags: promoted, logs: map[int][]string{1: oldFinal, 2: candWritable}}},
			}},
		{name: "first promote: reserved, not assigned",
			world: firstPromoteWorld, cmd: promote,
			runs: []run{
				{setup: func(w *world) { w.cloud.inject("CreateReservedIP", fault{mode: failPendingLost, times: 1}) },
					end: end{ip: firstIP, holder: 0, tags: map[int][]string{2: {H, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}}, err: []string{"reuses it"}}},
				// The recorded address is reused, not a second one reserved.
				{end: end{ip: firstIP, holder: 2, tags: map[int][]string{2: {H, P, ReservedIPTag(firstIP)}}, logs: map[int][]string{2: {"mark+unfreeze"}}}},
			}},
		{name: "rollback: done, and run again",
			world: threeWorld, cmd: rollback,
			runs: []run{
				{end: end{holder: 1, tags: rolledBack3, logs: map[int][]string{2: counted, 1: prevWritable}}},
				// Not one release further: the mark says the step is done.
				{end: end{holder: 1, tags: rolledBack3}, resumed: true},
			}},
		{name: "rollback: done, then --further",
			world: threeWorld,
			cmd: func(w *world) (any, bool, int, error) {
				res, err := w.d.Rollback(t.Context(), RollbackOptions{Further: w.runs > 0})
				w.runs++
				if err != nil {
					return nil, false, 0, err
				}
				return res, res.AlreadyDone, res.Live.ID, nil
			},
			runs: []run{
				{end: end{holder: 1, tags: rolledBack3, logs: map[int][]string{2: counted, 1: prevWritable}}},
				{end: end{holder: 3, tags: map[int][]string{3: {P, RT}, 1: {F, P}, 2: {F, H, P}}, logs: map[int][]string{1: counted, 3: prevWritable}}},
			}},
		{name: "rollback --further: read-back failed, the IP had moved; a plain re-run says done",
			world: threeWorld,
			cmd: func(w *world) (any, bool, int, error) {
				res, err := w.d.Rollback(t.Context(), RollbackOptions{Further: w.runs == 1})
				w.runs++
				if err != nil {
					return nil, false, 0, err
				}
				return res, res.AlreadyDone, res.Live.ID, nil
			},
			runs: []run{
				{end: end{holder: 1, tags: rolledBack3, logs: map[int][]string{2: counted, 1: prevWritable}}},
				{setup: func(w *world) {
					w.cloud.inject("Assign", fault{mode: failAfter, times: 1})
					w.cloud.inject("Settle", fault{times: 1})
				},
					end: end{holder: 3, tags: map[int][]string{3: {P, RT}, 1: {F, P, RT}, 2: {F, H, P}}, logs: map[int][]string{1: counted, 3: prevWritable}, err: []string{"cannot tell"}}},
				// Not past 3: the failed droplet's old mark is not read.
				{end: end{holder: 3, tags: map[int][]string{3: {P, RT}, 1: {F, P, RT}, 2: {F, H, P}}}, resumed: true},
			}},
		{name: "rollback: read-back failed, the IP had moved",
			world: threeWorld, cmd: rollback,
			runs: []run{
				{setup: func(w *world) {
					w.cloud.inject("Assign", fault{mode: failAfter, times: 1})
					w.cloud.inject("Settle", fault{times: 1})
				},
					end: end{holder: 1, tags: map[int][]string{3: {P}, 1: {P, RT}, 2: {F, H, P}}, logs: map[int][]string{2: counted, 1: prevWritable}, err: []string{"cannot tell"}}},
				{end: end{holder: 1, tags: rolledBack3}, resumed: true},
			}},
		{name: "rollback: read-back failed, the IP had not moved",
			world: threeWorld, cmd: rollback,
			runs: []run{
				{setup: func(w *world) {
					w.cloud.inject("Assign", fault{times: 1})
					w.cloud.inject("Settle", fault{times: 1})
				},
					end: end{holder: 2, tags: map[int][]string{3: {P}, 1: {P, RT}, 2: {F, H, P}}, logs: map[int][]string{2: counted, 1: prevWritable}, err: []string{"cannot tell"}}},
				// Redone towards 1, the target it recorded, not 3.
				{end: end{holder: 1, tags: rolledBack3, logs: map[int][]string{2: counted, 1: prevWritable}}},
			}},
		{name: "rollback: the move failed, read back",
			world: threeWorld, cmd: rollback,
			runs: []run{
				{setup: func(w *world) { w.cloud.inject("Assign", fault{times: 1}) },
					end: end{holder: 2, tags: map[int][]string{3: {P}, 1: {P}, 2: {H, P}}, logs: map[int][]string{2: liveUnfrozen, 1: prevRefrozen}, err: []string{"did not move"}}},
				{end: end{holder: 1, tags: rolledBack3, logs: map[int][]string{2: counted, 1: prevWritable}}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.world(t)
			seen := map[int]int{}
			for i, r := range tc.runs {
				if r.setup != nil {
					r.setup(w)
				}
				_, resumed, live, err := tc.cmd(w)
				e := r.end
				w.checkState(t, e, err)
				for id, fd := range w.drops { // what this run added
					all := fd.log()
					if got, want := all[seen[id]:], e.logs[id]; !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
						t.Errorf("run %d: droplet %d ran %q, want %q", i+1, id, got, want)
					}
					seen[id] = len(all)
				}
				if err == nil && (resumed != r.resumed || live != e.holder) {
					t.Errorf("run %d: resumed %v, live %d; want %v, %d", i+1, resumed, live, r.resumed, e.holder)
				}
				if t.Failed() {
					t.Fatalf("run %d failed", i+1)
				}
			}
		})
	}
}
