package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorJSON pins the --json error contract: one object per failure,
// {"error": {"message", "code", "exit", <details>}}, with one stable code
// word per exit code and the typed details of the errors fleet knows
// (testdata/error-json.golden).
func TestErrorJSON(t *testing.T) {
	errs := []error{
		errors.New("something broke"),
		&UsageError{Msg: "fleet up: expected one VERSION"},
		&spec.Errors{{File: "droplets.yaml", Line: 1, Col: 10, Msg: "project: bad"}, {File: "droplets.yaml", Line: 9, Col: 7, Msg: "keep: bad"}},
		&ConfigError{Msg: "no API token"},
		&RefusedError{Msg: "needs --yes"},
		&cloud.TimeoutError{What: "the droplet to become active", After: time.Minute},
		&cloud.APIError{Op: "creating a droplet", Status: http.StatusUnprocessableEntity, Message: "bad region"},
		&deploy.DeployError{Droplet: "blog-v1-0-0-abc123", Err: errors.New("unhealthy")},
		fmt.Errorf("%w: waiting", context.Canceled),
		// Typed details.
		&deploy.DeployError{Droplet: "blog-v1-0-0-abc123", Hint: "look at it: fleet logs --droplet blog-v1-0-0-abc123",
			Err: &remote.CloudInitError{Droplet: "blog-v1-0-0-abc123", Code: 1, Status: "error", Errors: []string{"scripts_user failed"}}},
		&deploy.RegionError{IP: "203.0.113.7", IPRegion: "fra1", Droplet: "blog-v1-0-0-abc123", DRegion: "nyc3", Fix: "move droplet.region to fra1"},
		&deploy.RegionError{IP: "203.0.113.7", IPRegion: "fra1", SpecRegion: "nyc3"},
		fmt.Errorf("%w; retry when it is done", &lock.HeldError{Project: "blog", Now: time.Date(2026, 11, 30, 12, 5, 0, 0, time.UTC),
			Holder: lock.Holder{Who: "alice", Host: "ci-7", PID: 42, Cmd: "up v1.2.0", Version: "v0.4.0", Since: 1796040000, Renewed: 1796040290}}),
		&lock.LostError{Project: "blog", Err: errors.New("renewing: API answered 500")},
		&cloud.APIError{Op: "assigning 203.0.113.7", Status: http.StatusUnprocessableEntity, Message: "droplet is in another region", RequestID: "req-1"},
		&cloud.RateLimitError{Op: "listing droplets", Status: 429, Wait: 20 * time.Minute, Until: time.Date(2026, 11, 30, 12, 25, 0, 0, time.UTC), Budget: 30 * time.Second},
		&cloud.TimeoutError{What: "action 7 (assign)", After: 2 * time.Minute, Last: "in-progress"},
		&deploy.WritesAtRiskError{Writes: 3, From: "blog-v1-1-0-bbbbbb", To: "blog-v1-0-0-aaaaaa", Reason: errors.New("restore refused")},
		&remote.HostKeyMismatchError{Droplet: "blog-v1-0-0-abc123", Addr: "192.0.2.10:22", Want: "SHA256:pinned", Got: "SHA256:other"},
		&deploy.BakeError{Droplet: "blog-bake-c0ffee", Err: errors.New("cloud-init failed"), Destroyed: true},
		&deploy.FreezeBudgetError{Budget: time.Second, Stage: "estimate", Estimate: 2700 * time.Millisecond, Basis: "the last sync onto blog-v1-1-0-bbbbbb moved 52.0 MB in 2.40s, plus 0.30s for the move"},
		&deploy.FreezeBudgetError{Budget: time.Second, Stage: "sync", Elapsed: 720 * time.Millisecond,
			Window: []deploy.WindowPhase{{Name: "freeze", Duration: 50 * time.Millisecond}, {Name: "sync", Duration: 670 * time.Millisecond}},
			Sync:   &deploy.Transfer{From: "blog-v1-0-0-aaaaaa", To: "blog-v1-1-0-bbbbbb", Bytes: 9000000, Duration: 670 * time.Millisecond},
			IP:     "203.0.113.7", Droplet: "blog-v1-0-0-aaaaaa", Holder: "blog-v1-0-0-aaaaaa", Unfrozen: true, Unfreeze: "fleet-data unfreeze"},
	}
	var buf bytes.Buffer
	seen := map[string]int{}
	for _, err := range errs {
		var out bytes.Buffer
		code := printError(&out, &bytes.Buffer{}, true, err)
		buf.Write(out.Bytes())
		var doc ErrorJSON
		dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%v: %v", err, out.String())
		}
		e := doc.Error
		if e.Exit != code || e.Code != ExitCodeName(code) || e.Message != err.Error() {
			t.Errorf("%v: %+v, exit %d", err, e, code)
		}
		if prev, dup := seen[e.Code]; dup && prev != code {
			t.Errorf("code %q names exits %d and %d", e.Code, prev, code)
		}
		seen[e.Code] = code
	}
	golden := filepath.Join("testdata", "error-json.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("JSON errors changed (go test -run TestErrorJSON -update):\n%s\nwant:\n%s", buf.Bytes(), want)
	}
}

// Without --json, stdout stays empty and stderr has the plain message.
func TestPrintErrorPlain(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := printError(&out, &errOut, false, &ConfigError{Msg: "no API token"}); code != ExitConfig {
		t.Errorf("exit %d", code)
	}
	if out.Len() != 0 || errOut.String() != "fleet: no API token\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

// A freeze budget refusal or abort is exit 5 (refused), wrapped or not,
// and never taken for an interrupt (its phase ran out on a deadline).
func TestFreezeBudgetExit(t *testing.T) {
	fb := &deploy.FreezeBudgetError{Budget: time.Second, Stage: "sync"}
	for _, err := range []error{fb, fmt.Errorf("promote: %w", fb)} {
		if got := exitCode(err); got != ExitRefused {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitRefused)
		}
	}
}

func TestPrintWindow(t *testing.T) {
	w := []deploy.WindowPhase{{Name: "freeze", Duration: 210 * time.Millisecond}, {Name: "sync", Duration: 930 * time.Millisecond}, {Name: "move", Duration: 460 * time.Millisecond}}
	for _, tc := range []struct {
		freeze, budget time.Duration
		window         []deploy.WindowPhase
		want           string
	}{
		{0, 0, nil, ""},
		{1600 * time.Millisecond, 5 * time.Second, w, "writes were frozen for 1.6s (budget 5s: freeze 0.21s, sync 0.93s, move 0.46s)\n"},
		{1600 * time.Millisecond, 0, nil, "writes were frozen for 1.6s\n"},
		{1800 * time.Millisecond, 5 * time.Second, []deploy.WindowPhase{{Name: "freeze", Duration: 200 * time.Millisecond},
			{Name: "sync", Start: 200 * time.Millisecond, Duration: 900 * time.Millisecond},
			{Name: "forward", Start: 1100 * time.Millisecond, Duration: 300 * time.Millisecond},
			{Name: "move", Start: 1100 * time.Millisecond, Duration: 460 * time.Millisecond}},
			"writes were frozen for 1.8s (budget 5s: freeze 0.20s, sync 0.90s, forward 0.30s alongside move 0.46s)\n"},
	} {
		var b bytes.Buffer
		printWindow(&b, tc.freeze, tc.budget, tc.window)
		if b.String() != tc.want {
			t.Errorf("printWindow(%v, %v) = %q, want %q", tc.freeze, tc.budget, b.String(), tc.want)
		}
	}
}
