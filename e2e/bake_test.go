//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bareSpec points a project's droplets.yaml at the bare distribution image
// (gitRepo's projects use `image: bake`).
func bareSpec(t testing.TB, dir string) {
	t.Helper()
	p := filepath.Join(dir, "droplets.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "image: bake", "image: debian-13-x64", 1)
	if s == string(b) {
		t.Fatal("droplets.yaml has no `image: bake` line")
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// inDroplet runs a shell command in a droplet's container.
func inDroplet(t testing.TB, name, script string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", "fleet-"+name, "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", name, script, err, out)
	}
	return strings.TrimSpace(string(out))
}

type upResult struct {
	upJSON
	Droplet struct {
		Name string `json:"name"`
	} `json:"droplet"`
	Image string `json:"image"`
	Baked *struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"baked"`
}

func timedUp(t testing.TB, r *runner, version string) (time.Duration, upResult) {
	t.Helper()
	start := time.Now()
	out, errOut, code := r.run("up", version, "--json")
	wall := time.Since(start)
	if code != 0 {
		t.Fatalf("up %s: exit %d\n%s%s", version, code, out, errOut)
	}
	var u upResult
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("up %s --json: %v\n%s", version, err, out)
	}
	return wall, u
}

// TestBareImageAndBake: the hello stack on the bare debian-13-x64, as on
// DigitalOcean: systemd boots the droplet, cloud-init's template installs
// Docker, compose v2 and a postfix satellite, and `fleet up` waits for it.
// Then `fleet image bake` snapshots a droplet made by that template, and an
// up from the bake is faster than the cold one.
func TestBareImageAndBake(t *testing.T) {
	bin := fleetBin(t)
	dir := gitRepo(t)
	bareSpec(t, dir)
	os.WriteFile(filepath.Join(dir, ".env.secrets"), []byte("HELLO_TOKEN="+canary(t)+"\n"), 0o600)
	r := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + t.TempDir(), "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	r.ok("local", "start", "--listen", "127.0.0.1:18517")
	t.Cleanup(func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})

	cold, u1 := timedUp(t, r, "v1.0.0")
	t.Logf("cold up from debian-13-x64: %s: %s", cold.Round(100*time.Millisecond), phaseTable(u1.upJSON))
	if u1.Image != "debian-13-x64" {
		t.Errorf("up v1.0.0 used image %q, want debian-13-x64", u1.Image)
	}
	name := u1.Droplet.Name
	// The droplet is what DO boots: systemd, and cloud-init installed the rest.
	if got := inDroplet(t, name, "cat /proc/1/comm"); got != "systemd" {
		t.Errorf("PID 1 is %q, want systemd", got)
	}
	if got := inDroplet(t, name, "cloud-init status --long | head -3"); !strings.Contains(got, "done") {
		t.Errorf("cloud-init status: %s", got)
	}
	if got := inDroplet(t, name, "docker compose version --short"); !strings.HasPrefix(strings.TrimPrefix(got, "v"), "2.") {
		t.Errorf("docker compose version: %s", got)
	}
	if got := inDroplet(t, name, "postconf -h relayhost inet_interfaces"); !strings.Contains(got, "[127.0.0.1]:2525") || !strings.Contains(got, "loopback-only") {
		t.Errorf("postfix is not the satellite the template makes: %s", got)
	}
	if got := inDroplet(t, name, "systemctl is-active docker postfix cron"); strings.Count(got, "active") != 3 || strings.Contains(got, "inactive") {
		t.Errorf("units docker postfix cron: %s", got)
	}
	if got := inDroplet(t, name, "grep -c 'Setting up docker.io' /var/log/cloud-init-output.log || true"); got == "0" {
		t.Error("cloud-init's output does not show docker.io being installed: the image had it already")
	}
	r.ok("promote")
	ip := *r.status().ReservedIP
	expectServes(t, ip, "hello v1.0.0")

	// Bake, then up from the bake.
	id := strings.TrimSpace(r.ok("image", "bake"))
	if _, err := strconv.Atoi(id); err != nil {
		t.Fatalf("fleet image bake printed %q, want an image ID", id)
	}
	p := filepath.Join(dir, "droplets.yaml")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "image: debian-13-x64", "image: bake", 1)), 0o644)
	warm, u2 := timedUp(t, r, "v1.1.0")
	t.Logf("up from the bake: %s: %s", warm.Round(100*time.Millisecond), phaseTable(u2.upJSON))
	if !strings.Contains(u2.Image, "(image "+id+")") || u2.Baked != nil {
		t.Errorf("up v1.1.0 used image %q (baked %v), want the bake %s", u2.Image, u2.Baked, id)
	}
	if warm >= cold {
		t.Errorf("up from the bake took %s, the cold up %s: a bake should be faster", warm, cold)
	}
	t.Logf("cold/bake: %.2f", cold.Seconds()/warm.Seconds())
	r.ok("promote")
	expectServes(t, ip, "hello v1.1.0")
}
