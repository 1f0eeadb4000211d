//go:build e2e

package e2e

import (
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
// phase by phase: a cold up on the bare debian-13-x64 (cloud-init installs
// Docker, compose and postfix), `fleet image bake`, and an up from the
// bake; then the sum of the steps no image can save (boot to SSH,
// cloud-init's own run, the stack's image bytes, compose up, health, all
// read from the up from the bake), and the ratios between them.
func BenchmarkStackUp(b *testing.B) {
	bin := fleetBin(b)
	dir := gitRepo(b)
	bareSpec(b, dir)
	os.WriteFile(filepath.Join(dir, ".env.secrets"), []byte("HELLO_TOKEN="+canary(b)+"\n"), 0o600)
	r := &runner{t: b, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + b.TempDir(), "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	start := time.Now()
	r.ok("local", "start", "--listen", "127.0.0.1:18512")
	b.Logf("local cloud start (droplet image and mirrors cached or built): %s", time.Since(start).Round(100*time.Millisecond))
	destroyAll := func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
	}
	b.Cleanup(func() {
		destroyAll()
		r.run("local", "stop")
	})
	spec := filepath.Join(dir, "droplets.yaml")
	bare, _ := os.ReadFile(spec)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		os.WriteFile(spec, bare, 0o644)
		cold, u1 := timedUp(b, r, "v1.0.0")
		r.ok("promote")
		t0 := time.Now()
		r.ok("image", "bake", "--force")
		bake := time.Since(t0)
		os.WriteFile(spec, []byte(strings.Replace(string(bare), "image: debian-13-x64", "image: bake", 1)), 0o644)
		warm, u2 := timedUp(b, r, "v1.1.0")
		b.StopTimer()
		floor := irreducible(u2.upJSON)
		b.Logf("cold up from debian-13-x64: %s: %s", cold.Round(100*time.Millisecond), phaseTable(u1.upJSON))
		b.Logf("fleet image bake: %s", bake.Round(100*time.Millisecond))
		b.Logf("up from the bake: %s: %s", warm.Round(100*time.Millisecond), phaseTable(u2.upJSON))
		b.Logf("irreducible steps of the up from the bake (boot to SSH, cloud-init, images, compose up, health): %.1fs", floor.Seconds())
		b.Logf("ratios: cold/bake %.2f, bake/irreducible %.2f, cold/irreducible %.2f",
			cold.Seconds()/warm.Seconds(), warm.Seconds()/floor.Seconds(), cold.Seconds()/floor.Seconds())
		b.ReportMetric(cold.Seconds(), "cold-up-s")
		b.ReportMetric(warm.Seconds(), "bake-up-s")
		b.ReportMetric(floor.Seconds(), "irreducible-s")
		b.ReportMetric(cold.Seconds()/warm.Seconds(), "cold/bake")
		r.ok("rollback") // discard v1.1.0's candidate
		destroyAll()
		b.StartTimer()
	}
}

// irreducible sums the phases of an up that no image makes shorter: the
// droplet's boot until SSH answers, cloud-init's run, the stack's image
// bytes (build or ship), compose up and the health check.
func irreducible(u upJSON) time.Duration {
	var sum float64
	for _, p := range u.Phases {
		for _, pre := range []string{"creating ", "waiting for ", "connecting to ", "building ", "shipping ", "starting the stack", "checking health"} {
			if strings.HasPrefix(p.Phase, pre) {
				sum += p.Seconds
				break
			}
		}
	}
	return time.Duration(sum * float64(time.Second))
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
// release that changes one small file of the app's last layer (v1.1.0)
// and for one that also adds 1 MiB of random bytes to it (v1.2.0): the
// bytes sent from the build and the bytes that crossed this machine's
// link (SSH, both ways) against the changed layer's size, and the bytes
// the live droplet sent the candidate over their private network.
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
	shipSeconds := func(u localUpJSON) float64 {
		var s float64
		for _, p := range u.Phases {
			if strings.HasPrefix(p.Phase, "asking the") || strings.HasPrefix(p.Phase, "relaying") || strings.HasPrefix(p.Phase, "reading the built") || strings.HasPrefix(p.Phase, "shipping ") && strings.Contains(p.Phase, "layers") {
				s += p.Seconds
			}
		}
		return s
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u1 := upLocal(b, r, "v1.0.0")
		r.ok("promote")
		u2 := upLocal(b, r, "v1.1.0")
		b.StopTimer()
		_, size := changedLayer(b, "hello-app:v1.0.0", "hello-app:v1.1.0")
		ratio := float64(u2.ShippedBytes) / float64(size)
		b.Logf("first up shipped %d bytes (link %d); v1.1.0 shipped %d bytes for a changed layer of %d bytes: ratio %.2f; %d layers from the live droplet (relay %q, %d bytes droplet to droplet); link %d bytes; shipping took %.2fs",
			u1.ShippedBytes, u1.LinkBytes, u2.ShippedBytes, size, ratio, u2.ReusedLayers, u2.Relay, u2.DropletBytes, u2.LinkBytes, shipSeconds(u2))
		b.ReportMetric(float64(u2.ShippedBytes), "shipped-B")
		b.ReportMetric(float64(size), "changed-layer-B")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(float64(u2.LinkBytes), "link-B")
		b.ReportMetric(float64(u2.DropletBytes), "d2d-B")
		b.ReportMetric(shipSeconds(u2), "ship-s")
		r.ok("rollback") // discard v1.1.0's candidate
		b.StartTimer()

		u3 := upLocal(b, r, "v1.2.0")
		b.StopTimer()
		_, size3 := changedLayer(b, "hello-app:v1.0.0", "hello-app:v1.2.0")
		lratio := float64(u3.LinkBytes) / float64(size3)
		b.Logf("v1.2.0 (1 MiB random in the changed layer): link %d bytes for a changed layer of %d bytes: ratio %.3f; shipped %d; %d bytes droplet to droplet (relay %q); shipping took %.2fs",
			u3.LinkBytes, size3, lratio, u3.ShippedBytes, u3.DropletBytes, u3.Relay, shipSeconds(u3))
		b.ReportMetric(float64(u3.LinkBytes), "1MiB-link-B")
		b.ReportMetric(float64(size3), "1MiB-layer-B")
		b.ReportMetric(lratio, "1MiB-link-ratio")
		b.ReportMetric(float64(u3.DropletBytes), "1MiB-d2d-B")
		r.ok("rollback") // discard v1.2.0's candidate
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		b.StartTimer()
	}
}
