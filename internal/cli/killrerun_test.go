package cli

// The kill-and-rerun suite (fleet issue 9): any fleet command can be
// interrupted (SIGINT, SIGKILL) at any moment, and running it again must
// converge. Each case restores a scenario's starting state into an
// in-process API server, runs a real fleet binary, signals it at the Nth
// request of one kind (before the server handles it, or after it took
// effect), re-runs the same command, then reads the server through godo
// and checks the invariants (killInvariants). Without the killrerun build
// tag it is a smoke run (one try per scenario and phase); with it, or with
// FLEET_KILL_TRIES=N, every (phase, signal, moment) gets N tries.
//
//	FLEET_KILL_TRIES=N   tries per case (full matrix)
//	FLEET_KILL_SEED=S    seed of the timing jitter (logged at the start)
//	FLEET_KILL_REPORT=1  count and print broken invariants without failing
//	FLEET_KILL_ONLY=RE   only cases whose name matches RE
//	FLEET_BIN=PATH       use this fleet binary instead of building one

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// killFull is set by the killrerun build tag: 30 tries per case.
var killFull bool

const (
	killFullTries = 30
	killProject   = "hello"
	// A whole command; a signalled fleet's cleanup may take 30 s.
	killRunWait = 60 * time.Second
)

// The invariants, in table order.
var killInvariants = []struct{ id, what string }{
	{"I1", "exactly one live droplet holds the reserved IP, and it is active"},
	{"I2", "at most one candidate; never two droplets of one version"},
	{"I3", "no orphaned droplet or reserved IP"},
	{"I4", "the release to fall back on survives the rerun and a prune"},
	{"I5", "the rerun exits 0 (or a documented refusal), nothing hangs, status agrees with the API"},
	{"G", "the rerun reached the command's goal"},
	{"C", "every exchange matches the OpenAPI contract"},
}

// killPhase is a boundary: the nth request matching pattern (a ServeMux
// pattern, "METHOD /path/{wildcard}").
type killPhase struct {
	pattern string
	nth     int
}

func (p killPhase) String() string {
	s := strings.NewReplacer("/v2/", "", "/", "_", "{", "", "}", "", " ", "_").Replace(p.pattern)
	return s + "#" + strconv.Itoa(p.nth)
}

// killScenario is one command from one starting state.
type killScenario struct {
	name  string
	keep  int
	setup [][]string // run once, each to exit 0; the state is snapshotted
	cmd   []string   // interrupted, then re-run
	// promoted: a promote has completed once the rerun is done (I1 holds).
	promoted bool
	// refusal: the rerun may exit 5 with this message (the first run did
	// the work already).
	refusal string
	// survive: versions that must exist after the rerun and a prune (I4).
	survive []string
	// goal: the state the command aims at.
	live      string   // version live after the rerun ("" = none)
	candidate string   // version that is the one candidate ("" = none)
	gone      []string // versions that must not exist
	phases    []killPhase
}

var upPhases = []killPhase{
	{"POST /v2/droplets", 1},
	{"GET /v2/actions/{id}", 1},
	{"GET /v2/droplets/{id}", 1},
}

