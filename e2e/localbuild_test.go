//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// blobSize is what v1.2.0 adds to the app's last layer: random, so gzip
// cannot shrink it, and large enough that SSH's fixed costs (handshakes,
// layer listings, the compose file) do not dominate the link's bytes.
const blobSize = 1 << 20

// localBuildRepo is gitRepo's project with stack.build: local, a v1.1.0
// that changes one small file of the app (its last layer), and a v1.2.0
// that also adds blobSize random bytes to that layer.
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
	blob := make([]byte, blobSize)
	rand.Read(blob)
	os.WriteFile(filepath.Join(dir, "stacks/hello/app/blob.bin"), blob, 0o644)
	git("add", "-A")
	git("commit", "-q", "-m", "v1.2.0: 1 MiB of random bytes in the app's layer")
	git("tag", "v1.2.0")
	return dir
}

type localUpJSON struct {
	upJSON
	Droplet struct {
		Name string `json:"name"`
	} `json:"droplet"`
	ShippedBytes int64  `json:"shipped_bytes"`
	ReusedLayers int    `json:"reused_layers"`
	LinkBytes    int64  `json:"link_bytes"`
	DropletBytes int64  `json:"droplet_bytes"`
	Relay        string `json:"relay"`
}

// netBytes is a droplet's interface counters (received, sent), read
// from the container: an independent check of what fleet reports.
func netBytes(t testing.TB, name, iface string) (rx, tx int64) {
	t.Helper()
	out, err := exec.Command("docker", "exec", "fleet-"+name, "cat",
		"/sys/class/net/"+iface+"/statistics/rx_bytes", "/sys/class/net/"+iface+"/statistics/tx_bytes").CombinedOutput()
	f := strings.Fields(string(out))
	if err != nil || len(f) != 2 {
		t.Fatalf("reading %s's %s counters: %v\n%s", name, iface, err, out)
	}
	rx, _ = strconv.ParseInt(f[0], 10, 64)
	tx, _ = strconv.ParseInt(f[1], 10, 64)
	return rx, tx
}

// relayLeftovers is what the droplet-to-droplet hop left behind: a
// fleet-relay line on the candidate, a /run/fleet-relay-* dir on either.
func relayLeftovers(t testing.TB, cand, live string) string {
	t.Helper()
	var left []string
	for _, name := range []string{cand, live} {
		out, err := exec.Command("docker", "exec", "fleet-"+name, "sh", "-c",
			"grep -h fleet-relay /root/.ssh/authorized_keys; ls -d /run/fleet-relay-* 2>/dev/null; true").CombinedOutput()
		if err != nil {
			t.Fatalf("docker exec %s: %v\n%s", name, err, out)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			left = append(left, name+": "+s)
		}
	}
	return strings.Join(left, "\n")
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

	lr0, lt0 := netBytes(t, u1.Droplet.Name, "eth0")
	u2 := upLocal(t, r, "v1.1.0")
	lr1, lt1 := netBytes(t, u1.Droplet.Name, "eth0")
	cr2, ct2 := netBytes(t, u2.Droplet.Name, "eth0")
	t.Logf("v1.1.0, interface counters: live eth0 %d bytes during the up; the candidate's eth0 since boot %d bytes (the whole up)", lr1-lr0+lt1-lt0, cr2+ct2)
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
	// Droplet to droplet: the live layers crossed the local cloud's VPC, and
	// only control traffic and the changed layer crossed this machine's link.
	t.Logf("v1.1.0: relay %q, %d bytes droplet to droplet, %d bytes over the link (%d shipped, the rest fixed SSH costs)",
		u2.Relay, u2.DropletBytes, u2.LinkBytes, u2.ShippedBytes)
	if u2.Relay != "vpc" || u2.DropletBytes <= 0 || u2.LinkBytes <= u2.ShippedBytes {
		t.Errorf("v1.1.0: relay %q, droplet bytes %d, link bytes %d; want vpc, > 0, > shipped %d", u2.Relay, u2.DropletBytes, u2.LinkBytes, u2.ShippedBytes)
	}
	if left := relayLeftovers(t, u2.Droplet.Name, u1.Droplet.Name); left != "" {
		t.Errorf("the hop left:\n%s", left)
	}
	dockerExec(t, u2.Droplet.Name, "docker", "image", "inspect", "hello-app:v1.1.0", "hello-nginx:v1.1.0")
	r.ok("promote")
	expectServes(t, ip, "hello v1.1.0")
	if got := dockerExec(t, u2.Droplet.Name, "docker", "exec", "hello-app-1", "tail", "-1", "/app/app.py"); !strings.Contains(got, "v1.1.0: one small change") {
		t.Errorf("the candidate's app is not v1.1.0's: %q", got)
	}

	// The measure: with a changed layer of 1 MiB, what crosses the link is
	// at most 1.2 × that layer.
	r0, t0 := netBytes(t, u2.Droplet.Name, "eth0")
	_, v0 := netBytes(t, u2.Droplet.Name, "eth1")
	u3 := upLocal(t, r, "v1.2.0")
	r1, t1 := netBytes(t, u2.Droplet.Name, "eth0")
	_, v1 := netBytes(t, u2.Droplet.Name, "eth1")
	cr, ct := netBytes(t, u3.Droplet.Name, "eth0")
	t.Logf("v1.2.0, interface counters: live eth0 %d bytes, live eth1 sent %d bytes during the up; the candidate's eth0 since boot %d bytes (the whole up)",
		r1-r0+t1-t0, v1-v0, cr+ct)
	if v1-v0 < u3.DropletBytes || u3.DropletBytes <= 0 {
		t.Errorf("live sent %d bytes on its private interface, fleet reports %d droplet to droplet", v1-v0, u3.DropletBytes)
	}
	_, size3 := changedLayer(t, "hello-app:v1.1.0", "hello-app:v1.2.0")
	lratio := float64(u3.LinkBytes) / float64(size3)
	t.Logf("v1.2.0: %d bytes over the link for a changed layer of %d bytes (ratio %.3f), %d shipped, %d droplet to droplet (relay %q)\n%s",
		u3.LinkBytes, size3, lratio, u3.ShippedBytes, u3.DropletBytes, u3.Relay, phaseTable(u3.upJSON))
	if u3.Relay != "vpc" || u3.DropletBytes <= 0 || u3.LinkBytes < size3 || lratio > 1.2 {
		t.Errorf("v1.2.0: relay %q, droplet bytes %d, link bytes %d for a layer of %d; want vpc, > 0, between 1 and 1.2 × the layer", u3.Relay, u3.DropletBytes, u3.LinkBytes, size3)
	}
	if left := relayLeftovers(t, u3.Droplet.Name, u2.Droplet.Name); left != "" {
		t.Errorf("the hop left:\n%s", left)
	}
	dockerExec(t, u3.Droplet.Name, "docker", "image", "inspect", "hello-app:v1.2.0", "hello-nginx:v1.2.0")
}
