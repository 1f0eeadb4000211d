package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
)

const (
	stateCmd   = "docker compose exec -T utility fleet-data state"
	backupCmd  = "docker compose exec -T -e FLEET_BASE utility fleet-data backup"
	restoreCmd = "docker compose exec -T utility fleet-data restore"
	baseID     = "1111111111111111111111111111111111111111111111111111111111111111-2222222222222222222222222222222222222222222222222222222222222222"
)

// backupHandler writes payload as the backup and reports its sum as the
// droplet-side wrapper would.
func backupHandler(payload []byte) remotetest.Handler {
	return func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
		x.Stdout.Write(payload)
		s := sha256.Sum256(payload)
		fmt.Fprintf(x.Stderr, "%s%s\n", sumMarker, hex.EncodeToString(s[:]))
		return remotetest.Result{}
	}
}

// restoreHandler reads all of stdin, reports its sum and exits with the
// next of codes (0 once they run out).
func restoreHandler(codes ...int) remotetest.Handler {
	var n atomic.Int32
	return func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
		h := sha256.New()
		io.Copy(h, x.Stdin)
		fmt.Fprintf(x.Stderr, "%s%s\n", sumMarker, hex.EncodeToString(h.Sum(nil)))
		i := int(n.Add(1)) - 1
		if i < len(codes) && codes[i] != 0 {
			fmt.Fprintf(x.Stderr, "fleet-data: restore: exit %d\n", codes[i])
			return remotetest.Result{Code: codes[i]}
		}
		return remotetest.Result{}
	}
}

// route answers by which data command a line runs.
func route(h map[string]remotetest.Handler) remotetest.Handler {
	return func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
		for k, f := range h {
			if strings.Contains(x.Line, k) {
				return f(ctx, x)
			}
		}
		fmt.Fprintf(x.Stderr, "remotetest: %s: command not found\n", x.Line)
		return remotetest.Result{Code: 127}
	}
}