var killScenarios = []killScenario{
	{
		name: "up-first", keep: 2,
		cmd:     []string{"up", "v1.0.0"},
		survive: []string{"v1.0.0"}, candidate: "v1.0.0",
		phases: upPhases,
	},
	{
		name: "up-live", keep: 2,
		setup:    [][]string{{"up", "v1.0.0"}, {"promote"}},
		cmd:      []string{"up", "v1.1.0"},
		promoted: true, survive: []string{"v1.0.0", "v1.1.0"}, live: "v1.0.0", candidate: "v1.1.0",
		phases: upPhases,
	},
	{
		name: "promote-first", keep: 2,
		setup:    [][]string{{"up", "v1.0.0"}},
		cmd:      []string{"promote"},
		promoted: true, refusal: "no candidate to promote", survive: []string{"v1.0.0"}, live: "v1.0.0",
		phases: []killPhase{
			{"POST /v2/reserved_ips", 1},
			{"GET /v2/actions/{id}", 1},
			{"GET /v2/reserved_ips/{ip}", 1},
			{"POST /v2/tags/{tag}/resources", 1},
		},
	},
	{
		// keep 1: this promote prunes v1.0.0.
		name: "promote-live", keep: 1,
		setup:    [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"}, {"up", "v1.2.0"}},
		cmd:      []string{"promote"},
		promoted: true, refusal: "no candidate to promote", survive: []string{"v1.1.0", "v1.2.0"}, live: "v1.2.0",
		phases: []killPhase{
			{"POST /v2/reserved_ips/{ip}/actions", 1},
			{"GET /v2/reserved_ips/{ip}/actions/{id}", 1},
			{"GET /v2/reserved_ips/{ip}", 1},
			{"POST /v2/tags/{tag}/resources", 1},
			{"DELETE /v2/droplets/{id}", 1},
		},
	},
	{
		name: "rollback", keep: 2,
		setup:    [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"}},
		cmd:      []string{"rollback"},
		promoted: true, refusal: "nothing to roll back to", survive: []string{"v1.0.0"}, live: "v1.0.0",
		phases: []killPhase{
			{"POST /v2/tags/{tag}/resources", 1},
			{"POST /v2/reserved_ips/{ip}/actions", 1},
			{"GET /v2/reserved_ips/{ip}/actions/{id}", 1},
			{"GET /v2/reserved_ips/{ip}", 1},
		},
	},
	{
		// Two releases to go back to: a rerun of a rollback that took
		// effect must not roll back a second time.
		name: "rollback-deep", keep: 2,
		setup: [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"},
			{"up", "v1.2.0"}, {"promote"}},
		cmd:      []string{"rollback"},
		promoted: true, survive: []string{"v1.0.0", "v1.1.0"}, live: "v1.1.0",
		phases: []killPhase{
			{"POST /v2/tags/{tag}/resources", 1},
			{"POST /v2/reserved_ips/{ip}/actions", 1},
			{"GET /v2/reserved_ips/{ip}/actions/{id}", 1},
			{"GET /v2/reserved_ips/{ip}", 1},
		},
	},
	{
		name: "rollback-candidate", keep: 2,
		setup:    [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}},
		cmd:      []string{"rollback"},
		promoted: true, refusal: "nothing to roll back to", survive: []string{"v1.0.0"}, live: "v1.0.0", gone: []string{"v1.1.0"},
		phases: []killPhase{{"DELETE /v2/droplets/{id}", 1}},
	},
	{
		// With a previous droplet: a rerun of a discard that took effect
		// must not roll the live droplet back.
		name: "rollback-candidate-deep", keep: 2,
		setup:    [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"}, {"up", "v1.2.0"}},
		cmd:      []string{"rollback"},
		promoted: true, survive: []string{"v1.0.0", "v1.1.0"}, live: "v1.1.0", gone: []string{"v1.2.0"},
		phases: []killPhase{{"DELETE /v2/droplets/{id}", 1}},
	},
	{
		// v1.2.0 was rolled back from: prune destroys it, keeps v1.0.0.
		name: "prune", keep: 2,
		setup: [][]string{{"up", "v1.0.0"}, {"promote"}, {"up", "v1.1.0"}, {"promote"},
			{"up", "v1.2.0"}, {"promote"}, {"rollback"}},
		cmd:      []string{"prune", "--yes"},
		promoted: true, survive: []string{"v1.0.0", "v1.1.0"}, live: "v1.1.0", gone: []string{"v1.2.0"},
		phases: []killPhase{{"DELETE /v2/droplets/{id}", 1}},
	},
}

// killSignal: INT, KILL, or INT2 (a second SIGINT 0-50 ms after the first).
var killSignals = []string{"INT", "KILL", "INT2"}

// killMoment: before the server handles the request, or after it took
// effect (then 1 in 4 tries withhold the response until fleet is
// signalled; the others signal 0-100 ms after the response).
var killMoments = []string{"before", "after"}

type killCase struct {
	sc     *killScenario
	phase  killPhase
	signal string
	moment string
	tries  int
}

func (c killCase) name() string {
	return c.sc.name + "/" + c.phase.String() + "/" + c.signal + "/" + c.moment
}

// killTally is what the tries of one case found.
type killTally struct {
	tries       int
	interrupted int // the signal reached a running fleet
	broken      map[string]int
	anyBroken   int
	missed      int // the phase was never reached
	wall        time.Duration
}

func TestKillRerun(t *testing.T) {
	start := time.Now()
	tries, full := 1, killFull
	if killFull {
		tries = killFullTries
	}
	if v := os.Getenv("FLEET_KILL_TRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("FLEET_KILL_TRIES=%q: want a whole number from 1 to 10000", v)
		}
		tries, full = n, true
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("FLEET_KILL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FLEET_KILL_SEED=%q: %v", v, err)
		}
		seed = s
	}
	report := os.Getenv("FLEET_KILL_REPORT") != ""
	var only *regexp.Regexp
	if v := os.Getenv("FLEET_KILL_ONLY"); v != "" {
		var err error
		if only, err = regexp.Compile(v); err != nil {
			t.Fatalf("FLEET_KILL_ONLY=%q: %v", v, err)
		}
	}
	bin := killBinary(t)
	t.Logf("seed %d (FLEET_KILL_SEED), %d tries per case, full matrix %v, binary %s", seed, tries, full, bin)

	var cases []killCase
	for i := range killScenarios {
		sc := &killScenarios[i]
		for pi, ph := range sc.phases {
			for si, sig := range killSignals {
				for mi, mo := range killMoments {
					// The smoke run takes one (signal, moment) per phase,
					// turning through them.
					if !full && (pi+i)%(len(killSignals)*len(killMoments)) != si*len(killMoments)+mi {
						continue
					}
					c := killCase{sc: sc, phase: ph, signal: sig, moment: mo, tries: tries}
					if only != nil && !only.MatchString(c.name()) {
						continue
					}
					cases = append(cases, c)
				}
			}
		}
	}
	if len(cases) == 0 {
		t.Fatalf("no case matches FLEET_KILL_ONLY=%q", only)
	}

	snaps := &killSnapshots{bin: bin, dir: t.TempDir()}
	var mu sync.Mutex
	tallies := map[string]*killTally{}
	t.Run("cases", func(t *testing.T) {
		for ci, c := range cases {
			t.Run(c.name(), func(t *testing.T) {
				t.Parallel()
				snap, err := snaps.get(c.sc)
				if err != nil {
					t.Fatal(err)
				}
				tl := &killTally{broken: map[string]int{}}
				cstart := time.Now()
				rng := rand.New(rand.NewPCG(seed, uint64(ci)))
				for try := range c.tries {
					res := killTry(t, bin, snap, c, rng)
					tl.tries++
					if res.interrupted {
						tl.interrupted++
					}
					if !res.reached {
						tl.missed++
					}
					if len(res.broken) > 0 {
						tl.anyBroken++
						for id := range res.broken {
							tl.broken[id]++
						}
						// The first few in full; the rest in a line each.
						msg := fmt.Sprintf("try %d/%d: %s", try+1, c.tries, res.summary())
						if tl.anyBroken <= 2 {
							msg += "\n" + res.diag
						}
						switch {
						case !report:
							t.Error(msg)
						case tl.anyBroken <= 2:
							t.Log(msg)
						}
					}
				}
				tl.wall = time.Since(cstart)
				// A phase no try reached tests nothing.
				if tl.missed == tl.tries {
					t.Errorf("no try reached %s: the case cannot fail", c.phase)
				}
				mu.Lock()
				tallies[c.name()] = tl
				mu.Unlock()
			})
		}
	})
	t.Log("\n" + killTable(cases, tallies, time.Since(start)))
}

