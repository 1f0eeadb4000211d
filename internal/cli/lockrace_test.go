package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/lock"
)

// raceEnv is one project on a fresh in-process API server; commands run
// in-process, each with its own Factory, as separate fleet processes would.
type raceEnv struct {
	dir, url string
	getenv   func(string) string
	srv      *localcloud.Server
}

func newRaceEnv(t *testing.T) *raceEnv {
	t.Helper()
	sshd, err := localcloud.NewMemorySSH()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localcloud.NewServer(localcloud.Options{Token: "race", BootDelay: 20 * time.Millisecond, ActionDelay: 50 * time.Millisecond, SSH: sshd})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close(); sshd.Close() })
	dir := t.TempDir()
	if err := copyMissing("testdata/project", dir); err != nil {
		t.Fatal(err)
	}
	if err := deployKey(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"FLEET_API_URL": hs.URL, "DIGITALOCEAN_TOKEN": "race", "HOME": dir,
		"FLEET_POLL_INTERVAL": "10ms", "FLEET_RETRY_WAIT_MIN": "10ms", "FLEET_SSH_PORT": strconv.Itoa(sshd.Port),
	}
	return &raceEnv{dir: dir, url: hs.URL, getenv: func(k string) string { return env[k] }, srv: srv}
}

func (e *raceEnv) factory() (*Factory, *syncBuffer) {
	out := &syncBuffer{}
	io := &IOStreams{In: strings.NewReader(""), Out: out, ErrOut: out}
	f := &Factory{IOStreams: io, Version: "race", Getenv: e.getenv}
	return f, out
}

// fleet runs one command and returns its error and combined output.
func (e *raceEnv) fleet(args ...string) (string, error) {
	f, out := e.factory()
	cmd := NewCmdRoot(f)
	cmd.SetArgs(append(args, "-f", filepath.Join(e.dir, "droplets.yaml")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

func (e *raceEnv) must(t *testing.T, args ...string) {
	t.Helper()
	if out, err := e.fleet(args...); err != nil {
		t.Fatalf("fleet %v: %v\n%s", args, err, out)
	}
}

func (e *raceEnv) state(t *testing.T) *deploy.State {
	t.Helper()
	f, _ := e.factory()
	f.SpecPath = filepath.Join(e.dir, "droplets.yaml")
	d, err := f.Deployer(nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// broken lists the invariants the state breaks: at most one candidate, and
// once anything was promoted, the reserved IP on a droplet of the project.
func broken(st *deploy.State, promoted bool) []string {
	var bad []string
	n := 0
	for _, m := range st.Members {
		if m.Role == deploy.RoleCandidate {
			n++
		}
	}
	if n > 1 {
		bad = append(bad, fmt.Sprintf("%d candidates", n))
	}
	if promoted && st.Live() == nil {
		bad = append(bad, "the reserved IP is assigned to no droplet of the project")
	}
	return bad
}

// TestLockRaces runs two mutating commands at once, 20 times per pair,
// and counts the tries that leave the project broken.
func TestLockRaces(t *testing.T) {
	tries := 20
	if testing.Short() {
		tries = 3
	}
	pairs := []struct {
		name  string
		setup [][]string
		a, b  []string
	}{
		{"up vs up", nil, []string{"up", "v2.0.0"}, []string{"up", "v2.1.0"}},
		{"promote vs rollback", [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}}, []string{"promote"}, []string{"rollback"}},
		{"up vs prune", [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"}, {"up", "v1.2.0"}, {"promote"}},
			[]string{"up", "v2.0.0"}, []string{"prune", "--keep=0", "--yes"}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel() // each try has its own server; the waits are sleeps
			bad, refused := 0, 0
			for i := 0; i < tries; i++ {
				e := newRaceEnv(t)
				for _, s := range p.setup {
					e.must(t, s...)
				}
				// Every call takes 20 ms, as DigitalOcean's take 100 ms
				// and more: the windows between reading the state and
				// acting on it are as wide as in real life.
				e.srv.AddFault(localcloud.Fault{Kind: localcloud.FaultLatency, Path: "/v2/", Delay: 20 * time.Millisecond})
				var wg sync.WaitGroup
				errs, outs := make([]error, 2), make([]string, 2)
				start := make(chan struct{})
				// Processes start with some skew: up to 300 ms, seeded by
				// the try, delaying a and b in turn.
				skew := time.Duration(rand.New(rand.NewPCG(uint64(i), 9)).IntN(300)) * time.Millisecond
				for j, args := range [][]string{p.a, p.b} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						if j == i%2 {
							time.Sleep(skew)
						}
						outs[j], errs[j] = e.fleet(args...)
					}()
				}
				close(start)
				wg.Wait()
				if b := broken(e.state(t), len(p.setup) > 0); len(b) > 0 {
					bad++
					t.Logf("try %d: %s (a: %v; b: %v)", i+1, strings.Join(b, ", "), errs[0], errs[1])
				}
				// The loser is refused by the lock (exit 5, naming the
				// holder), or, when the winner was done before it began,
				// by the state the winner left.
				for j, err := range errs {
					var held *lock.HeldError
					var conflict *deploy.ConflictError
					switch {
					case err == nil || errors.As(err, &conflict):
					case errors.As(err, &held):
						refused++
						other := strings.TrimSuffix(strings.Join([][]string{p.a, p.b}[1-j], " "), " --yes") // --yes is global
						for _, want := range []string{"project hello is locked by ", "running `fleet " + other + "` (fleet race) since "} {
							if !strings.Contains(err.Error(), want) {
								t.Errorf("try %d: %q does not say %q", i+1, err, want)
							}
						}
						if exitCode(err) != ExitRefused {
							t.Errorf("try %d: exit %d, want %d", i+1, exitCode(err), ExitRefused)
						}
					default:
						t.Errorf("try %d: fleet %v: %v\n%s", i+1, [][]string{p.a, p.b}[j], err, outs[j])
					}
				}
			}
			t.Logf("%s: %d of %d tries broke an invariant; the lock refused %d commands", p.name, bad, tries, refused)
			if bad > 0 {
				t.Errorf("%s: %d of %d tries broke an invariant", p.name, bad, tries)
			}
		})
	}
}
