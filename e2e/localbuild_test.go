//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// localBuildRepo is gitRepo's project with stack.build: local, and a
// v1.1.0 that changes one small file of the app (its last layer).
func localBuildRepo(t testing.TB) string {
	t.Helper()
	dir := project(t)
	git := func(args ...string) { t.Helper(); gitIn(t, dir, args...) }
	if out, err := exec.Command("cp", "-r", "../stacks", dir+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp stacks: %v\n%s", err, out)
	}
	spec, _ := os.ReadFile(filepath.Join(dir, "droplets.yaml"))
	s := localSpec(string(spec))
	s += "\nstack:\n  dir: stacks/hello\n  build: local\n  secrets: {file: .env.secrets}\n  health: {host: hello.test, paths: [/healthz, /], timeout: 3m}\n"
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(s), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env.secrets\nkeys/deploy\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".env.secrets"), []byte("HELLO_TOKEN="+canary(t)+"\n"), 0o600)
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "v1.0.0")
	git("tag", "v1.0.0")
	app := filepath.Join(dir, "stacks/hello/app/app.py")
	b, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(app, append(b, "# v1.1.0: one small change\n"...), 0o755)
	git("commit", "-q", "-am", "v1.1.0: one small change")
	git("tag", "v1.1.0")
	return dir
}

type localUpJSON struct {
	upJSON
	Droplet struct {
		Name string `json:"name"`
	} `json:"droplet"`
	ShippedBytes int64 `json:"shipped_bytes"`
	ReusedLayers int   `json:"reused_layers"`
}

func upLocal(t testing.TB, r *runner, version string) localUpJSON {
	t.Helper()
	out, errOut, code := r.run("up", version, "--json")
	if code != 0 {
		t.Fatalf("up %s: exit %d\n%s%s", version, code, out, errOut)
	}
	var u localUpJSON
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("up %s --json: %v\n%s", version, err, out)
	}
	return u
}

// changedLayer is the layer of image after that before lacks, and its
// size as `docker history` shows it. It fails unless exactly one layer
// changed.
func changedLayer(t testing.TB, before, after string) (string, int64) {
	t.Helper()
	layers := func(ref string) []string {
		out, err := exec.Command("docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref).Output()
		if err != nil {
			t.Fatalf("docker image inspect %s: %v", ref, err)
		}
		var l []string
		json.Unmarshal(out, &l)
		return l
	}
	b, a := layers(before), layers(after)
	var changed []int
	for i, l := range a {
		if !slices.Contains(b, l) {
			changed = append(changed, i)
		}
	}
	if len(changed) != 1 || changed[0] != len(a)-1 {
		t.Fatalf("%s changes layers %v of %d from %s, want only the last", after, changed, len(a), before)
	}
	// docker history lists the layers newest first, empty ones (ENV, CMD…) too.
	out, err := exec.Command("docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}", after).Output()
	if err != nil {
		t.Fatalf("docker history %s: %v", after, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if n, _ := strconv.ParseInt(f, 10, 64); n > 0 {
			return a[len(a)-1], n
		}
	}
	t.Fatalf("docker history %s: no layer with a size:\n%s", after, out)
	return "", 0
}

// TestLocalBuild: stack.build: local builds here and ships, over SSH and
// without a registry, only the layers the candidate lacks; the previous
// release's layers come from the live droplet.
func TestLocalBuild(t *testing.T) {
	bin := fleetBin(t)
	dir := localBuildRepo(t)
	r := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + t.TempDir(), "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	r.ok("local", "start", "--listen", "127.0.0.1:18513")
	t.Cleanup(func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})

	u1 := upLocal(t, r, "v1.0.0")
	t.Logf("v1.0.0: shipped %d bytes, %d layers reused\n%s", u1.ShippedBytes, u1.ReusedLayers, phaseTable(u1.upJSON))
	if u1.ShippedBytes <= 0 || u1.ReusedLayers != 0 {
		t.Errorf("first up: shipped %d bytes, reused %d layers; want > 0 and 0", u1.ShippedBytes, u1.ReusedLayers)
	}
	// Only the compose file went to the droplet; the images carry the version.
	if out := dockerExec(t, u1.Droplet.Name, "ls", "-A", "/srv/fleet/hello/releases/v1.0.0"); strings.TrimSpace(out) != "compose.yaml" {
		t.Errorf("release dir holds %q, want only compose.yaml", out)
	}
	dockerExec(t, u1.Droplet.Name, "docker", "image", "inspect", "hello-app:v1.0.0", "hello-nginx:v1.0.0")
	r.ok("promote")
	ip := *r.status().ReservedIP
	expectServes(t, ip, "hello v1.0.0")

	u2 := upLocal(t, r, "v1.1.0")
	_, size := changedLayer(t, "hello-app:v1.0.0", "hello-app:v1.1.0")
	ratio := float64(u2.ShippedBytes) / float64(size)
	t.Logf("v1.1.0: shipped %d bytes for a changed layer of %d bytes (ratio %.2f), %d layers reused from the live droplet\n%s",
		u2.ShippedBytes, size, ratio, u2.ReusedLayers, phaseTable(u2.upJSON))
	if ratio > 1.2 {
		t.Errorf("shipped %d bytes, more than 1.2 × the changed layer's %d", u2.ShippedBytes, size)
	}
	if u2.ReusedLayers == 0 {
		t.Error("no layer was reused from the live droplet")
	}
	dockerExec(t, u2.Droplet.Name, "docker", "image", "inspect", "hello-app:v1.1.0", "hello-nginx:v1.1.0")
	r.ok("promote")
	expectServes(t, ip, "hello v1.1.0")
	if got := dockerExec(t, u2.Droplet.Name, "docker", "exec", "hello-app-1", "tail", "-1", "/app/app.py"); !strings.Contains(got, "v1.1.0: one small change") {
		t.Errorf("the candidate's app is not v1.1.0's: %q", got)
	}
}
