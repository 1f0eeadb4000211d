//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
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

// BenchmarkBlogCutover measures the blog's data path on the local cloud:
// the freeze window of a promote and the reads that failed across it
// (goals: ≤ 5 s, 0), a rollback with no writes to carry (goal ≤ 2 s), and
// backup, carry-over and restore throughput with ~20 MB of media.
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

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var up struct {
			Data transferJSON `json:"data"`
		}
		json.Unmarshal([]byte(e.r.ok("up", "v1.3.0", "--json")), &up)

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
		}
		json.Unmarshal([]byte(e.r.ok("promote", "--json")), &pr)
		time.Sleep(time.Second)
		close(stop)
		<-done

		start := time.Now()
		var rb struct {
			Freeze float64 `json:"freeze_seconds"`
			Writes int     `json:"writes"`
		}
		json.Unmarshal([]byte(e.r.ok("rollback", "--json")), &rb)
		rollback := time.Since(start)

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
		b.StopTimer()

		backupMBps := float64(bk.Manifest.Stream.Bytes) / 1e6 / bk.Seconds
		b.Logf("promote freeze %.2fs (final backup %.1f MB at %.1f MB/s); %d reads across the cutover, %d failed", pr.Freeze, float64(pr.Data.Bytes)/1e6, pr.Data.mbps(), reads, failed)
		b.Logf("rollback (%d writes to carry) %.2fs, freeze %.2fs", rb.Writes, rollback.Seconds(), rb.Freeze)
		b.Logf("carry-over at up %.1f MB at %.1f MB/s; fleet backup %.1f MB at %.1f MB/s (to a .tar.zst here); fleet restore %.1f MB/s",
			float64(up.Data.Bytes)/1e6, up.Data.mbps(), float64(bk.Manifest.Stream.Bytes)/1e6, backupMBps, rs.Data.mbps())
		b.ReportMetric(pr.Freeze, "freeze-s")
		b.ReportMetric(float64(failed), "failed-reads")
		b.ReportMetric(float64(reads), "reads")
		b.ReportMetric(rollback.Seconds(), "rollback-s")
		b.ReportMetric(backupMBps, "backup-MB/s")
		b.ReportMetric(rs.Data.mbps(), "restore-MB/s")
		b.ReportMetric(up.Data.mbps(), "carry-MB/s")
		// Back to a state the next round can repeat: discard v1.3.0.
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
