//go:build e2e

// Package e2e runs the fleet binary against a real `fleet local serve`
// process, through a proxy that checks every exchange against
// DigitalOcean's OpenAPI description. Run with `make e2e`.
package e2e

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

func fleetBin(t testing.TB) string {
	if b := os.Getenv("FLEET_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "fleet")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/fleet").CombinedOutput()
	if err != nil {
		t.Fatalf("build fleet: %v\n%s", err, out)
	}
	return bin
}

// serve starts `fleet local serve` and returns the URL of a validating
// proxy in front of it. The server is stopped by PID at the end.
func serve(t *testing.T, bin, token string, args ...string) string {
	cmd := exec.Command(bin, append([]string{"local", "serve", "--backend", "memory", "--listen", "127.0.0.1:0", "--token", token}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("fleet local serve did not stop on SIGTERM within 10s")
		}
	})
	rd := bufio.NewReader(stdout)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatalf("fleet local serve printed no address: %v", err)
	}
	// The memory droplets' sshd port, for every fleet this test runs.
	exports, _ := rd.ReadString('\n')
	if _, port, ok := strings.Cut(strings.TrimSpace(exports), "FLEET_SSH_PORT="); ok {
		t.Setenv("FLEET_SSH_PORT", port)
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("fleet local serve: unexpected first line %q", line)
	}
	upstream, err := url.Parse(strings.TrimSpace(line[i:]))
	if err != nil {
		t.Fatal(err)
	}
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(v.Middleware(httputil.NewSingleHostReverseProxy(upstream)))
	t.Cleanup(func() {
		proxy.Close()
		if vs := v.Violations(); len(vs) > 0 {
			t.Errorf("%d OpenAPI contract violations:\n%s", len(vs), strings.Join(vs, "\n"))
		}
	})
	return proxy.URL
}

// project writes a spec, its cloud-init and a fresh key into a directory.
func project(t testing.TB) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", filepath.Join(dir, "keys", "deploy")).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	spec, err := os.ReadFile("../droplets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../cloud-init/droplet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "cloud-init"), 0o755)
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), spec, 0o644)
	os.WriteFile(filepath.Join(dir, "cloud-init", "droplet.yaml"), ci, 0o644)
	return dir
}

type runner struct {
	t   testing.TB
	bin string
	dir string
	env []string
}

func (r *runner) run(args ...string) (string, string, int) {
	cmd := exec.Command(r.bin, args...)
	cmd.Dir, cmd.Env = r.dir, append(os.Environ(), r.env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func (r *runner) ok(args ...string) string {
	out, errOut, code := r.run(args...)
	if code != 0 {
		r.t.Fatalf("fleet %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

type status struct {
	Project    string  `json:"project"`
	ReservedIP *string `json:"reserved_ip"`
	Droplets   []struct {
		ID      int    `json:"id"`
		Name    string `json:"name"`
		Version string `json:"version"`
		Role    string `json:"role"`
		Status  string `json:"status"`
		IPv4    string `json:"public_ipv4"`
		Created string `json:"created_at"`
	} `json:"droplets"`
}

func (r *runner) status() status {
	var s status
	if err := json.Unmarshal([]byte(r.ok("status", "--json")), &s); err != nil {
		r.t.Fatal(err)
	}
	return s
}

func roles(s status) map[string]string {
	m := map[string]string{}
	for _, d := range s.Droplets {
		m[d.Version] = d.Role
	}
	return m
}

// TestLifecycle: up → promote → up → promote → rollback ends with the
// reserved IP on the first droplet, through a real server process.
func TestLifecycle(t *testing.T) {
	bin := fleetBin(t)
	api := serve(t, bin, "e2e-token", "--boot-delay", "1s")
	r := &runner{t: t, bin: bin, dir: project(t), env: []string{"FLEET_API_URL=" + api, "DIGITALOCEAN_TOKEN=e2e-token"}}

	r.ok("up", "v1.0.0")
	first := r.status().Droplets[0]
	if first.Role != "candidate" || first.Status != "active" || first.IPv4 == "" {
		t.Fatalf("after up: %+v", first)
	}
	r.ok("promote")
	r.ok("up", "v1.1.0")
	r.ok("promote")
	if got := roles(r.status()); got["v1.1.0"] != "live" || got["v1.0.0"] != "previous" {
		t.Fatalf("after second promote: %v", got)
	}
	r.ok("rollback")
	s := r.status()
	if got := roles(s); got["v1.0.0"] != "live" || got["v1.1.0"] != "failed" {
		t.Fatalf("after rollback: %v", got)
	}
	for _, d := range s.Droplets {
		if d.Role == "live" && d.ID != first.ID {
			t.Fatalf("live droplet is %d, want the first droplet %d", d.ID, first.ID)
		}
	}
	if s.ReservedIP == nil || !strings.HasPrefix(*s.ReservedIP, "127.0.0.") {
		t.Fatalf("reserved IP %v", s.ReservedIP)
	}
}

// TestBadSpecCreatesNothing: three mistakes, three file:line:col errors,
// exit code 3, and no droplet.
func TestBadSpecCreatesNothing(t *testing.T) {
	bin := fleetBin(t)
	api := serve(t, bin, "e2e-token")
	dir := project(t)
	r := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_API_URL=" + api, "DIGITALOCEAN_TOKEN=e2e-token"}}
	spec, _ := os.ReadFile(filepath.Join(dir, "droplets.yaml"))
	bad := strings.NewReplacer("project: hello", "project: Hello", "tags: [web]", "tags: [web, v1.2]", "keep: 2", "keep: 99").Replace(string(spec))
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(bad), 0o644)

	for _, args := range [][]string{{"validate"}, {"up", "v1.0.0"}} {
		_, errOut, code := r.run(args...)
		if code != 3 {
			t.Errorf("fleet %v: exit %d, want 3\n%s", args, code, errOut)
		}
		n := 0
		for _, l := range strings.Split(errOut, "\n") {
			if strings.HasPrefix(l, "droplets.yaml:") && strings.Count(l, ":") >= 3 {
				n++
			}
		}
		if n != 3 {
			t.Errorf("fleet %v: %d file:line:col errors, want 3:\n%s", args, n, errOut)
		}
	}
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), spec, 0o644)
	if s := r.status(); len(s.Droplets) != 0 {
		t.Fatalf("a bad spec created droplets: %+v", s.Droplets)
	}
}