// twoDroplets is a Deployer whose old and cand droplets are the two fake
// servers, both dialled.
func twoDroplets(t *testing.T, old, cand *remotetest.Server, data *spec.Data) (*Deployer, *remote.Client, *remote.Client, *bytes.Buffer) {
	t.Helper()
	kh := remote.KnownHosts{Dir: t.TempDir()}
	var log bytes.Buffer
	d := &Deployer{
		Spec:     &spec.Spec{Project: "blog", Stack: &spec.Stack{Data: data}},
		Remote:   &Remote{Dialer: &remote.Dialer{KnownHosts: kh, KeyFiles: []string{old.ClientKeyFile, cand.ClientKeyFile}}, Log: &log},
		Warnings: &log,
	}
	var cs []*remote.Client
	for i, srv := range []*remotetest.Server{old, cand} {
		m := &Member{Droplet: cloud.Droplet{ID: i + 1, Name: fmt.Sprintf("blog-%d", i+1), PublicIPv4: srv.Addr}}
		if err := kh.Pin(m.Name, m.PublicIPv4, srv.HostKey); err != nil {
			t.Fatal(err)
		}
		c, err := d.dialMember(t.Context(), m)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return d, cs[0], cs[1], &log
}

// ran is what a server ran, one word per data command, in order.
func ran(srv *remotetest.Server) []string {
	var out []string
	for _, c := range srv.Commands() {
		// One level of quoting off: the droplet-side script as bash gets it.
		var words []string
		for _, call := range c.Calls {
			words = append(words, call.Args...)
		}
		script := strings.Join(words, " ")
		switch {
		case strings.Contains(c.Line, "fleet-data backup") && strings.Contains(script, "FLEET_BASE='' "):
			out = append(out, "backup(empty base)")
		case strings.Contains(c.Line, "fleet-data state"):
			out = append(out, "state")
		case strings.Contains(c.Line, "fleet-data backup") && strings.Contains(c.Line, "FLEET_BASE="+baseID):
			out = append(out, "backup(base)")
		case strings.Contains(c.Line, "fleet-data backup") && strings.Contains(c.Line, "FLEET_BASE="):
			out = append(out, "backup(other base)")
		case strings.Contains(c.Line, "fleet-data backup"):
			out = append(out, "backup")
		case strings.Contains(c.Line, "fleet-data restore"):
			out = append(out, "restore")
		default:
			out = append(out, c.Line)
		}
	}
	return out
}

func TestTransferDelta(t *testing.T) {
	payload := bytes.Repeat([]byte("delta "), 50000)
	for _, tc := range []struct {
		name            string
		noState         bool
		state           remotetest.Handler
		restoreCodes    []int
		wantOld         []string
		wantCand        []string
		wantErr         string
		wantLog         string
		wantTransferred bool
	}{
		{name: "known base goes as FLEET_BASE", state: remotetest.Reply{Stdout: baseID + "\n"}.Handle,
			wantOld: []string{"backup(base)"}, wantCand: []string{"state", "restore"}},
		{name: "no base: a full archive", state: remotetest.Reply{Stdout: "none\n"}.Handle,
			wantOld: []string{"backup(empty base)"}, wantCand: []string{"state", "restore"}},
		{name: "stack without state: no question asked", noState: true,
			wantOld: []string{"backup"}, wantCand: []string{"restore"}},
		{name: "base refused (exit 4): a full archive follows", state: remotetest.Reply{Stdout: baseID + "\n"}.Handle, restoreCodes: []int{4},
			wantOld: []string{"backup(base)", "backup(empty base)"}, wantCand: []string{"state", "restore", "restore"}, wantLog: "does not hold the data the delta was made against"},
		{name: "not an id: warned, full archive", state: remotetest.Reply{Stdout: "$(reboot)\n"}.Handle,
			wantOld: []string{"backup(empty base)"}, wantCand: []string{"state", "restore"}, wantLog: "not an id"},
		{name: "state fails: warned, full archive", state: remotetest.Reply{Stderr: "no app container\n", Code: 1}.Handle,
			wantOld: []string{"backup(empty base)"}, wantCand: []string{"state", "restore"}, wantLog: "sending a full archive"},
		{name: "full archive refused with 4 is an error", state: remotetest.Reply{Stdout: "none\n"}.Handle, restoreCodes: []int{4},
			wantOld: []string{"backup(empty base)"}, wantCand: []string{"state", "restore"}, wantErr: "does not hold the data"},
		{name: "incompatible stays incompatible", state: remotetest.Reply{Stdout: baseID + "\n"}.Handle, restoreCodes: []int{3},
			wantOld: []string{"backup(base)"}, wantCand: []string{"state", "restore"}, wantErr: "cannot read the data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{"fleet-data backup": backupHandler(payload)})})
			candH := map[string]remotetest.Handler{"fleet-data restore": restoreHandler(tc.restoreCodes...)}
			if tc.state != nil {
				candH["fleet-data state"] = tc.state
			}
			candSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(candH)})
			data := &spec.Data{Backup: backupCmd, Restore: restoreCmd, State: stateCmd}
			if tc.noState {
				data.State = ""
			}
			d, oc, cc, log := twoDroplets(t, oldSrv, candSrv, data)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			out := d.outputs(nil)
			tr, err := d.transfer(ctx, oc, "blog-1", cc, "blog-2", out)
			out.flush()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("transfer: %v\n%s", err, log)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("transfer: %v, want an error with %q", err, tc.wantErr)
			}
			if err == nil && (tr.Bytes != int64(len(payload)) || tr.SHA256 != sha(payload)) {
				t.Errorf("transfer %d bytes sha %s, want %d bytes %s", tr.Bytes, short(tr.SHA256), len(payload), short(sha(payload)))
			}
			if got := ran(oldSrv); strings.Join(got, ",") != strings.Join(tc.wantOld, ",") {
				t.Errorf("old ran %v, want %v", got, tc.wantOld)
			}
			if got := ran(candSrv); strings.Join(got, ",") != strings.Join(tc.wantCand, ",") {
				t.Errorf("candidate ran %v, want %v", got, tc.wantCand)
			}
			if tc.wantLog != "" && !strings.Contains(log.String()+phaseNames(d), tc.wantLog) {
				t.Errorf("log %q and steps %q lack %q", log, phaseNames(d), tc.wantLog)
			}
		})
	}
}

func phaseNames(d *Deployer) string {
	var b strings.Builder
	for _, p := range d.phases {
		b.WriteString(p.Name + "\n")
	}
	return b.String()
}