// killTable prints the figures: per scenario and signal, then per case.
func killTable(cases []killCase, tallies map[string]*killTally, wall time.Duration) string {
	var b strings.Builder
	head := func() {
		fmt.Fprintf(&b, "%-60s %6s %6s %6s", "", "tries", "intr", "broken")
		for _, inv := range killInvariants {
			fmt.Fprintf(&b, " %4s", inv.id)
		}
		fmt.Fprintf(&b, " %6s\n", "secs")
	}
	row := func(name string, tl *killTally) {
		fmt.Fprintf(&b, "%-60s %6d %6d %6d", name, tl.tries, tl.interrupted, tl.anyBroken)
		for _, inv := range killInvariants {
			fmt.Fprintf(&b, " %4d", tl.broken[inv.id])
		}
		fmt.Fprintf(&b, " %6.0f\n", tl.wall.Seconds())
	}
	add := func(dst *killTally, src *killTally) {
		dst.tries += src.tries
		dst.interrupted += src.interrupted
		dst.anyBroken += src.anyBroken
		dst.missed += src.missed
		dst.wall += src.wall
		for k, v := range src.broken {
			dst.broken[k] += v
		}
	}
	groups := map[string]*killTally{}
	var order []string
	total := &killTally{broken: map[string]int{}}
	for _, c := range cases {
		tl := tallies[c.name()]
		if tl == nil {
			continue
		}
		g := c.sc.name + " " + c.signal
		if groups[g] == nil {
			groups[g] = &killTally{broken: map[string]int{}}
			order = append(order, g)
		}
		add(groups[g], tl)
		add(total, tl)
	}
	fmt.Fprintf(&b, "kill-and-rerun: %d tries in %s (tries = runs; intr = the signal hit a running fleet; broken = tries with any invariant broken)\n",
		total.tries, wall.Round(time.Second))
	for _, inv := range killInvariants {
		fmt.Fprintf(&b, "  %-3s %s\n", inv.id, inv.what)
	}
	b.WriteString("\nper scenario and signal (secs: summed case time)\n")
	head()
	for _, g := range order {
		row(g, groups[g])
	}
	row("total", total)
	b.WriteString("\nper case\n")
	head()
	for _, c := range cases {
		if tl := tallies[c.name()]; tl != nil {
			row(c.name(), tl)
		}
	}
	return b.String()
}

// killBinary builds fleet once per test binary run (or takes FLEET_BIN).
func killBinary(t *testing.T) string {
	if p := os.Getenv("FLEET_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FLEET_BIN: %v", err)
		}
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build fleet with: %v", err)
	}
	out := filepath.Join(t.TempDir(), "fleet")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, "github.com/fleetdeploy/fleet/cmd/fleet")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building fleet: %v\n%s", err, b)
	}
	return out
}

// killSnapshots runs each scenario's setup once and keeps the API state.
type killSnapshots struct {
	bin, dir string
	mu       sync.Mutex
	once     map[string]*sync.Once
	files    map[string]string
	errs     map[string]error
}

