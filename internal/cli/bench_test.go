package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
)

// recorder notes every request the API server gets.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	key string // method and full URL: one resource
	at  time.Time
}

func (r *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{key: req.Method + " " + req.URL.RequestURI(), at: time.Now()})
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	})
}

func (r *recorder) reset() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// maxPerSecond is the most GETs of one resource within any 1 s window,
// a reserved IP's action aside (ipActionFirstSecond).
func maxPerSecond(reqs []recorded) (int, string) {
	return maxPer(reqs, func(key string) bool { return !isIPAction(key) })
}

// isIPAction: a read of a reserved IP's action, which fleet polls early
// (150, 300, 600 ms, then every second): the move is in promote's freeze
// window.
func isIPAction(key string) bool {
	return strings.HasPrefix(key, "GET /v2/reserved_ips/") && strings.Contains(key, "/actions/")
}

// ipActionFirstSecond is the most reads of one reserved IP action within
// 1 s of its first read (goal ≤ 3), and the most within any later 1 s
// window (goal ≤ 1).
func ipActionFirstSecond(reqs []recorded) (first, later int) {
	byKey := map[string][]time.Time{}
	for _, r := range reqs {
		if isIPAction(r.key) {
			byKey[r.key] = append(byKey[r.key], r.at)
		}
	}
	for _, ts := range byKey {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		n := 0
		for _, t := range ts {
			if t.Sub(ts[0]) < time.Second {
				n++
			}
		}
		first = max(first, n)
		var rest []recorded
		for _, t := range ts[n:] {
			rest = append(rest, recorded{key: "GET rest", at: t})
		}
		l, _ := maxPer(rest, func(string) bool { return true })
		later = max(later, l)
	}
	return first, later
}

// maxPer is the most GETs of one resource (of those keep accepts) within
// any 1 s window.
func maxPer(reqs []recorded, keep func(key string) bool) (int, string) {
	byKey := map[string][]time.Time{}
	for _, r := range reqs {
		if r.key[:4] == "GET " && keep(r.key) {
			byKey[r.key] = append(byKey[r.key], r.at)
		}
	}
	best, which := 0, ""
	for k, ts := range byKey {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		lo := 0
		for hi := range ts {
			for ts[hi].Sub(ts[lo]) >= time.Second {
				lo++
			}
			if n := hi - lo + 1; n > best {
				best, which = n, k
			}
		}
	}
	return best, which
}

type benchEnv struct {
	dir, url, token string
	sshPort         int
	rec             *recorder
}

// newBenchEnv starts an API server with DigitalOcean-like timings: a
// droplet boots in 3 s and a reserved IP action takes 1 s.
func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	sshd, err := localcloud.NewMemorySSH()
	if err != nil {
		b.Fatal(err)
	}
	srv, err := localcloud.NewServer(localcloud.Options{Token: "bench", BootDelay: 3 * time.Second, ActionDelay: time.Second, SSH: sshd})
	if err != nil {
		b.Fatal(err)
	}
	rec := &recorder{}
	hs := httptest.NewServer(rec.wrap(srv.Handler()))
	b.Cleanup(func() { hs.Close(); srv.Close(); sshd.Close() })
	dir := b.TempDir()
	if err := copyMissing("testdata/project", dir); err != nil {
		b.Fatal(err)
	}
	if err := deployKey(filepath.Join(dir, "keys")); err != nil {
		b.Fatal(err)
	}
	return &benchEnv{dir: dir, url: hs.URL, token: "bench", sshPort: sshd.Port, rec: rec}
}

// fleet runs one command in-process with the product's default waits.
func (e *benchEnv) fleet(b *testing.B, args ...string) {
	b.Helper()
	io, out, errOut := TestStreams()
	f := &Factory{IOStreams: io, Version: "bench", Getenv: func(k string) string {
		switch k {
		case "FLEET_API_URL":
			return e.url
		case "DIGITALOCEAN_TOKEN":
			return e.token
		case "FLEET_HOME":
			return filepath.Join(e.dir, "fleet-home")
		case "FLEET_SSH_PORT":
			return strconv.Itoa(e.sshPort)
		}
		return ""
	}}
	cmd := NewCmdRoot(f)
	cmd.SetArgs(append(args, "-f", filepath.Join(e.dir, "droplets.yaml")))
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		b.Fatalf("fleet %v: %v\n%s%s", args, err, out, errOut)
	}
}

