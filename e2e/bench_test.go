//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type upJSON struct {
	Phases []struct {
		Phase   string  `json:"phase"`
		Seconds float64 `json:"seconds"`
	} `json:"phases"`
}

// BenchmarkStackUp prints `fleet up` of the hello stack on the local cloud
// phase by phase: the project's first up, and the next one after a
// promote. Every droplet is new, so the droplet side is always cold; what
// warms is the local cloud (droplet image built, base images at hand).
func BenchmarkStackUp(b *testing.B) {
	bin := fleetBin(b)
	dir := gitRepo(b)
	os.WriteFile(filepath.Join(dir, ".env.secrets"), []byte("HELLO_TOKEN="+canary(b)+"\n"), 0o600)
	r := &runner{t: b, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + b.TempDir(), "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	start := time.Now()
	r.ok("local", "start", "--listen", "127.0.0.1:18512")
	b.Logf("local cloud start (droplet image cached or built): %s", time.Since(start).Round(100*time.Millisecond))
	b.Cleanup(func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first, u1 := benchUp(b, r, "v1.0.0")
		r.ok("promote")
		second, u2 := benchUp(b, r, "v1.1.0")
		b.StopTimer()
		b.Logf("first fleet up: %s: %s", first.Round(100*time.Millisecond), phaseTable(u1))
		b.Logf("second fleet up: %s: %s", second.Round(100*time.Millisecond), phaseTable(u2))
		b.ReportMetric(first.Seconds(), "first-up-s")
		b.ReportMetric(second.Seconds(), "second-up-s")
		r.ok("rollback") // discard v1.1.0's candidate
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		b.StartTimer()
	}
}

func benchUp(b *testing.B, r *runner, version string) (time.Duration, upJSON) {
	start := time.Now()
	out, errOut, code := r.run("up", version, "--json")
	wall := time.Since(start)
	if code != 0 {
		b.Fatalf("up %s: exit %d\n%s%s", version, code, out, errOut)
	}
	var u upJSON
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		b.Fatal(err)
	}
	return wall, u
}

// phaseTable is one line (go test cuts long benchmark logs): each phase
// with its seconds.
func phaseTable(u upJSON) string {
	var parts []string
	for _, p := range u.Phases {
		name := p.Phase
		if i := strings.Index(name, " hello-"); i > 0 {
			name = name[:i] // droplet names differ run to run
		}
		parts = append(parts, fmt.Sprintf("%s %.2fs", name, p.Seconds))
	}
	return strings.Join(parts, " | ")
}

// BenchmarkLocalBuildShipping prints what stack.build: local ships for a
// release that changes one small file of the app's last layer: the bytes
// sent from the build against the changed layer's size. The previous
// release's layers come from the live droplet.
func BenchmarkLocalBuildShipping(b *testing.B) {
	bin := fleetBin(b)
	dir := localBuildRepo(b)
	r := &runner{t: b, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + b.TempDir(), "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	r.ok("local", "start", "--listen", "127.0.0.1:18514")
	b.Cleanup(func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u1 := upLocal(b, r, "v1.0.0")
		r.ok("promote")
		u2 := upLocal(b, r, "v1.1.0")
		b.StopTimer()
		_, size := changedLayer(b, "hello-app:v1.0.0", "hello-app:v1.1.0")
		ratio := float64(u2.ShippedBytes) / float64(size)
		b.Logf("first up shipped %d bytes; second up shipped %d bytes for a changed layer of %d bytes: ratio %.2f; %d layers from the live droplet",
			u1.ShippedBytes, u2.ShippedBytes, size, ratio, u2.ReusedLayers)
		b.ReportMetric(float64(u2.ShippedBytes), "shipped-B")
		b.ReportMetric(float64(size), "changed-layer-B")
		b.ReportMetric(ratio, "ratio")
		r.ok("rollback") // discard v1.1.0's candidate
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		b.StartTimer()
	}
}
