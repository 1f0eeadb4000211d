//go:build e2e

package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkBlogHold measures hold and forward (stacks/blog/README.md) under
// the e2e's mixed load (≥ 2000 requests, ≥ 500 writes, half keep-alive):
// failed requests across a promote and a rollback (goal 0: no 503, reset or
// timeout), every acknowledged write present afterwards, and the longest a
// held write waited (as the gate reports it and as the clients saw it).
func BenchmarkBlogHold(b *testing.B) {
	// Comments (the load's writes) came with v1.3.0: the cutover is
	// v1.3.0 → v1.3.1 and back, on posts made first.
	e := newBlogEnv(b, 18519, "v1.3.1")
	e.up("v1.3.0")
	e.promote()
	e.waitCert(time.Minute)
	s := e.site(true)
	if err := s.login("admin", e.adminPwd); err != nil {
		b.Fatal(err)
	}
	for _, slug := range []string{"hello-fleet", "cattle-not-pets"} {
		if err := s.addPost("Post "+slug, slug, "Body of "+slug+".", "fleet", nil); err != nil {
			b.Fatal(err)
		}
	}

	type held struct {
		Count     int   `json:"count"`
		LongestMS int64 `json:"longest_ms"`
	}
	var res struct {
		Freeze float64 `json:"freeze_seconds"`
		Held   *held   `json:"held"`
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.up("v1.3.1")
		for _, step := range []struct {
			name, slug string
			args       []string
		}{
			{"promote", "cattle-not-pets", []string{"promote", "--json"}},
			{"rollback", "hello-fleet", []string{"rollback", "--json"}},
		} {
			load := &cutoverLoad{}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() { load.run(e.site, step.slug, stop, 500, 2000); close(done) }()
			time.Sleep(2 * time.Second)
			res.Held = nil
			json.Unmarshal([]byte(e.r.ok(step.args...)), &res)
			close(stop)
			<-done
			s := e.site(true)
			e.waitPendingComments(s, 3*time.Minute)
			present := map[string]bool{}
			for _, c := range e.comments(s, step.slug).Comments {
				present[c.Body] = true
			}
			lost := 0
			for _, body := range load.acked {
				if !present[body] {
					lost++
				}
			}
			h := held{}
			if res.Held != nil {
				h = *res.Held
			}
			b.Logf("%s: %s; %d acked writes lost; freeze %.2fs; gate held %d, longest %d ms; samples %v",
				step.name, load.Summary(), lost, res.Freeze, h.Count, h.LongestMS, load.samples)
			b.ReportMetric(float64(load.Failed()), step.name+"-failed")
			b.ReportMetric(float64(lost), step.name+"-lost")
			b.ReportMetric(float64(load.Attempts.Load()+load.Reads.Load()), step.name+"-requests")
			b.ReportMetric(time.Duration(load.LongestWrite.Load()).Seconds(), step.name+"-longest-write-s")
			b.ReportMetric(float64(h.LongestMS)/1000, step.name+"-longest-held-s")
		}
		// Back to a state the next round can repeat: discard v1.3.1.
		out, _, _ := e.r.run("status", "--json")
		var st status
		json.Unmarshal([]byte(out), &st)
		for _, d := range st.Droplets {
			if d.Version == "v1.3.1" {
				e.r.ok("destroy", "--yes", d.Name)
			}
		}
	}
}
