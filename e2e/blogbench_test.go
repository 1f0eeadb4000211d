//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// noisePNG is an image that does not compress: media that weighs.
func noisePNG(w, h int, seed uint64) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	img.Pix[3] = 255
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

type transferJSON struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func (t transferJSON) mbps() float64 {
	if t.Seconds == 0 {
		return 0
	}
	return float64(t.Bytes) / 1e6 / t.Seconds
}

// benchMediaMB is the media sizes BenchmarkBlogCutover measures the
// freeze window at: FLEET_BENCH_MEDIA_MB (comma-separated MB), by default
// the 20, 200 and 1000.
func benchMediaMB(tb testing.TB) []int {
	v := os.Getenv("FLEET_BENCH_MEDIA_MB")
	if v == "" {
		return []int{20, 200, 1000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 10000 {
			tb.Fatalf("FLEET_BENCH_MEDIA_MB=%q: want sizes in MB, 1 to 10000, comma-separated", v)
		}
		out = append(out, n)
	}
	return out
}

// growMedia writes incompressible files of 10 MB into the live droplet's
// media volume until it holds about mb MB of generated media.
func (e *blogEnv) growMedia(have, mb int) int {
	e.t.Helper()
	if mb <= have {
		return have
	}
	app := "$(docker ps -q --filter label=com.docker.compose.service=app --filter status=running)"
	script := fmt.Sprintf(`mkdir -p /var/lib/blog/media/bench && i=%d; while [ $i -lt %d ]; do head -c 10000000 /dev/urandom >/var/lib/blog/media/bench/gen-$i.bin; i=$((i+1)); done`, have/10, mb/10)
	e.r.ok("ssh", e.live(), "--", "docker", "exec", "-u", "900", app, "sh", "-c", "'"+script+"'")
	return mb / 10 * 10
}

// BenchmarkBlogCutover measures the blog's data path on the local cloud:
// the freeze window of a promote at each media size of benchMediaMB (goals:
// ≤ 2 s at every size, the largest / smallest ≤ 1.5) and the reads that
// failed across it (goal 0), a rollback with no writes to carry (goal
// ≤ 2 s), and backup, carry-over and restore throughput.
func BenchmarkBlogCutover(b *testing.B) {
	e := newBlogEnv(b, 18514)
	e.up("v1.2.0")
	e.promote()
	e.waitCert(time.Minute)
	s := e.site(true)
	if err := s.login("admin", e.adminPwd); err != nil {
		b.Fatal(err)
	}
	var media int
	for i := 0; i < 5; i++ {
		pic := noisePNG(1100, 900, uint64(i+1))
		media += len(pic)
		slug := fmt.Sprintf("heavy-%d", i)
		if err := s.addPost("Heavy "+slug, slug, "A post with a large image.", "bench", map[string]fileUpload{"image": {slug + ".png", pic}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("media uploaded: %.1f MB", float64(media)/1e6)
	sizes := benchMediaMB(b)
	freeze := map[int]float64{}
	generated := 0

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for si, mb := range sizes {
			b.StopTimer()
			// The uploads count towards the size: generated files fill the rest.
			generated = e.growMedia(generated, mb-media/1e6)
			b.StartTimer()
			var up struct {
				Data transferJSON `json:"data"`
			}
			json.Unmarshal([]byte(e.r.ok("up", "v1.3.0", "--json")), &up)

			// A write between up and promote: the final sync has something
			// to carry.
			slug := fmt.Sprintf("between-%d-%d", i, si)
			if err := s.addPost("Between "+slug, slug, "Written after up.", "bench", map[string]fileUpload{"image": {slug + ".png", noisePNG(200, 200, uint64(100+si))}}); err != nil {
				b.Fatal(err)
			}

			// Reads only across the cutover: a failed read is a failure of
			// the switch, never of the freeze.
			stop := make(chan struct{})
			done := make(chan struct{})
			var reads, failed int64
			go func() {
				defer close(done)
				rs := e.site(false)
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, _, err := rs.get("/")
					reads++
					if err != nil || code != 200 {
						failed++
					}
				}
			}()
			time.Sleep(time.Second)
			var pr struct {
				Freeze float64      `json:"freeze_seconds"`
				Data   transferJSON `json:"data"`
				Phases []struct {
					Phase   string  `json:"phase"`
					Seconds float64 `json:"seconds"`
				} `json:"phases"`
				Window []struct {
					Phase   string  `json:"phase"`
					Seconds float64 `json:"seconds"`
				} `json:"window"`
			}
			prOut, prErr, code := e.r.run("promote", "--json")
			if code != 0 {
				b.Fatalf("fleet promote: exit %d\n%s%s", code, prOut, prErr)
			}
			json.Unmarshal([]byte(prOut), &pr)
			// The stack's own account of the syncs (what moved, migrate's
			// time, Django's start), and on stdout: a benchmark's log keeps
			// only its first lines.
			for _, l := range strings.Split(prErr, "\n") {
				if strings.Contains(l, "blog-backup: ok") || strings.Contains(l, "blog-restore: restored") || strings.Contains(l, "pre-sync:") ||
					strings.Contains(l, "fleet-data: timing") || strings.Contains(l, "blog-drain: drained") {
					fmt.Printf("media %d MB: %s\n", mb, strings.TrimSpace(l))
				}
			}
			fmt.Printf("media %d MB: freeze window:", mb)
			for _, p := range pr.Window {
				fmt.Printf(" [%s %.2fs]", p.Phase, p.Seconds)
			}
			fmt.Println()
			fmt.Printf("media %d MB: promote phases:", mb)
			for _, p := range pr.Phases {
				fmt.Printf(" [%s %.2fs]", p.Phase, p.Seconds)
			}
			fmt.Println()
			time.Sleep(time.Second)
			close(stop)
			<-done
			freeze[mb] = pr.Freeze

			start := time.Now()
			var rb struct {
				Freeze float64 `json:"freeze_seconds"`
				Writes int     `json:"writes"`
			}
			json.Unmarshal([]byte(e.r.ok("rollback", "--json")), &rb)
			rollback := time.Since(start)
			fmt.Printf("media %d MB: promote freeze %.2fs (final sync %.1f MB at %.1f MB/s); %d reads across the cutover, %d failed; carry-over at up %.1f MB at %.1f MB/s",
				mb, pr.Freeze, float64(pr.Data.Bytes)/1e6, pr.Data.mbps(), reads, failed, float64(up.Data.Bytes)/1e6, up.Data.mbps())
			fmt.Println()
			b.Logf("media %d MB: rollback (%d writes to carry) %.2fs, freeze %.2fs", mb, rb.Writes, rollback.Seconds(), rb.Freeze)
			b.ReportMetric(pr.Freeze, fmt.Sprintf("freeze-%dMB-s", mb))
			b.ReportMetric(float64(failed), fmt.Sprintf("failed-reads-%dMB", mb))
			b.ReportMetric(rollback.Seconds(), fmt.Sprintf("rollback-%dMB-s", mb))
			b.ReportMetric(up.Data.mbps(), fmt.Sprintf("carry-%dMB-MB/s", mb))

			if si == 0 {
				var bk struct {
					Archive  string  `json:"archive"`
					Seconds  float64 `json:"seconds"`
					Manifest struct {
						Stream transferJSON `json:"stream"`
					} `json:"manifest"`
				}
				json.Unmarshal([]byte(e.r.ok("backup", "--json")), &bk)
				var rs struct {
					Data transferJSON `json:"data"`
				}
				json.Unmarshal([]byte(e.r.ok("restore", "--yes", "--json", bk.Archive)), &rs)
				backupMBps := float64(bk.Manifest.Stream.Bytes) / 1e6 / bk.Seconds
				b.Logf("fleet backup %.1f MB at %.1f MB/s (to a .tar.zst here); fleet restore %.1f MB/s",
					float64(bk.Manifest.Stream.Bytes)/1e6, backupMBps, rs.Data.mbps())
				b.ReportMetric(backupMBps, "backup-MB/s")
				b.ReportMetric(rs.Data.mbps(), "restore-MB/s")
			}
			// Back to a state the next round can repeat: discard v1.3.0.
			b.StopTimer()
			out, _, _ := e.r.run("status", "--json")
			var st status
			json.Unmarshal([]byte(out), &st)
			for _, d := range st.Droplets {
				if d.Version == "v1.3.0" {
					e.r.ok("destroy", "--yes", d.Name)
				}
			}
			b.StartTimer()
		}
	}
	b.StopTimer()
	var line []string
	for _, mb := range sizes {
		line = append(line, fmt.Sprintf("%d MB %.2fs", mb, freeze[mb]))
	}
	lo, hi := sizes[0], sizes[len(sizes)-1]
	if freeze[lo] > 0 {
		ratio := freeze[hi] / freeze[lo]
		fmt.Printf("freeze window by media size: %s; %d MB / %d MB = %.2f (goals ≤ 2 s each, ratio ≤ 1.5)\n", strings.Join(line, ", "), hi, lo, ratio)
		b.ReportMetric(ratio, "freeze-ratio")
	}
}
