package cli

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
)

// Ctrl-C stops fleet promptly wherever it waits; an interrupted up keeps
// its candidate without a clean-up; the clean-up of an interrupted move
// (reading the IP back) can be cut short by a second Ctrl-C, which exits at
// once, saying what was left undone. The fleet on PATH is this test binary
// (testscript.Main).
func TestInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs fleet as a process")
	}
	tests := []struct {
		name   string
		opts   localcloud.Options
		faults string
		// setup runs before faults are added; args is the command (default: up v1.0.0).
		setup [][]string
		args  []string
		// ready: fleet sits in the wait to interrupt.
		ready  func(s localcloud.Stats) bool
		second syscall.Signal // sent once fleet says it is cleaning up; 0: none
		within time.Duration  // from the last SIGINT to exit (the bugs took 30 s)
		stderr []string
	}{
		{
			name:   "in a poll",
			faults: "stuck-new=hello-*",
			ready:  func(s localcloud.Stats) bool { return count(s, 200, "GET", "/v2/actions/") >= 2 },
			within: 3 * time.Second,
		},
		{
			// Before, the clean-up (tagging the candidate failed) met the
			// same limit and waited it out (up to 30 s); now an interrupted
			// up has no clean-up: its candidate stays the candidate.
			name:   "in a rate-limited wait",
			opts:   localcloud.Options{RateLimit: 6, RateWindow: 15 * time.Second},
			faults: "stuck-new=hello-*",
			ready:  func(s localcloud.Stats) bool { return count(s, 429, "GET", "/v2/actions/") >= 1 },
			within: 3 * time.Second,
			stderr: []string{"is kept as the candidate"},
		},
		{
			name:   "a second Ctrl-C during a stuck read-back",
			setup:  promoted,
			args:   []string{"promote"},
			faults: "GET /v2/reserved_ips/ latency=1m",
			ready:  func(s localcloud.Stats) bool { return count(s, 201, "POST", "/v2/reserved_ips/") >= 1 },
			second: syscall.SIGINT,
			within: 3 * time.Second,
			stderr: []string{
				"fleet: interrupted: recording what happened; press Ctrl-C again to exit now\n",
				"fleet: interrupted again: exiting now; left undone: GET /v2/reserved_ips/",
				"run `fleet status` to see where things stand\n",
			},
		},
		{
			name:   "SIGTERM after Ctrl-C",
			setup:  promoted,
			args:   []string{"promote"},
			faults: "GET /v2/reserved_ips/ latency=1m",
			ready:  func(s localcloud.Stats) bool { return count(s, 201, "POST", "/v2/reserved_ips/") >= 1 },
			second: syscall.SIGTERM,
			within: 3 * time.Second,
			stderr: []string{"left undone: GET /v2/reserved_ips/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, err := localcloud.ParseFaults(tt.faults)
			if err != nil {
				t.Fatal(err)
			}
			opts := tt.opts
			opts.Token = "sig-token"
			opts.BootDelay, opts.ActionDelay = 50*time.Millisecond, 50*time.Millisecond
			sshd, err := localcloud.NewMemorySSH()
			if err != nil {
				t.Fatal(err)
			}
			opts.SSH = sshd
			srv, err := localcloud.NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv.Handler())
			// srv first: it ends the delay of a POST whose client is gone.
			t.Cleanup(func() { srv.Close(); hs.Close(); sshd.Close() })

			dir := t.TempDir()
			if err := copyMissing("testdata/project", dir); err != nil {
				t.Fatal(err)
			}
			if err := deployKey(filepath.Join(dir, "keys")); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(), "HOME="+dir, "FLEET_HOME="+dir+"/.fleet", "FLEET_API_URL="+hs.URL,
				"DIGITALOCEAN_TOKEN=sig-token", "FLEET_POLL_INTERVAL=50ms", "FLEET_RETRY_WAIT_MIN=100ms",
				"FLEET_SSH_PORT="+strconv.Itoa(sshd.Port))
			for _, args := range tt.setup {
				c := exec.Command("fleet", args...)
				c.Dir, c.Env = dir, env
				if out, err := c.CombinedOutput(); err != nil {
					t.Fatalf("fleet %v: %v\n%s", args, err, out)
				}
			}
			for _, f := range fs {
				srv.AddFault(f)
			}
			args := tt.args
			if args == nil {
				args = []string{"up", "v1.0.0"}
			}
			cmd := exec.Command("fleet", args...)
			cmd.Dir, cmd.Env = dir, env
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			waitFor(t, exited, "fleet to reach the wait", func() bool { return tt.ready(srv.Stats()) })
			sent := time.Now()
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			if tt.second != 0 {
				// Sent even without the note, so that a fleet that ignores
				// it is measured too.
				noted := time.Now().Add(3 * time.Second)
				for !strings.Contains(stderr.String(), "press Ctrl-C again") && time.Now().Before(noted) {
					time.Sleep(20 * time.Millisecond)
				}
				sent = time.Now()
				if err := cmd.Process.Signal(tt.second); err != nil {
					t.Fatal(err)
				}
			}
			var werr error
			select {
			case werr = <-exited:
			case <-time.After(tt.within + 40*time.Second):
				t.Fatalf("fleet still runs %v after SIGINT; stderr:\n%s", time.Since(sent), stderr.String())
			}
			took := time.Since(sent)
			t.Logf("exit %v %v after the last signal; stderr:\n%s", werr, took.Round(time.Millisecond), stderr.String())
			var ee *exec.ExitError
			if !errors.As(werr, &ee) || ee.ExitCode() != ExitInterrupted {
				t.Errorf("exit %v, want %d", werr, ExitInterrupted)
			}
			if took > tt.within {
				t.Errorf("fleet exited %v after the last signal, want within %v", took, tt.within)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
		})
	}
}

func TestUndoneNote(t *testing.T) {
	tests := []struct {
		pending []string
		want    string
	}{
		{nil, "fleet: interrupted again: exiting now; the clean-up in progress was cut short; run `fleet status` to see where things stand"},
		{[]string{"POST /v2/tags", "DELETE /v2/tags/fleet-failed/resources"},
			"fleet: interrupted again: exiting now; left undone: POST /v2/tags, DELETE /v2/tags/fleet-failed/resources; run `fleet status` to see where things stand"},
	}
	for _, tt := range tests {
		if got := undoneNote(tt.pending); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

// promoted: v1.0.0 live, v2.0.0 a candidate, ready for a promote.
var promoted = [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v2.0.0"}}

func count(s localcloud.Stats, status int, method, path string) int {
	n := 0
	for _, r := range s.Requests {
		if r.Status == status && r.Method == method && strings.HasPrefix(r.Path, path) {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, exited chan error, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		select {
		case err := <-exited:
			t.Fatalf("fleet exited (%v) before %s", err, what)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// syncBuffer is a bytes.Buffer the process's copier writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
