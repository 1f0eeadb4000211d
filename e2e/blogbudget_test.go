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

// budgetError is the --json error of a promote that would overrun
// stack.data.freeze_budget.
type budgetError struct {
	Error struct {
		Code         string `json:"code"`
		Exit         int    `json:"exit"`
		Message      string `json:"message"`
		FreezeBudget *struct {
			Stage    string  `json:"stage"`
			Elapsed  float64 `json:"elapsed_seconds"`
			Estimate float64 `json:"estimate_seconds"`
			Holder   *string `json:"holder"`
			Droplet  string  `json:"droplet"`
			Writable *bool   `json:"writable"`
			Sync     *struct {
				Bytes   int64   `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sync"`
			Window []struct {
				Phase   string  `json:"phase"`
				Seconds float64 `json:"seconds"`
			} `json:"window"`
		} `json:"freeze_budget"`
	} `json:"error"`
}

// editSpec rewrites the working tree's droplets.yaml with edit.
func (e *blogEnv) editSpec(edit func(string) string) {
	e.t.Helper()
	p := filepath.Join(e.dir, "droplets.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(edit(string(b))), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// withoutLine is s without its first line that starts with prefix, and
// whether there was one.
func withoutLine(s, prefix string) (string, bool) {
	i := strings.Index(s, prefix)
	if i < 0 {
		return s, false
	}
	return s[:i] + s[i+strings.IndexByte(s[i:], '\n')+1:], true
}

// setBudget writes stack.data.freeze_budget into the working tree's spec.
func (e *blogEnv) setBudget(budget string) {
	e.editSpec(func(s string) string {
		s, _ = withoutLine(s, "    freeze_budget: ")
		const anchor = "    verify: blog-verify\n"
		if !strings.Contains(s, anchor) {
			e.t.Fatalf("droplets.yaml has no %q", anchor)
		}
		return strings.Replace(s, anchor, anchor+"    freeze_budget: "+budget+"\n", 1)
	})
}

// dropSpecLine removes the working tree spec's line that starts with prefix.
func (e *blogEnv) dropSpecLine(prefix string) {
	e.editSpec(func(s string) string {
		s, ok := withoutLine(s, prefix)
		if !ok {
			e.t.Fatalf("droplets.yaml has no line %q", prefix)
		}
		return s
	})
}

// overBudget runs a promote expected to be refused or aborted by the
// freeze budget, and checks what the measure asks: exit 5, the
// reserved IP still on live, and the site writable (a comment is taken).
func (e *blogEnv) overBudget(s *site, live, slug, stage string) *budgetError {
	e.t.Helper()
	start := time.Now()
	out, errOut, code := e.r.run("promote", "--json")
	took := time.Since(start)
	var be budgetError
	if err := json.Unmarshal([]byte(out), &be); err != nil || code != 5 || be.Error.FreezeBudget == nil {
		e.t.Fatalf("promote over the freeze budget: exit %d (want 5), %v\n%s%s", code, err, out, errOut)
	}
	fb := be.Error.FreezeBudget
	e.t.Logf("promote over budget (%.1fs): stage %s, %.2fs after the freeze, window %+v, sync %+v\n%s", took.Seconds(), fb.Stage, fb.Elapsed, fb.Window, fb.Sync, be.Error.Message)
	if fb.Stage != stage {
		e.t.Errorf("stage %q, want %q", fb.Stage, stage)
	}
	if got := e.live(); got != live {
		e.t.Fatalf("the reserved IP moved to %s", got)
	}
	if stage != "estimate" {
		if fb.Holder == nil || *fb.Holder != live || fb.Writable == nil || !*fb.Writable || fb.Droplet != live {
			e.t.Errorf("read back: holder %v, droplet %q, writable %v; want %s, writable", fb.Holder, fb.Droplet, fb.Writable, live)
		}
		if !strings.Contains(be.Error.Message, live+" is live and writable again") {
			e.t.Errorf("message: %s", be.Error.Message)
		}
	}
	code, _, err := s.comment(slug, "Ada", "ada@example.com", "Writable after a promote over the freeze budget ("+stage+")")
	if err != nil || code/100 != 2 {
		e.t.Fatalf("a comment on the live droplet after the %s abort: %d %v", stage, code, err)
	}
	return &be
}

// TestBlogFreezeBudget is the issue's measure "a promote that would
// overrun a 1 s freeze budget aborts with the site writable and the IP
// unmoved", on the blog: media generated on the live droplet after the
// candidate's up make the final sync long. With a budget the up's sync
// fits in, the promote starts and is stopped inside the window (stage
// sync); a re-run is refused by the estimate before any freeze; a 1 s
// budget is refused too. A comment is taken after each, and the IP stays.
// Then a promote with room to spare reports its window phase by phase.
func TestBlogFreezeBudget(t *testing.T) {
	e := newBlogEnv(t, 18531, "v1.3.1")
	// No incremental sync: its pre-sync would carry the media added below
	// while the site is writable, and the final sync would fit.
	e.dropSpecLine("    state: ")
	e.up("v1.3.0")
	e.promote()
	e.waitCert(time.Minute)
	s := e.site(true)
	if err := s.login("admin", e.adminPwd); err != nil {
		t.Fatal(err)
	}
	const slug = "budgeted"
	if err := s.addPost("Budgeted", slug, "A post to comment on.", "fleet", nil); err != nil {
		t.Fatal(err)
	}
	live := e.live()

	up := e.up("v1.3.1")
	upSync := 0.0
	if d, ok := up["data"].(map[string]any); ok {
		upSync, _ = d["seconds"].(float64)
	}
	// Media that arrived after the up: the final sync carries them.
	const mediaMB = 150
	appOf := "$(docker ps -q --filter label=com.docker.compose.service=app)"
	e.r.ok("ssh", live, "--", "docker", "exec", appOf, "sh", "-c",
		fmt.Sprintf("'mkdir -p /var/lib/blog/media/bulk && head -c %d /dev/urandom > /var/lib/blog/media/bulk/noise.bin'", mediaMB<<20))

	// A budget the up's sync fits in (the estimate lets it start), but not
	// the final sync with the new media: aborted inside the window.
	budget := time.Duration((upSync+0.9)*10) * 100 * time.Millisecond
	t.Logf("up's sync took %.2fs; freeze_budget %s; %d MB of media added", upSync, budget, mediaMB)
	e.setBudget(budget.String())
	be := e.overBudget(s, live, slug, "sync")
	// Bytes may be 0: the blog's backup stages its archive before it
	// streams a byte.
	if fb := be.Error.FreezeBudget; fb.Sync == nil || fb.Elapsed > budget.Seconds()+1 {
		t.Errorf("sync %+v, stopped %.2fs after the freeze (budget %s)", fb.Sync, fb.Elapsed, budget)
	}
	// The stopped sync was recorded on the candidate: a re-run is refused
	// before anything is frozen.
	e.overBudget(s, live, slug, "estimate")
	// The 1 s budget.
	e.setBudget("1s")
	e.overBudget(s, live, slug, "estimate")

	// Room to spare: the promote goes through and reports its window.
	e.setBudget("10m")
	res := e.promote()
	t.Logf("promote with freeze_budget 10m: freeze %vs, window %v", res["freeze_seconds"], res["window"])
	if w, ok := res["window"].([]any); !ok || len(w) < 5 || res["freeze_budget"] != 600.0 {
		t.Errorf("window %v, freeze_budget %v", res["window"], res["freeze_budget"])
	}
	if got := e.live(); got == live {
		t.Fatal("the promote did not move the IP")
	}
	// A new connection (the old one stays with the old droplet, frozen
	// for good, until the drain).
	if code, _, err := e.site(true).comment(slug, "Ada", "ada@example.com", "After the promote"); err != nil || code/100 != 2 {
		t.Fatalf("a comment after the promote: %d %v", code, err)
	}
}
