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

// The stack's hold and forward as the tests script them.
const (
	holdHold    = "fleet-data hold"
	holdForward = "fleet-data forward"
)

const heldLine = "forward held=3 longest_ms=1234 queued=3 passed=0\n"

// holdWorld is promoteWorld with hold and forward, the droplets on a VPC:
// droplet 1 (live) and 2 (candidate).
func holdWorld(t *testing.T, ms ...member) *world {
	if len(ms) == 0 {
		ms = []member{
			{id: 1, version: "v1.0.0", tags: []string{P}, live: true},
			{id: 2, version: "v1.1.0", tags: []string{H}},
		}
	}
	w := newWorld(t, testIP, ms...)
	w.d.Spec.Stack.Data.Hold = holdHold
	w.d.Spec.Stack.Data.Forward = holdForward
	w.cloud.mu.Lock()
	for id, d := range w.cloud.droplets {
		d.PrivateIPv4 = "10.10.0." + string(rune('0'+id))
	}
	w.cloud.mu.Unlock()
	w.drops[1].script("forward", step{stdout: heldLine})
	w.drops[2].script("forward", step{stdout: heldLine})
	return w
}

// promoteHeld promotes droplet 2 in a holdWorld and checks the switch
// ran hold … forward and moved the IP; nil when it failed.
func promoteHeld(t *testing.T, w *world) *PromoteResult {
	t.Helper()
	ctx, cancel := runCtx(t)
	defer cancel()
	res, err := w.d.Promote(ctx, false)
	w.check(t, end{holder: 2, tags: promoted, logs: map[int][]string{
		1: {"fwd-read", "hold", "backup", "forward"},
		2: {"freeze", "restore", "mark+unfreeze"},
	}}, err)
	if err != nil {
		return nil
	}
	return res
}

