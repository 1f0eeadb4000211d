//go:build e2e

package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocalCloud runs the whole workflow on the Docker-backed local cloud:
// real Debian containers with real cloud-init, OpenSSH and Docker, and a
// reserved IP that forwards to the live droplet.
func TestLocalCloud(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Fatal("docker is required for the local cloud suite (make e2e installs it via .ci/run)")
	}
	bin := fleetBin(t)
	home := t.TempDir()
	dir := project(t)
	spec, _ := os.ReadFile(filepath.Join(dir, "droplets.yaml"))
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(localSpec(string(spec))), 0o644)
	r := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + home, "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}

	r.ok("local", "start", "--listen", "127.0.0.1:18510")
	t.Cleanup(func() {
		// Leave no droplet behind, even when the test failed half-way.
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})
	// Idempotent: a second start finds the first.
	if _, errOut, code := r.run("local", "start", "--listen", "127.0.0.1:18510"); code != 0 || !strings.Contains(errOut, "already running") {
		t.Fatalf("second local start: exit %d: %s", code, errOut)
	}

	r.ok("up", "v1.0.0")
	s := r.status()
	d := s.Droplets[0]
	if d.Status != "active" || !strings.HasPrefix(d.IPv4, "127.0.0.") {
		t.Fatalf("after up: %+v", d)
	}
	// Real cloud-init finishes and writes the user_data's files. As on
	// DigitalOcean the droplet is active before that, and a provision-only
	// up returns at active (issue 11 makes every up wait for cloud-init).
	if out := dockerExec(t, d.Name, "cloud-init", "status", "--wait"); !strings.Contains(out, "done") {
		t.Fatalf("cloud-init status: %s", out)
	}
	if out := dockerExec(t, d.Name, "cat", "/var/www/fleet/index.html"); !strings.Contains(out, "fleet hello v1.0.0") {
		t.Fatalf("write_files: %q", out)
	}
	// The system ssh client logs in as root with the spec's key.
	ssh := exec.Command("ssh", "-i", filepath.Join(dir, "keys", "deploy"), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "root@"+d.IPv4, "cat /etc/fleet/release")
	if out, err := ssh.CombinedOutput(); err != nil || !strings.Contains(string(out), "FLEET_VERSION=v1.0.0") {
		t.Fatalf("ssh root@%s: %v\n%s", d.IPv4, err, out)
	}

	r.ok("promote")
	ip := *r.status().ReservedIP
	expectServes(t, ip, "v1.0.0")
	r.ok("up", "v1.1.0")
	r.ok("promote")
	expectServes(t, ip, "v1.1.0")
	r.ok("rollback")
	expectServes(t, ip, "v1.0.0")

	// Restarting the local cloud changes nothing.
	before := r.ok("status", "--json")
	r.ok("local", "stop")
	r.ok("local", "start", "--listen", "127.0.0.1:18510")
	if after := r.ok("status", "--json"); after != before {
		t.Fatalf("status changed across a restart:\nbefore %s\nafter  %s", before, after)
	}
	expectServes(t, ip, "v1.0.0")

	// Destroying every droplet leaves nothing behind.
	var names []string
	for _, d := range r.status().Droplets {
		names = append(names, d.Name)
	}
	r.ok(append([]string{"destroy", "--yes", "--force"}, names...)...)
	for _, name := range names {
		if out, _ := exec.Command("docker", "ps", "-a", "-q", "--filter", "name=^fleet-"+name+"$").Output(); len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("container of %s is left", name)
		}
	}
	// (Droplets' volumes carry their id; the mirrors' and snapshots'
	// volumes are the engine's, shared by every local cloud.)
	if out, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=fleet.droplet.id").Output(); strings.Contains(string(out), "fleet-") {
		t.Errorf("droplet volumes left: %s", out)
	}
	if c, err := net.DialTimeout("tcp", ip+":80", time.Second); err == nil {
		c.Close()
		t.Errorf("the unassigned reserved IP %s still accepts connections", ip)
	}
}

func dockerExec(t *testing.T, name string, args ...string) string {
	out, err := exec.Command("docker", append([]string{"exec", "fleet-" + name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker exec %s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// expectServes waits briefly for the reserved IP to answer with version.
func expectServes(t *testing.T, ip, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last string
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+ip+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.Contains(last, version) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("http://%s/ does not serve %s; last answer: %q", ip, version, last)
}