// BenchmarkUp reports the API calls one `fleet up` makes (goal ≤ 40) and
// the most polls of one resource within a second (goal ≤ 1).
func BenchmarkUp(b *testing.B) {
	e := newBenchEnv(b)
	calls, worst, worstKey := 0, 0, ""
	for i := 0; i < b.N; i++ {
		e.rec.reset()
		e.fleet(b, "up", fmt.Sprintf("v1.%d.0", i))
		reqs := e.rec.reset()
		calls += len(reqs)
		if n, k := maxPerSecond(reqs); n > worst {
			worst, worstKey = n, k
		}
		b.StopTimer()
		e.fleet(b, "promote") // the next up needs no waiting candidate
		b.StartTimer()
	}
	perUp := float64(calls) / float64(b.N)
	b.ReportMetric(perUp, "api-calls/up")
	b.ReportMetric(float64(worst), "max-polls/s")
	b.Logf("API calls per fleet up: %.1f (goal ≤ 40, ratio %.2f); most polls of one resource in 1 s: %d (goal ≤ 1; %s)", perUp, perUp/40, worst, worstKey)
}

// BenchmarkPromote reports the API calls and polling of one promote.
func BenchmarkPromote(b *testing.B) {
	e := newBenchEnv(b)
	calls, worst, worstKey := 0, 0, ""
	ipFirst, ipLater := 0, 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e.fleet(b, "up", fmt.Sprintf("v1.%d.0", i))
		e.rec.reset()
		b.StartTimer()
		e.fleet(b, "promote")
		reqs := e.rec.reset()
		calls += len(reqs)
		if n, k := maxPerSecond(reqs); n > worst {
			worst, worstKey = n, k
		}
		f, l := ipActionFirstSecond(reqs)
		ipFirst, ipLater = max(ipFirst, f), max(ipLater, l)
	}
	b.ReportMetric(float64(calls)/float64(b.N), "api-calls/promote")
	b.ReportMetric(float64(worst), "max-polls/s")
	b.ReportMetric(float64(ipFirst), "ip-action-reads/first-s")
	b.Logf("API calls per fleet promote: %.1f; most polls of one resource in 1 s: %d (goal ≤ 1; %s), "+
		"a reserved IP action's reads in its first second: %d (goal ≤ 3), in any later second: %d (goal ≤ 1)",
		float64(calls)/float64(b.N), worst, worstKey, ipFirst, ipLater)
}

// BenchmarkStatus is the wall time of `fleet status` as an operator runs
// it: a fresh process against the local API, with five droplets (goal ≤ 50 ms).
func BenchmarkStatus(b *testing.B) {
	e := newBenchEnv(b)
	for i := 0; i < 3; i++ {
		e.fleet(b, "up", fmt.Sprintf("v0.%d.0", i))
		e.fleet(b, "promote")
	}
	e.fleet(b, "up", "v0.9.0")
	bin := filepath.Join(b.TempDir(), "fleet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fleet").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	run := func() {
		cmd := exec.Command(bin, "status", "-f", filepath.Join(e.dir, "droplets.yaml"))
		cmd.Env = append(os.Environ(), "FLEET_API_URL="+e.url, "DIGITALOCEAN_TOKEN="+e.token)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("fleet status: %v\n%s", err, out)
		}
	}
	run() // warm the page cache
	e.rec.reset()
	b.ResetTimer()
	start := time.Now()
	const per = 20 // runs per op, so -benchtime 3x still samples 60 runs
	for i := 0; i < b.N*per; i++ {
		run()
	}
	wall := time.Since(start) / time.Duration(b.N*per)
	b.StopTimer()
	calls := len(e.rec.reset()) / (b.N * per)
	b.ReportMetric(float64(wall.Microseconds())/1000, "ms/status")
	b.ReportMetric(float64(calls), "api-calls/status")
	b.Logf("fleet status wall time: %s (goal ≤ 50ms, ratio %.2f), %d API calls", wall.Round(100*time.Microsecond), float64(wall)/float64(50*time.Millisecond), calls)
}