// TestPromoteHoldForward: hold … unfreeze(cand) → forward → move, and the
// held figures reach the result.
func TestPromoteHoldForward(t *testing.T) {
	w := holdWorld(t)
	var steps []string
	w.d.Step = func(s string) { steps = append(steps, s) }
	res := promoteHeld(t, w)
	if res == nil {
		return
	}
	want := []string{"unfreezing " + w.name(2), "forwarding " + w.name(1) + " to " + w.name(2) + " (10.10.0.2:443) while moving " + testIP + " to " + w.name(2)}
	var got []string
	for _, s := range steps {
		for _, p := range []string{"unfreezing", "forwarding", "moving"} {
			if strings.HasPrefix(s, p) {
				got = append(got, s)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps %q, want %q", got, want)
	}
	if res.Held == nil || *res.Held != (Held{Count: 3, LongestMS: 1234}) {
		t.Errorf("held %+v, want 3 and 1234 ms", res.Held)
	}
	// The forward is a phase of its own, not part of the move's.
	if got, want := windowNames(res.Window), []string{"freeze", "sync", "health", "unfreeze", "forward", "move"}; !reflect.DeepEqual(got, want) {
		t.Errorf("window %v, want %v", got, want)
	}
	// The hold's budget reaches the stack.
	for _, c := range w.drops[1].srv.Commands() {
		if kind(c) == "hold" && !strings.Contains(c.Line, "FLEET_HOLD_MS=8000") {
			t.Errorf("hold ran %q, want FLEET_HOLD_MS=8000", c.Line)
		}
		if kind(c) == "forward" && !strings.Contains(c.Line, "FLEET_FORWARD_TO=10.10.0.2:443") {
			t.Errorf("forward ran %q, want FLEET_FORWARD_TO=10.10.0.2:443", c.Line)
		}
	}
}

// TestForwardAlongsideMove: the forward and the move run at once, so the
// window ends when the slower of the two does, not after both.
func TestForwardAlongsideMove(t *testing.T) {
	const each = 300 * time.Millisecond
	w := holdWorld(t)
	w.drops[1].script("forward", step{stdout: heldLine, delay: each})
	w.cloud.mu.Lock()
	w.cloud.assignDelay = each
	w.cloud.mu.Unlock()
	res := promoteHeld(t, w)
	if res == nil {
		return
	}
	var fwd, mv WindowPhase
	for _, p := range res.Window {
		switch p.Name {
		case PhaseForward:
			fwd = p
		case PhaseMove:
			mv = p
		}
	}
	if fwd.Duration < each || mv.Duration < each {
		t.Fatalf("forward %v, move %v: each should take at least %v", fwd, mv, each)
	}
	var before time.Duration // the phases before these two
	for _, p := range res.Window {
		if p.Name != PhaseForward && p.Name != PhaseMove {
			before += p.Duration
		}
	}
	if res.Freeze > before+2*each-each/2 {
		t.Errorf("window %v, %v before the forward and the move: they ran one after the other", res.Freeze, before)
	}
}

// TestPromoteMoveFailsAfterForward: past the commit point a failed move
// is retried, then reported; nothing is unfrozen; a re-run finds the
// marker and only moves the IP (no second transfer over the candidate's
// acknowledged writes).
func TestPromoteMoveFailsAfterForward(t *testing.T) {
	w := holdWorld(t)
	w.cloud.inject("Assign", fault{err: errors.New("assign: API answered 503"), times: 2})
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Promote(ctx, false)
	w.check(t, end{holder: 1, tags: notPromoted,
		logs: map[int][]string{1: {"fwd-read", "hold", "backup", "forward"}, 2: {"freeze", "restore", "mark+unfreeze"}},
		err:  []string{"after {1} started forwarding", "nothing was undone", "re-run `fleet promote`"}, as: new(*ForwardingError)}, err)
	if !strings.Contains(w.warn.String(), "tries once more") {
		t.Errorf("no retry warning: %s", w.warn)
	}

	// The re-run: the old droplet's marker names the candidate.
	w.drops[1].script("fwd-read", step{stdout: "2\n"})
	w.d.forwardingFrom = nil
	res, err := w.d.Promote(ctx, false)
	w.check(t, end{holder: 2, tags: promoted,
		logs: map[int][]string{1: {"fwd-read", "hold", "backup", "forward", "fwd-read"}, 2: {"freeze", "restore", "mark+unfreeze"}}}, err)
	if err == nil && (res.Data != nil || res.Freeze != 0) {
		t.Errorf("re-run carried data or froze: %+v", res)
	}
}

// TestForwardRefused: the stack cannot forward (exit 4): fleet moves the IP
// as without hold, and a move failure then aborts as before the commit
// point (the old droplet takes its held writes itself).
func TestForwardRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		moveFail bool
		end      end
	}{
		{name: "moves anyway", end: end{holder: 2, tags: promoted, logs: map[int][]string{
			1: {"fwd-read", "hold", "backup", "forward!"}, 2: {"freeze", "restore", "mark+unfreeze"}}}},
		{name: "move fails: abort", moveFail: true, end: end{holder: 1, tags: notPromoted, logs: map[int][]string{
			1: {"fwd-read", "hold", "backup", "forward!", "unfreeze"}, 2: {"freeze", "restore", "mark+unfreeze", "freeze"}},
			err: []string{"{1} is live and writable again"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := holdWorld(t)
			w.drops[1].script("forward", step{code: 4, stderr: "fleet-gate: presents key sha256 ab, not this site's cd\n"})
			if tc.moveFail {
				w.cloud.inject("Assign", fault{err: errors.New("assign: API answered 503")})
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			_, err := w.d.Promote(ctx, false)
			w.check(t, tc.end, err)
			if !strings.Contains(w.warn.String(), "cannot forward") {
				t.Errorf("warnings %q, want one saying it cannot forward", w.warn)
			}
		})
	}
}

// TestHoldNeedsPrivateAddress: without the candidate's private address the
// promote is today's (freeze, no forward).
func TestHoldNeedsPrivateAddress(t *testing.T) {
	w := holdWorld(t)
	w.cloud.mu.Lock()
	w.cloud.droplets[2].PrivateIPv4 = ""
	w.cloud.mu.Unlock()
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Promote(ctx, false)
	w.check(t, end{holder: 2, tags: promoted, logs: map[int][]string{1: {"fwd-read", "freeze", "backup"}, 2: candWritable}}, err)
	if !strings.Contains(w.warn.String(), "no private address") {
		t.Errorf("warnings %q", w.warn)
	}
}

// TestRollbackHoldForward: the rollback holds and forwards to prev too.
func TestRollbackHoldForward(t *testing.T) {
	w := holdWorld(t,
		member{id: 1, version: "v1.0.0", tags: []string{P}},
		member{id: 2, version: "v1.1.0", tags: []string{H, P}, live: true})
	w.drops[2].writes = "4\n"
	ctx, cancel := runCtx(t)
	defer cancel()
	res, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 1, tags: map[int][]string{1: {P, RT}, 2: {H, P, F}}, logs: map[int][]string{
		1: {"restore", "mark+unfreeze"},
		2: {"fwd-read", "hold", "since", "writes", "backup", "forward"},
	}}, err)
	if err == nil && (res.Held == nil || res.Held.Count != 3) {
		t.Errorf("held %+v", res.Held)
	}
}