func (s *killSnapshots) get(sc *killScenario) (string, error) {
	s.mu.Lock()
	if s.once == nil {
		s.once, s.files, s.errs = map[string]*sync.Once{}, map[string]string{}, map[string]error{}
	}
	o := s.once[sc.name]
	if o == nil {
		o = new(sync.Once)
		s.once[sc.name] = o
	}
	s.mu.Unlock()
	o.Do(func() {
		f, err := s.build(sc)
		s.mu.Lock()
		s.files[sc.name], s.errs[sc.name] = f, err
		s.mu.Unlock()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[sc.name], s.errs[sc.name]
}

func (s *killSnapshots) build(sc *killScenario) (string, error) {
	dir := filepath.Join(s.dir, sc.name)
	state := filepath.Join(dir, "state.json")
	env, err := newKillEnv(s.bin, dir, "", sc)
	if err != nil {
		return "", err
	}
	api, err := startKillAPI(state)
	if err != nil {
		return "", err
	}
	env.url, env.token, env.sshPort = api.hs.URL, api.token, api.sshd.Port
	for _, args := range sc.setup {
		r := env.run(args, killRunWait)
		if r.code != 0 {
			api.close()
			return "", fmt.Errorf("setup of %s: fleet %s: exit %d\n%s", sc.name, strings.Join(args, " "), r.code, r.stderr)
		}
	}
	api.close() // writes the state
	if vs := api.check.Violations(); len(vs) > 0 {
		return "", fmt.Errorf("setup of %s: %d contract violations:\n%s", sc.name, len(vs), strings.Join(vs, "\n"))
	}
	if _, err := os.Stat(state); errors.Is(err, os.ErrNotExist) {
		// A scenario with no setup starts from an empty cloud.
		return "", nil
	}
	return state, nil
}

// killAPI is one in-process API server behind the killer and the
// contract check: killer → contract → localcloud.
type killAPI struct {
	sshd  *localcloud.MemorySSH // droplets' sshd; their disks beside the state
	srv   *localcloud.Server
	hs    *httptest.Server
	check *contract.Validator
	kill  *killer
	token string
}

func startKillAPI(statePath string) (*killAPI, error) {
	v, err := contract.LoadDefault()
	if err != nil {
		return nil, err
	}
	token := "kill-token-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sshd, err := localcloud.NewMemorySSH()
	if err != nil {
		return nil, err
	}
	sshd.Dir = killDisks(statePath)
	srv, err := localcloud.NewServer(localcloud.Options{
		Token: token, BootDelay: 100 * time.Millisecond, ActionDelay: 100 * time.Millisecond, StatePath: statePath, SSH: sshd,
	})
	if err != nil {
		sshd.Close()
		return nil, err
	}
	k := &killer{next: v.Middleware(srv.Handler())}
	return &killAPI{sshd: sshd, srv: srv, hs: httptest.NewServer(k), check: v, kill: k, token: token}, nil
}

// killDisks is where the droplets of the API state at statePath keep
// their disks (host keys).
func killDisks(statePath string) string { return filepath.Join(filepath.Dir(statePath), "disks") }

// copyDisks restores a snapshot's droplet disks beside a try's state.
func copyDisks(snap, state string) error {
	src := killDisks(snap)
	if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return copyMissing(src, killDisks(state))
}

func (a *killAPI) close() {
	a.hs.Close()
	a.srv.Close()
	a.sshd.Close()
}

// killer signals the fleet process at the nth request matching a pattern.
type killer struct {
	next http.Handler

	mu      sync.Mutex
	armed   bool
	match   *http.ServeMux
	nth     int
	seen    int
	plan    killPlan
	proc    *os.Process
	ready   chan struct{} // closed once proc is set
	exited  chan struct{} // closed once the process is reaped
	fired   bool
	firedAt string // the request that fired
	pending sync.WaitGroup
}

type killPlan struct {
	signal   string        // INT, KILL, INT2
	moment   string        // before, after
	withhold bool          // after: hold the response until fleet is signalled
	delay    time.Duration // after: signal this long after the response
	second   time.Duration // INT2: the second SIGINT this long after the first
}

// arm starts counting; it is called before fleet starts, so that no
// request goes uncounted, and setProc right after.
func (p killPlan) String() string {
	s := "SIG" + p.signal + " " + p.moment
	switch {
	case p.withhold:
		s += ", response withheld until signalled"
	case p.moment == "after":
		s += fmt.Sprintf(", %s after the response", p.delay)
	}
	if p.signal == "INT2" {
		s += fmt.Sprintf(", second SIGINT %s later", p.second)
	}
	return s
}

func (k *killer) arm(pattern string, nth int, plan killPlan) {
	m := http.NewServeMux()
	m.HandleFunc(pattern, func(http.ResponseWriter, *http.Request) {})
	k.mu.Lock()
	k.armed, k.match, k.nth, k.seen, k.plan, k.fired = true, m, nth, 0, plan, false
	k.proc, k.ready, k.exited = nil, make(chan struct{}), nil
	k.mu.Unlock()
}

func (k *killer) setProc(proc *os.Process, exited chan struct{}) {
	k.mu.Lock()
	k.proc, k.exited = proc, exited
	close(k.ready)
	k.mu.Unlock()
}

// disarm stops matching and waits for a delayed signal to be sent.
func (k *killer) disarm() {
	k.mu.Lock()
	k.armed = false
	k.mu.Unlock()
	k.pending.Wait()
}

// take reports whether r is the request to signal at.
func (k *killer) take(r *http.Request) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.armed || k.fired {
		return false
	}
	if _, p := k.match.Handler(r); p == "" {
		return false
	}
	k.seen++
	if k.seen != k.nth {
		return false
	}
	k.fired, k.firedAt = true, r.Method+" "+r.URL.Path
	return true
}

func (k *killer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !k.take(r) {
		k.next.ServeHTTP(w, r)
		return
	}
	// The whole body first: a client that goes away is noticed only once
	// its request is read.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p := k.plan
	switch {
	case p.moment == "before":
		k.signal()
		// A fleet that still wants the answer (a detached request) gets it.
		if !clientGone(r, 2*time.Second) {
			k.next.ServeHTTP(w, r)
		}
	case p.withhold:
		held := &heldWriter{header: http.Header{}}
		k.next.ServeHTTP(held, r)
		k.signal()
		clientGone(r, time.Second)
		held.sendTo(w)
	default:
		k.next.ServeHTTP(w, r)
		k.pending.Add(1)
		go func() {
			defer k.pending.Done()
			time.Sleep(p.delay)
			k.signal()
		}()
	}
}

// signal sends the plan's signal; after SIGKILL it waits for the process
// to be gone.
func (k *killer) signal() {
	k.mu.Lock()
	ready := k.ready
	k.mu.Unlock()
	<-ready
	k.mu.Lock()
	p, proc, exited := k.plan, k.proc, k.exited
	k.mu.Unlock()
	if p.signal == "KILL" {
		proc.Signal(syscall.SIGKILL) // an exited process answers an error; nothing to do
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		return
	}
	proc.Signal(syscall.SIGINT)
	if p.signal == "INT2" {
		time.Sleep(p.second)
		proc.Signal(syscall.SIGINT)
	}
}

func clientGone(r *http.Request, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.Context().Done():
		return true
	case <-t.C:
		return false
	}
}