// The pre-sync: a transfer with the base before the freeze; a failure is
// a warning unless the candidate cannot read the data at all.
func TestPreSync(t *testing.T) {
	payload := []byte("pre-sync payload")
	for _, tc := range []struct {
		name     string
		noState  bool
		codes    []int
		wantErr  bool
		wantCand []string
		wantWarn string
	}{
		{name: "carries with the base, then asks what it holds now", wantCand: []string{"state", "restore", "state"}},
		{name: "skipped without state", noState: true},
		{name: "failure is a warning", codes: []int{1}, wantCand: []string{"state", "restore"}, wantWarn: "pre-sync of blog-1 onto blog-2 failed"},
		{name: "incompatible stops before the freeze", codes: []int{3}, wantCand: []string{"state", "restore"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oldSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{"fleet-data backup": backupHandler(payload)})})
			candSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{
				"fleet-data restore": restoreHandler(tc.codes...),
				"fleet-data state":   remotetest.Reply{Stdout: baseID + "\n"}.Handle,
			})})
			data := &spec.Data{Backup: backupCmd, Restore: restoreCmd, State: stateCmd}
			if tc.noState {
				data.State = ""
			}
			d, oc, cc, log := twoDroplets(t, oldSrv, candSrv, data)
			out := d.outputs(nil)
			_, err := d.preSync(t.Context(), oc, "blog-1", cc, "blog-2", out)
			out.flush()
			var inc *IncompatibleDataError
			if tc.wantErr != errors.As(err, &inc) || (!tc.wantErr && err != nil) {
				t.Fatalf("preSync: %v, want incompatible: %v", err, tc.wantErr)
			}
			if got := ran(candSrv); strings.Join(got, ",") != strings.Join(tc.wantCand, ",") {
				t.Errorf("candidate ran %v, want %v", got, tc.wantCand)
			}
			if tc.wantWarn != "" && !strings.Contains(log.String(), tc.wantWarn) {
				t.Errorf("log %q lacks %q", log, tc.wantWarn)
			}
		})
	}
}

// switchPair is an old and a candidate droplet for prepareSwitch, with the
// blog's data commands (the candidate's restore answered by restore) and
// the freeze budget budget (0: none).
func switchPair(t *testing.T, restore remotetest.Handler, budget time.Duration) (d *Deployer, old, cand *Member, oldSrv, candSrv *remotetest.Server, log *bytes.Buffer) {
	ok := remotetest.Reply{Stdout: "ok\n"}.Handle
	oldSrv = remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{
		"fleet-data backup": backupHandler([]byte("site data")), "fleet-data freeze": ok, "fleet-data unfreeze": ok})})
	candSrv = remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{
		"fleet-data restore": restore, "fleet-data state": remotetest.Reply{Stdout: baseID + "\n"}.Handle,
		"fleet-data freeze": ok, "fleet-data unfreeze": ok, "promoted-at": ok, "last-sync": ok})})
	data := &spec.Data{Backup: backupCmd, Restore: restoreCmd, State: stateCmd, FreezeBudget: budget,
		Freeze: "docker compose exec -T utility fleet-data freeze", Unfreeze: "docker compose exec -T utility fleet-data unfreeze"}
	d, _, _, log = twoDroplets(t, oldSrv, candSrv, data)
	old = &Member{Droplet: cloud.Droplet{ID: 1, Name: "blog-1", PublicIPv4: oldSrv.Addr}}
	cand = &Member{Droplet: cloud.Droplet{ID: 2, Name: "blog-2", PublicIPv4: candSrv.Addr}}
	return d, old, cand, oldSrv, candSrv, log
}