// TestDiscardRefusedWhileForwarding: a candidate the live droplet forwards
// to holds acknowledged writes: rollback does not destroy it.
func TestDiscardRefusedWhileForwarding(t *testing.T) {
	for _, tc := range []struct {
		name   string
		marker string
		want   end
	}{
		{name: "forwarding", marker: "2\n", want: end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"fwd-read"}},
			err: []string{"{1} forwards every request to candidate {2}", "run `fleet promote`"}, as: new(*ConflictError)}},
		{name: "stale or other", marker: "7\n", want: end{holder: 1, tags: map[int][]string{1: {P, RT}, 2: {"(destroyed)"}}, logs: map[int][]string{1: {"fwd-read"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := holdWorld(t)
			w.drops[1].script("fwd-read", step{stdout: tc.marker})
			ctx, cancel := runCtx(t)
			defer cancel()
			_, err := w.d.Rollback(ctx, RollbackOptions{})
			w.checkState(t, tc.want, err)
			if got := w.drops[1].log(); !slices.Equal(got, tc.want.logs[1]) {
				t.Errorf("droplet 1 ran %q, want %q", got, tc.want.logs[1])
			}
		})
	}
}

// TestPruneKeepsForwarding: keep 0 does not destroy the droplet that
// forwards while its connections drain: after this run's forward, or on
// a re-run that found an earlier run's forward and only moved the IP.
func TestPruneKeepsForwarding(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resumed bool
	}{{"forwarded now", false}, {"resumed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			w := holdWorld(t)
			w.d.Spec.Keep = 0
			ctx, cancel := runCtx(t)
			defer cancel()
			if tc.resumed {
				// The first run forwards, then fails to move the IP twice.
				w.cloud.inject("Assign", fault{err: errors.New("assign: API answered 503"), times: 2})
				if _, err := w.d.Promote(ctx, false); err == nil {
					t.Fatal("the first promote did not fail")
				}
				w.drops[1].script("fwd-read", step{stdout: "2\n"})
				w.d.forwardingFrom = nil // a new process
				w.warn.Reset()
			}
			res, err := w.d.Promote(ctx, false)
			w.checkState(t, end{holder: 2, tags: promoted}, err)
			if err == nil && len(res.Pruned) != 0 {
				t.Errorf("pruned %v", res.Pruned)
			}
			if !strings.Contains(w.warn.String(), "keeping "+w.name(1)) {
				t.Errorf("warnings %q", w.warn)
			}
		})
	}
}