// heldWriter buffers a response.
type heldWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldWriter) Header() http.Header { return h.header }
func (h *heldWriter) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *heldWriter) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *heldWriter) sendTo(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	if h.status == 0 {
		h.status = http.StatusOK
	}
	w.WriteHeader(h.status)
	w.Write(h.body.Bytes())
}

// killEnv is a project directory and the environment fleet runs in.
type killEnv struct {
	bin, dir   string
	url, token string
	sshPort    int // the droplets' sshd (localcloud.MemorySSH)
}

func newKillEnv(bin, dir, url string, sc *killScenario) (*killEnv, error) {
	for _, d := range []string{"cloud-init", "keys", "home"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := deployKey(filepath.Join(dir, "keys")); err != nil {
		return nil, err
	}
	for _, f := range []string{"cloud-init/droplet.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata/project", f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return nil, err
		}
	}
	// A provision-only project; short timeouts so a stuck wait shows.
	yml := fmt.Sprintf(`project: %s
provider: digitalocean
droplet:
  region: nyc3
  size: s-1vcpu-1gb
  image: debian-13-x64
  ssh_keys: [keys/deploy.pub]
  cloud_init: cloud-init/droplet.yaml
reserved_ip: auto
keep: %d
timeouts:
  create: 20s
  active: 20s
  assign: 20s
`, killProject, sc.keep)
	if err := os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(yml), 0o644); err != nil {
		return nil, err
	}
	return &killEnv{bin: bin, dir: dir, url: url}, nil
}

type killRun struct {
	args    []string
	code    int // -1: killed by a signal
	hung    bool
	stdout  string
	stderr  string
	elapsed time.Duration
}

func (e *killEnv) command(args []string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(e.bin, args...)
	cmd.Dir = e.dir
	home := filepath.Join(e.dir, "home")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "FLEET_HOME=" + filepath.Join(home, "fleet"),
		"TMPDIR=" + os.TempDir(), "DIGITALOCEAN_TOKEN=" + e.token, "FLEET_API_URL=" + e.url,
		"FLEET_POLL_INTERVAL=50ms", "FLEET_RETRY_WAIT_MIN=100ms", "FLEET_SSH_PORT=" + strconv.Itoa(e.sshPort),
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return cmd, &out, &errb
}

