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
	"github.com/fleetdeploy/fleet/internal/spec"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorJSON pins the --json error contract: one object per failure,
// {"error", "code", "exit"}, with one stable code word per exit code
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
	}
	var buf bytes.Buffer
	seen := map[string]int{}
	for _, err := range errs {
		var out bytes.Buffer
		code := printError(&out, &bytes.Buffer{}, true, err)
		buf.Write(out.Bytes())
		var e ErrorJSON
		dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("%v: %v", err, out.String())
		}
		if e.Exit != code || e.Code != ExitCodeName(code) || e.Error != err.Error() {
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