// prepareSwitch runs the pre-sync before the freeze and the final sync
// after it, both with the candidate's base, asked outside the freeze.
func TestPrepareSwitchPreSyncOrder(t *testing.T) {
	d, old, cand, oldSrv, candSrv, log := switchPair(t, restoreHandler(), 0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sw, err := d.prepareSwitch(ctx, old, cand, "")
	if err != nil {
		t.Fatalf("prepareSwitch: %v\n%s", err, log)
	}
	defer sw.close()
	name := func(srv *remotetest.Server) string {
		var out []string
		for _, c := range ran(srv) {
			switch {
			case strings.Contains(c, "fleet-data unfreeze") && strings.Contains(c, "promoted-at"):
				c = "promoted-at+unfreeze" // one SSH run
			case strings.Contains(c, "fleet-data unfreeze"):
				c = "unfreeze"
			case strings.Contains(c, "fleet-data freeze"):
				c = "freeze"
			case strings.Contains(c, "promoted-at"):
				c = "promoted-at"
			}
			out = append(out, c)
		}
		return strings.Join(out, ",")
	}
	if got, want := name(oldSrv), "backup(base),freeze,backup(base)"; got != want {
		t.Errorf("old ran %s, want %s", got, want)
	}
	// The final sync's base is asked for before the freeze, not inside it.
	if got, want := name(candSrv), "state,restore,state,freeze,restore,promoted-at+unfreeze"; got != want {
		t.Errorf("candidate ran %s, want %s", got, want)
	}
}

// The candidate's freeze runs before the window: it has ended when the
// old droplet's freeze starts, and the window's freeze phase (old's freeze
// alone) does not include its time.
func TestCandidateFrozenBeforeWindow(t *testing.T) {
	const slow = 400 * time.Millisecond
	var candFrozen, oldFreezing atomic.Int64
	ok := remotetest.Reply{Stdout: "ok\n"}.Handle
	oldSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{
		"fleet-data backup": backupHandler([]byte("site data")), "fleet-data unfreeze": ok,
		"fleet-data freeze": func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
			oldFreezing.Store(time.Now().UnixNano())
			return remotetest.Result{}
		}})})
	candSrv := remotetest.NewServer(t, remotetest.Options{Exec: route(map[string]remotetest.Handler{
		"fleet-data restore": restoreHandler(), "fleet-data state": remotetest.Reply{Stdout: baseID + "\n"}.Handle,
		"fleet-data unfreeze": ok, "promoted-at": ok,
		"fleet-data freeze": func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
			time.Sleep(slow) // a drain that waits for writes in flight
			candFrozen.Store(time.Now().UnixNano())
			return remotetest.Result{}
		}})})
	data := &spec.Data{Backup: backupCmd, Restore: restoreCmd, State: stateCmd,
		Freeze: "docker compose exec -T utility fleet-data freeze", Unfreeze: "docker compose exec -T utility fleet-data unfreeze"}
	d, _, _, log := twoDroplets(t, oldSrv, candSrv, data)
	old := &Member{Droplet: cloud.Droplet{ID: 1, Name: "blog-1", PublicIPv4: oldSrv.Addr}}
	cand := &Member{Droplet: cloud.Droplet{ID: 2, Name: "blog-2", PublicIPv4: candSrv.Addr}}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sw, err := d.prepareSwitch(ctx, old, cand, "")
	if err != nil {
		t.Fatalf("prepareSwitch: %v\n%s", err, log)
	}
	defer sw.close()
	if c, o := candFrozen.Load(), oldFreezing.Load(); c == 0 || o == 0 || c > o {
		t.Errorf("candidate frozen at %d, old freezing at %d: want the candidate's freeze done first", c, o)
	}
	_, window := sw.figures()
	if len(window) == 0 || window[0].Name != PhaseFreeze {
		t.Fatalf("window %v, want freeze first", windowNames(window))
	}
	if window[0].Duration >= slow {
		t.Errorf("the window's freeze took %s: it includes the candidate's (%s)", window[0].Duration, slow)
	}
}

// A pre-sync that would not fit the freeze budget is followed by another
// round (carrying only what changed meanwhile); when every round is too
// slow, the estimate refuses before anything is frozen. The estimate uses
// the pre-sync's figure, not up's full carry.
func TestPreSyncRoundsAndEstimate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		slow    int // the first slow restores (each 0.9s; a 1s budget keeps 0.3s)
		wantErr bool
		wantOld string
	}{
		{name: "the second round fits", slow: 1, wantOld: "backup(base),backup(base),freeze,backup(base)"},
		{name: "every round too slow: refused unfrozen", slow: 3, wantErr: true, wantOld: "backup(base),backup(base),backup(base)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var restores atomic.Int32
			restore := restoreHandler()
			d, old, cand, oldSrv, _, log := switchPair(t, func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
				if int(restores.Add(1)) <= tc.slow {
					time.Sleep(900 * time.Millisecond)
				}
				return restore(ctx, x)
			}, time.Second)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			sw, err := d.prepareSwitch(ctx, old, cand, "")
			if sw != nil {
				defer sw.close()
			}
			var fb *FreezeBudgetError
			if tc.wantErr != errors.As(err, &fb) || (!tc.wantErr && err != nil) {
				t.Fatalf("prepareSwitch: %v, want a budget refusal: %v\n%s", err, tc.wantErr, log)
			}
			if tc.wantErr && (fb.Stage != "estimate" || !strings.Contains(err.Error(), "the last pre-sync onto blog-2")) {
				t.Errorf("refusal %q (stage %s)", err, fb.Stage)
			}
			var got []string
			for _, c := range ran(oldSrv) {
				if strings.Contains(c, "fleet-data freeze") {
					c = "freeze"
				}
				got = append(got, c)
			}
			if strings.Join(got, ",") != tc.wantOld {
				t.Errorf("old ran %s, want %s", strings.Join(got, ","), tc.wantOld)
			}
		})
	}
}