func TestParseHeld(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *Held
	}{
		{heldLine, &Held{Count: 3, LongestMS: 1234}},
		{"noise\nforward held=0 longest_ms=0\n", &Held{}},
		{"forward held=x longest_ms=-5", nil},
		{"", nil},
		{"held=99999999999999 longest_ms=1", &Held{Count: 1<<31 - 1, LongestMS: 1}},
	} {
		got := parseHeld(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseHeld(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

var _ = context.Background

// TestRollbackMoveFailsAfterForward: as for promote, a rollback past its
// commit point keeps its marks, and a re-run only moves the IP back.
func TestRollbackMoveFailsAfterForward(t *testing.T) {
	w := holdWorld(t,
		member{id: 1, version: "v1.0.0", tags: []string{P}},
		member{id: 2, version: "v1.1.0", tags: []string{H, P}, live: true})
	w.drops[2].writes = "4\n"
	w.cloud.inject("Assign", fault{err: errors.New("assign: API answered 503"), times: 2})
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 2, tags: map[int][]string{1: {P, RT}, 2: {H, P, F}}, logs: map[int][]string{
		1: {"restore", "mark+unfreeze"},
		2: {"fwd-read", "hold", "since", "writes", "backup", "forward"},
	}, err: []string{"after {2} started forwarding", "re-run `fleet rollback`"}, as: new(*ForwardingError)}, err)

	w.drops[2].script("fwd-read", step{stdout: "1\n"})
	res, err := w.d.Rollback(ctx, RollbackOptions{})
	w.check(t, end{holder: 1, tags: map[int][]string{1: {P, RT}, 2: {H, P, F}}, logs: map[int][]string{
		1: {"restore", "mark+unfreeze"},
		2: {"fwd-read", "hold", "since", "writes", "backup", "forward", "fwd-read"},
	}}, err)
	if err == nil && res.Data != nil {
		t.Errorf("the re-run carried data again: %+v", res.Data)
	}
}

// A live droplet forwarding to a droplet other than the target (a switch
// that stopped past its commit point) is never read again: its data lacks
// the writes the other acknowledged. Promote refuses before freezing.
func TestForwardingElsewhereRefused(t *testing.T) {
	w := holdWorld(t)
	w.drops[1].script("fwd-read", step{stdout: "3\n"})
	ctx, cancel := runCtx(t)
	defer cancel()
	_, err := w.d.Promote(ctx, false)
	w.check(t, end{holder: 1, tags: notPromoted, logs: map[int][]string{1: {"fwd-read"}},
		err: []string{"{1} forwards to droplet 3", "re-run that `fleet promote` or `fleet rollback`"}, as: new(*ConflictError)}, err)
}

// carryData (up's) refuses a live droplet that forwards.
func TestCarryRefusesForwardingLive(t *testing.T) {
	w := holdWorld(t)
	w.drops[1].script("fwd-read", step{stdout: "2\n"})
	ctx, cancel := runCtx(t)
	defer cancel()
	live := &Member{Droplet: w.drops[1].Droplet}
	cc, err := w.d.Remote.Dial(ctx, &w.drops[2].Droplet, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = w.d.carryData(ctx, live, cc, w.name(2), w.d.outputs(nil))
	var ce *ConflictError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "forwards to droplet 2") {
		t.Fatalf("carryData: %v, want a ConflictError", err)
	}
	for _, c := range w.drops[1].srv.Commands() {
		if kind(c) == "backup" {
			t.Errorf("the forwarding droplet was backed up: %q", c.Line)
		}
	}
}

// TestPruneKeepsDraining: `fleet prune` on its own keeps a droplet that
// may still forward to the live one: within forwardDrain of the IP's last
// move (the API's action), a promoted droplet whose fresh marker names the
// live one, younger than that, or one fleet cannot read. It asks no
// droplet when the move is older, or the stack does not forward.
func TestPruneKeepsDraining(t *testing.T) {
	for _, tc := range []struct {
		name     string
		marker   string        // fwd-read's answer on the droplet that gave up the IP
		movedAgo time.Duration // the IP's last move (0: never)
		noFwd    bool          // the stack has no forward
		down     bool          // that droplet refuses logins
		rollback bool          // it gave up the IP in a rollback: failed, not previous
		kept     bool
		asked    bool // the droplet was asked over SSH
		warning  string
	}{
		{name: "forwards to live, 5 s ago", marker: "2\n5\n", movedAgo: 5 * time.Second, kept: true, asked: true, warning: "keeping {1}"},
		{name: "after a rollback: failed, forwards to live", marker: "2\n5\n", movedAgo: 5 * time.Second, rollback: true, kept: true, asked: true, warning: "keeping {1}"},
		{name: "marker 2 min old", marker: "2\n120\n", movedAgo: 5 * time.Second, asked: true},
		{name: "no marker", marker: "", movedAgo: 5 * time.Second, asked: true},
		{name: "forwards elsewhere", marker: "7\n5\n", movedAgo: 5 * time.Second, asked: true},
		{name: "age unknown", marker: "2\n", movedAgo: 5 * time.Second, kept: true, asked: true, warning: "keeping {1}"},
		{name: "unreadable, just after the move", down: true, movedAgo: 5 * time.Second, kept: true, warning: "cannot tell whether {1} still forwards to {2}"},
		{name: "unreadable, the move long ago", down: true, movedAgo: 10 * time.Minute},
		{name: "moved long ago: nobody asked", marker: "2\n5\n", movedAgo: 10 * time.Minute},
		{name: "never moved", marker: "2\n5\n"},
		{name: "stack without forward", noFwd: true, down: true, movedAgo: 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tags := []string{P}
			if tc.rollback {
				tags = []string{P, F}
			}
			w := holdWorld(t,
				member{id: 1, version: "v1.0.0", tags: tags},
				member{id: 2, version: "v1.1.0", tags: []string{P}, live: true})
			w.drops[1].script("fwd-read", step{stdout: tc.marker})
			if tc.movedAgo > 0 {
				w.cloud.mu.Lock()
				w.cloud.moved = map[string]time.Time{testIP: time.Now().Add(-tc.movedAgo)}
				w.cloud.mu.Unlock()
			}
			if tc.noFwd {
				w.d.Spec.Stack.Data.Forward = ""
			}
			if tc.down {
				w.unreachable(1)
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			pruned, err := w.d.Prune(ctx, 1) // keep 1: a failed droplet goes anyway
			if err != nil {
				t.Fatal(err)
			}
			if !tc.rollback {
				pruned, err = w.d.Prune(ctx, 0)
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := len(pruned) == 0; got != tc.kept {
				t.Errorf("pruned %v, want kept %v", pruned, tc.kept)
			}
			if tc.warning != "" && !strings.Contains(w.warn.String(), w.expand(tc.warning)) {
				t.Errorf("warnings %q, want %q", w.warn, w.expand(tc.warning))
			}
			if n := len(w.drops[1].srv.Commands()); (n != 0) != tc.asked {
				t.Errorf("%d commands on the droplet that gave up the IP, want asked %v", n, tc.asked)
			}
		})
	}
}

func TestParseForwardAge(t *testing.T) {
	for _, tc := range []struct {
		in     string
		id     int
		age    time.Duration
		hasErr bool
	}{
		{"", 0, 0, false},
		{"12\n30\n", 12, 30 * time.Second, false},
		{"12\n", 12, 0, false},
		{"12\n-3\n", 12, 0, false},
		{"12\nx\n", 12, 0, false},
		{"x\n", 0, 0, true},
		{"0\n", 0, 0, true},
		{"1 2 3", 0, 0, true},
	} {
		id, age, err := parseForwardAge(tc.in)
		if id != tc.id || age != tc.age || (err != nil) != tc.hasErr {
			t.Errorf("parseForwardAge(%q) = %d, %v, %v", tc.in, id, age, err)
		}
	}
}