// start starts fleet; wait returns its run, killing it after timeout.
func (e *killEnv) start(args []string) (*exec.Cmd, func(timeout time.Duration) killRun, chan struct{}, error) {
	cmd, out, errb := e.command(args)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	exited := make(chan struct{})
	var werr error
	go func() {
		werr = cmd.Wait()
		close(exited)
	}()
	wait := func(timeout time.Duration) killRun {
		r := killRun{args: args}
		select {
		case <-exited:
		case <-time.After(timeout):
			r.hung = true
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		r.elapsed = time.Since(t0)
		r.code = cmd.ProcessState.ExitCode()
		if werr != nil && r.code == 0 {
			r.code = -2
		}
		r.stdout, r.stderr = out.String(), errb.String()
		return r
	}
	return cmd, wait, exited, nil
}

func (e *killEnv) run(args []string, timeout time.Duration) killRun {
	_, wait, _, err := e.start(args)
	if err != nil {
		return killRun{args: args, code: -3, stderr: err.Error()}
	}
	return wait(timeout)
}

func (r killRun) String() string {
	s := fmt.Sprintf("$ fleet %s  → exit %d in %s", strings.Join(r.args, " "), r.code, r.elapsed.Round(time.Millisecond))
	if r.hung {
		s += " (HUNG: killed)"
	}
	if r.stdout != "" {
		var c bytes.Buffer
		if json.Compact(&c, []byte(r.stdout)) == nil {
			r.stdout = c.String()
		}
		s += "\n  stdout: " + strings.ReplaceAll(strings.TrimSpace(r.stdout), "\n", "\n          ")
	}
	if r.stderr != "" {
		s += "\n  stderr: " + strings.ReplaceAll(strings.TrimSpace(r.stderr), "\n", "\n          ")
	}
	return s
}

// killResult is one try.
type killResult struct {
	c           killCase
	plan        killPlan
	reached     bool
	interrupted bool
	broken      map[string][]string // invariant → what broke
	diag        string
}

func (r *killResult) fail(id, format string, args ...any) {
	if r.broken == nil {
		r.broken = map[string][]string{}
	}
	r.broken[id] = append(r.broken[id], fmt.Sprintf(format, args...))
}

func (r *killResult) summary() string {
	var ids []string
	for id := range r.broken {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s) broke", r.c.name(), r.plan)
	for _, id := range ids {
		fmt.Fprintf(&b, "\n  %s: %s", id, strings.Join(r.broken[id], "; "))
	}
	return b.String()
}

// killTry runs one try: restore, run and signal, rerun, check.
func killTry(t *testing.T, bin, snap string, c killCase, rng *rand.Rand) *killResult {
	res := &killResult{c: c}
	plan := killPlan{signal: c.signal, moment: c.moment}
	if c.moment == "after" {
		if rng.IntN(4) == 0 {
			plan.withhold = true
		} else {
			plan.delay = time.Duration(rng.IntN(101)) * time.Millisecond
		}
	}
	if c.signal == "INT2" {
		plan.second = time.Duration(rng.IntN(51)) * time.Millisecond
	}
	res.plan = plan

	dir := t.TempDir()
	state := filepath.Join(dir, "state.json")
	if snap != "" {
		b, err := os.ReadFile(snap)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(state, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := copyDisks(snap, state); err != nil {
			t.Fatal(err)
		}
	}
	api, err := startKillAPI(state)
	if err != nil {
		t.Fatal(err)
	}
	defer api.close()
	env, err := newKillEnv(bin, filepath.Join(dir, "project"), api.hs.URL, c.sc)
	if err != nil {
		t.Fatal(err)
	}
	env.token, env.sshPort = api.token, api.sshd.Port
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gd := killGodo(api)
	before, err := readKillWorld(ctx, gd)
	if err != nil {
		t.Fatal(err)
	}

	api.kill.arm(c.phase.pattern, c.phase.nth, plan)
	cmd, wait, exited, err := env.start(c.sc.cmd)
	if err != nil {
		t.Fatal(err)
	}
	api.kill.setProc(cmd.Process, exited)
	first := wait(killRunWait)
	api.kill.disarm()
	api.kill.mu.Lock()
	res.reached = api.kill.fired
	api.kill.mu.Unlock()
	res.interrupted = first.code == -1 || first.code == ExitInterrupted
	if first.hung {
		res.fail("I5", "the signalled run hung (killed after %s)", killRunWait)
	}

	// A run that succeeded (the signal came too late) is not re-run: its
	// user saw it succeed, and a second rollback is a new command.
	rerun := killRun{args: c.sc.cmd, stderr: "(not re-run: the first run succeeded)"}
	if first.code != 0 {
		rerun = env.run(c.sc.cmd, killRunWait)
	}
	switch {
	case rerun.hung:
		res.fail("I5", "the rerun hung")
	case rerun.code == 0:
	case rerun.code == ExitRefused && c.sc.refusal != "" && strings.Contains(rerun.stderr, c.sc.refusal):
	default:
		res.fail("I5", "the rerun exited %d", rerun.code)
	}
	after, err := readKillWorld(ctx, gd)
	if err != nil {
		t.Fatal(err)
	}
	status := env.run([]string{"status", "--json"}, killRunWait)
	checkKillStatus(res, after, status)
	checkKillState(res, c.sc, after)
	prune := env.run([]string{"prune", "--yes"}, killRunWait)
	if prune.code != 0 {
		res.fail("I4", "the follow-up prune exited %d", prune.code)
	}
	final, err := readKillWorld(ctx, gd)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range c.sc.survive {
		if len(final.byVersion(v)) == 0 {
			res.fail("I4", "%s is gone after the rerun and a prune", v)
		}
	}
	if c.sc.promoted && len(final.live()) != 1 {
		res.fail("I1", "after the prune, %d live droplets", len(final.live()))
	}
	if vs := api.check.Violations(); len(vs) > 0 {
		res.fail("C", "%d contract violations: %s", len(vs), strings.Join(vs, "; "))
	}
	if len(res.broken) > 0 {
		var b strings.Builder
		fmt.Fprintf(&b, "signalled at %s (reached %v, interrupted %v)\n", c.phase, res.reached, res.interrupted)
		for _, r := range []killRun{first, rerun, status, prune} {
			b.WriteString(r.String() + "\n")
		}
		b.WriteString("before:\n" + before.String())
		b.WriteString("after the rerun:\n" + after.String())
		b.WriteString("after the prune:\n" + final.String())
		b.WriteString("requests:\n")
		for _, rq := range api.srv.Stats().Requests {
			fmt.Fprintf(&b, "  %s %s %s → %d\n", rq.Time.Format("15:04:05.000"), rq.Method, rq.Path, rq.Status)
		}
		res.diag = b.String()
	}
	return res
}

// killWorld is the API's state, read through godo.
type killWorld struct {
	droplets []godo.Droplet // the whole account
	ips      []godo.ReservedIP
}

type tokenTransport struct {
	token string
	base  http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

func killGodo(api *killAPI) *godo.Client {
	hc := &http.Client{Transport: tokenTransport{token: api.token, base: http.DefaultTransport}, Timeout: 30 * time.Second}
	c, err := godo.New(hc, godo.SetBaseURL(api.hs.URL))
	if err != nil {
		panic(err) // only a bad URL fails, and httptest's is good
	}
	return c
}

// readKillWorld waits until no action is in progress, then reads every
// droplet and reserved IP.
func readKillWorld(ctx context.Context, c *godo.Client) (*killWorld, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		actions, _, err := c.Actions.List(ctx, &godo.ListOptions{PerPage: 200})
		if err != nil {
			return nil, err
		}
		busy := slices.ContainsFunc(actions, func(a godo.Action) bool { return a.Status == "in-progress" })
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("actions still in progress after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	w := &killWorld{}
	var err error
	if w.droplets, _, err = c.Droplets.List(ctx, &godo.ListOptions{PerPage: 200}); err != nil {
		return nil, err
	}
	if w.ips, _, err = c.ReservedIPs.List(ctx, &godo.ListOptions{PerPage: 200}); err != nil {
		return nil, err
	}
	return w, nil
}

func killVersion(d *godo.Droplet) string {
	for _, t := range d.Tags {
		if v, ok := strings.CutPrefix(t, "fleet-version:"); ok {
			return spec.VersionFromTag(v)
		}
	}
	return ""
}

func (w *killWorld) project() []godo.Droplet {
	var out []godo.Droplet
	for _, d := range w.droplets {
		if slices.Contains(d.Tags, "fleet:"+killProject) {
			out = append(out, d)
		}
	}
	// Newest first, as fleet orders them.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID > out[j].ID
	})
	return out
}

// ipsOf lists the reserved IPs assigned to a droplet.
func (w *killWorld) ipsOf(id int) []string {
	var out []string
	for _, ip := range w.ips {
		if ip.Droplet != nil && ip.Droplet.ID == id {
			out = append(out, ip.IP)
		}
	}
	return out
}

// role derives a droplet's role from the API alone (DEVELOPERS.md).
func (w *killWorld) role(d *godo.Droplet) string {
	switch {
	case len(w.ipsOf(d.ID)) > 0:
		return "live"
	case slices.Contains(d.Tags, "fleet-failed"):
		return "failed"
	case slices.Contains(d.Tags, "fleet-promoted"):
		return "previous"
	}
	return "candidate"
}

func (w *killWorld) withRole(role string) []godo.Droplet {
	var out []godo.Droplet
	for _, d := range w.project() {
		if w.role(&d) == role {
			out = append(out, d)
		}
	}
	return out
}

func (w *killWorld) live() []godo.Droplet { return w.withRole("live") }

func (w *killWorld) byVersion(v string) []godo.Droplet {
	var out []godo.Droplet
	for _, d := range w.project() {
		if killVersion(&d) == v {
			out = append(out, d)
		}
	}
	return out
}

func (w *killWorld) String() string {
	var b strings.Builder
	for _, d := range w.droplets {
		fmt.Fprintf(&b, "  droplet %d %s %s %s role=%s tags=%v\n", d.ID, d.Name, d.Status, d.Created, w.role(&d), d.Tags)
	}
	for _, ip := range w.ips {
		holder := 0
		if ip.Droplet != nil {
			holder = ip.Droplet.ID
		}
		fmt.Fprintf(&b, "  reserved IP %s → droplet %d\n", ip.IP, holder)
	}
	return b.String()
}

// checkKillState checks I1-I3 and the goal on the state after the rerun.
func checkKillState(res *killResult, sc *killScenario, w *killWorld) {
	proj := w.project()
	live := w.live()
	// I1
	if sc.promoted {
		switch {
		case len(live) != 1:
			res.fail("I1", "%d live droplets", len(live))
		case len(w.ipsOf(live[0].ID)) != 1:
			res.fail("I1", "live %s holds %d reserved IPs", live[0].Name, len(w.ipsOf(live[0].ID)))
		case live[0].Status != "active":
			res.fail("I1", "live %s is %s", live[0].Name, live[0].Status)
		}
	}
	// I2
	if c := w.withRole("candidate"); len(c) > 1 {
		res.fail("I2", "%d candidates", len(c))
	}
	seen := map[string]int{}
	for _, d := range proj {
		seen[killVersion(&d)]++
	}
	for v, n := range seen {
		if n > 1 {
			res.fail("I2", "%d droplets of %q", n, v)
		}
	}
	// I3: droplets outside the project, candidates no command reaches
	// (rollback only discards the newest), reserved IPs nobody holds.
	for _, d := range w.droplets {
		if !slices.Contains(d.Tags, "fleet:"+killProject) {
			res.fail("I3", "droplet %s is not in the project", d.Name)
		}
	}
	for i, d := range proj {
		if i > 0 && w.role(&d) == "candidate" {
			res.fail("I3", "candidate %s is not the newest droplet", d.Name)
		}
	}
	inProject := map[int]bool{}
	for _, d := range proj {
		inProject[d.ID] = true
	}
	for _, ip := range w.ips {
		switch {
		case ip.Droplet == nil || !inProject[ip.Droplet.ID]:
			res.fail("I3", "reserved IP %s is held by no droplet of the project", ip.IP)
		case w.ipsOf(ip.Droplet.ID)[0] != ip.IP:
			// fleet only ever moves the first; DigitalOcean allows one.
			res.fail("I3", "reserved IP %s is a second IP on droplet %d", ip.IP, ip.Droplet.ID)
		}
	}
	// Goal
	if sc.live != "" && (len(live) != 1 || killVersion(&live[0]) != sc.live) {
		var vs []string
		for _, d := range live {
			vs = append(vs, killVersion(&d))
		}
		res.fail("G", "live is %v, want %s", vs, sc.live)
	}
	if sc.candidate != "" {
		c := w.withRole("candidate")
		if len(c) != 1 || killVersion(&c[0]) != sc.candidate || c[0].Status != "active" {
			var vs []string
			for _, d := range c {
				vs = append(vs, killVersion(&d)+" "+d.Status)
			}
			res.fail("G", "candidates %v, want %s active", vs, sc.candidate)
		}
	}
	for _, v := range sc.gone {
		if len(w.byVersion(v)) > 0 {
			res.fail("G", "%s still exists", v)
		}
	}
}

// checkKillStatus: `fleet status --json` agrees with the API.
func checkKillStatus(res *killResult, w *killWorld, status killRun) {
	if status.code != 0 {
		res.fail("I5", "status exited %d", status.code)
		return
	}
	var got statusJSON
	if err := json.Unmarshal([]byte(status.stdout), &got); err != nil {
		res.fail("I5", "status --json: %v", err)
		return
	}
	var want, have []string
	for _, d := range w.project() {
		want = append(want, d.Name+"="+w.role(&d))
	}
	for _, d := range got.Droplets {
		have = append(have, d.Name+"="+d.Role)
	}
	if !slices.Equal(want, have) {
		res.fail("I5", "status says %v, the API %v", have, want)
	}
	live := w.live()
	gotIP := ""
	if got.ReservedIP != nil {
		gotIP = *got.ReservedIP
	}
	if len(live) == 1 && !slices.Contains(w.ipsOf(live[0].ID), gotIP) {
		res.fail("I5", "status says reserved IP %q, the API %v", gotIP, w.ipsOf(live[0].ID))
	}
}

// TestKillChecks: each invariant check fires on a state that breaks it,
// and only there.
func TestKillChecks(t *testing.T) {
	dr := func(id int, version, status string, tags ...string) godo.Droplet {
		return godo.Droplet{
			ID: id, Name: fmt.Sprintf("hello-%s-%d", strings.ReplaceAll(version, ".", "-"), id), Status: status,
			Created: fmt.Sprintf("2026-01-01T00:00:%02dZ", id),
			Tags:    append([]string{"fleet:hello", "fleet-version:" + spec.VersionTag(version)}, tags...),
		}
	}
	ip := func(addr string, id int) godo.ReservedIP {
		r := godo.ReservedIP{IP: addr}
		if id != 0 {
			r.Droplet = &godo.Droplet{ID: id}
		}
		return r
	}
	sc := &killScenario{promoted: true, live: "v1.0.0", candidate: "v1.2.0", gone: []string{"v0.9.0"}}
	prev := dr(1, "v0.8.0", "active", "fleet-promoted")
	live := dr(2, "v1.0.0", "active", "fleet-promoted")
	failed := dr(3, "v1.1.0", "active", "fleet-promoted", "fleet-failed")
	cand := dr(4, "v1.2.0", "active")
	good := []godo.Droplet{prev, live, failed, cand}
	tests := []struct {
		name     string
		droplets []godo.Droplet
		ips      []godo.ReservedIP
		want     []string
	}{
		{"good", good, []godo.ReservedIP{ip("127.0.0.200", 2)}, nil},
		{"no live", good, nil, []string{"I1", "G"}},
		{"two live", good, []godo.ReservedIP{ip("127.0.0.200", 2), ip("127.0.0.201", 1)}, []string{"I1", "G"}},
		{"second IP on live", good, []godo.ReservedIP{ip("127.0.0.200", 2), ip("127.0.0.201", 2)}, []string{"I1", "I3"}},
		{"unassigned IP", good, []godo.ReservedIP{ip("127.0.0.200", 2), ip("127.0.0.201", 0)}, []string{"I3"}},
		{"live not active", []godo.Droplet{prev, dr(2, "v1.0.0", "off", "fleet-promoted"), failed, cand},
			[]godo.ReservedIP{ip("127.0.0.200", 2)}, []string{"I1"}},
		{"two candidates", []godo.Droplet{prev, live, dr(3, "v1.1.0", "active"), cand},
			[]godo.ReservedIP{ip("127.0.0.200", 2)}, []string{"I2", "I3", "G"}},
		{"one version twice", []godo.Droplet{prev, live, dr(3, "v1.2.0", "active", "fleet-failed"), cand},
			[]godo.ReservedIP{ip("127.0.0.200", 2)}, []string{"I2"}},
		{"outside the project", append(slices.Clone(good), godo.Droplet{ID: 9, Name: "stray", Status: "active"}),
			[]godo.ReservedIP{ip("127.0.0.200", 2)}, []string{"I3"}},
		{"wrong live", good, []godo.ReservedIP{ip("127.0.0.200", 1)}, []string{"G"}},
		{"gone is there", append(slices.Clone(good), dr(0, "v0.9.0", "active", "fleet-promoted")),
			[]godo.ReservedIP{ip("127.0.0.200", 2)}, []string{"G"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &killResult{}
			checkKillState(res, sc, &killWorld{droplets: tt.droplets, ips: tt.ips})
			var got []string
			for id := range res.broken {
				got = append(got, id)
			}
			sort.Strings(got)
			sort.Strings(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("broken %v, want %v: %v", got, tt.want, res.broken)
			}
		})
	}

	w := &killWorld{droplets: good, ips: []godo.ReservedIP{ip("127.0.0.200", 2)}}
	statusOf := func(ip string, roles ...string) killRun {
		out := statusJSON{Project: "hello", ReservedIP: &ip}
		for i, d := range w.project() {
			out.Droplets = append(out.Droplets, &dropletJSON{Name: d.Name, Role: roles[i]})
		}
		b, _ := json.Marshal(out)
		return killRun{stdout: string(b)}
	}
	for _, tt := range []struct {
		name   string
		status killRun
		broken bool
	}{
		{"agrees", statusOf("127.0.0.200", "candidate", "failed", "live", "previous"), false},
		{"another role", statusOf("127.0.0.200", "candidate", "previous", "live", "previous"), true},
		{"another IP", statusOf("127.0.0.201", "candidate", "failed", "live", "previous"), true},
		{"exit 1", killRun{code: 1}, true},
		{"not JSON", killRun{stdout: "hello"}, true},
	} {
		res := &killResult{}
		checkKillStatus(res, w, tt.status)
		if got := len(res.broken["I5"]) > 0; got != tt.broken || len(res.broken) > 1 {
			t.Errorf("status %s: broken %v, want I5 %v", tt.name, res.broken, tt.broken)
		}
	}
}
