package localcloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

// logSink collects a server's log lines (and passes them to t.Logf).
type logSink struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Log(line)
}

func (l *logSink) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

// startEnv starts a server behind the contract validator, its log going
// to logs (nil: t.Logf).
func startEnv(t *testing.T, opts Options, logs *logSink) *env {
	t.Helper()
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Token == "" {
		opts.Token = testToken
	}
	if opts.BurstLimit == 0 {
		// The helpers poll every few milliseconds; tests of the burst
		// limit set their own.
		opts.BurstLimit = 1 << 20
	}
	var rl *routeLog
	if opts.Backend == nil {
		rl = &routeLog{MemoryBackend: MemoryBackend{BootDelay: opts.BootDelay}}
		opts.Backend = rl
	}
	opts.Logf = t.Logf
	if logs != nil {
		opts.Logf = logs.logf
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	e := &env{t: t, srv: srv, url: hs.URL, v: v, ctx: t.Context(), routes: rl}
	e.do = e.client(opts.Token)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		for _, msg := range v.Violations() {
			t.Errorf("contract violation: %s", msg)
		}
	})
	return e
}

// machines is a fake Docker: a Lister backend whose machines outlive the
// server. Boot is idempotent (it reuses an existing machine).
type machines struct {
	*routeLog
	delay time.Duration

	mu    sync.Mutex
	byID  map[int]Machine
	boots []int
}

func newMachines(delay time.Duration, ms ...Machine) *machines {
	f := &machines{routeLog: &routeLog{}, delay: delay, byID: map[int]Machine{}}
	for _, m := range ms {
		f.byID[m.ID] = m
	}
	return f
}

func (f *machines) Boot(ctx context.Context, m Machine) error {
	f.mu.Lock()
	if old, ok := f.byID[m.ID]; ok {
		m = old
	}
	f.byID[m.ID] = m
	f.boots = append(f.boots, m.ID)
	delay := f.delay
	f.mu.Unlock()
	if err := (MemoryBackend{BootDelay: delay}).Boot(ctx, m); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m.Booted = true
	f.byID[m.ID] = m
	return nil
}

func (f *machines) Destroy(ctx context.Context, id int) error {
	f.mu.Lock()
	delete(f.byID, id)
	f.mu.Unlock()
	return f.routeLog.Destroy(ctx, id)
}

func (f *machines) List(context.Context) ([]Machine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Machine
	for _, m := range f.byID {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *machines) remove(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byID, id)
}

func (f *machines) setDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

func (f *machines) bootCount(id int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, b := range f.boots {
		if b == id {
			n++
		}
	}
	return n
}

func statePath(t *testing.T) string { return filepath.Join(t.TempDir(), "state.json") }

func publicIP(t *testing.T, d *godo.Droplet) string {
	t.Helper()
	ip, err := d.PublicIPv4()
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// assignAndWait assigns ip to droplet id and waits for the action.
func (e *env) assignAndWait(ip string, id int) {
	e.t.Helper()
	a, _, err := e.do.ReservedIPActions.Assign(e.ctx, ip, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if a = e.waitAction(a.ID); a.Status != "completed" {
		e.t.Fatalf("assign %s to %d: %s", ip, id, a.Status)
	}
}

func TestStateRestart(t *testing.T) {
	t.Parallel()
	path := statePath(t)
	e1 := startEnv(t, Options{StatePath: path}, nil)
	key := e1.addKey("deploy")
	req := createReq("web-1", "fleet:demo", "fleet-version:v1_2_0")
	req.SSHKeys = []godo.DropletCreateSSHKey{{ID: key.ID}}
	req.Monitoring, req.IPv6, req.Backups = true, true, true
	d1, _, err := e1.do.Droplets.Create(e1.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := e1.create("web-2", "fleet:demo")
	d1, d2 = e1.waitActive(d1.ID), e1.waitActive(d2.ID)
	if _, _, err := e1.do.Tags.Create(e1.ctx, &godo.TagCreateRequest{Name: "fleet-promoted"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e1.do.Tags.TagResources(e1.ctx, "fleet-promoted", &godo.TagResourcesRequest{
		Resources: []godo.Resource{{ID: fmt.Sprint(d1.ID), Type: godo.DropletResourceType}},
	}); err != nil {
		t.Fatal(err)
	}
	rip, _, err := e1.do.ReservedIPs.Create(e1.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	e1.assignAndWait(rip.IP, d1.ID)
	spare, _, err := e1.do.ReservedIPs.Create(e1.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	acct1, _, _ := e1.do.Account.Get(e1.ctx)
	acts1, _, _ := e1.do.Actions.List(e1.ctx, &godo.ListOptions{PerPage: 200})
	e1.srv.Close()

	e2 := startEnv(t, Options{StatePath: path}, nil)
	checks := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"droplets keep ids, names, status and addresses", func(t *testing.T) {
			ds, _, err := e2.do.Droplets.List(e2.ctx, nil)
			if err != nil || len(ds) != 2 {
				t.Fatalf("droplets %v %v", ds, err)
			}
			for i, want := range []*godo.Droplet{d1, d2} {
				got := ds[i]
				if got.ID != want.ID || got.Name != want.Name || got.Status != "active" || got.Locked ||
					publicIP(t, &got) != publicIP(t, want) || got.Created != want.Created {
					t.Errorf("droplet %+v, want %+v", got, want)
				}
			}
		}},
		{"droplet options and VPCs", func(t *testing.T) {
			for _, want := range []*godo.Droplet{d1, d2} {
				got := e2.droplet(want.ID)
				v6, _ := got.PublicIPv6()
				w6, _ := want.PublicIPv6()
				if fmt.Sprint(got.Features) != fmt.Sprint(want.Features) || got.VPCUUID != want.VPCUUID || v6 != w6 {
					t.Errorf("droplet %d: features %q, vpc %s, v6 %q; want %q, %s, %q", want.ID, got.Features, got.VPCUUID, v6, want.Features, want.VPCUUID, w6)
				}
			}
			if fmt.Sprint(d1.Features) != "[droplet_agent private_networking monitoring ipv6 backups]" || d1.VPCUUID == "" || d1.VPCUUID != d2.VPCUUID {
				t.Errorf("before the restart: d1 %q %s, d2 %s", d1.Features, d1.VPCUUID, d2.VPCUUID)
			}
		}},
		{"tags, and the membership the deploy logic lists by", func(t *testing.T) {
			if got := strings.Join(e2.droplet(d1.ID).Tags, ","); got != "fleet:demo,fleet-version:v1_2_0,fleet-promoted" {
				t.Errorf("d1 tags %q", got)
			}
			ds, _, err := e2.do.Droplets.ListByTag(e2.ctx, "fleet-promoted", nil)
			if err != nil || len(ds) != 1 || ds[0].ID != d1.ID {
				t.Errorf("by tag %v %v", ds, err)
			}
			tags, _, err := e2.do.Tags.List(e2.ctx, nil)
			var names []string
			for _, tg := range tags {
				names = append(names, tg.Name)
			}
			if err != nil || strings.Join(names, ",") != "fleet:demo,fleet-version:v1_2_0,fleet-promoted" {
				t.Errorf("tags %v %v", names, err)
			}
		}},
		{"ssh keys", func(t *testing.T) {
			keys, _, err := e2.do.Keys.List(e2.ctx, nil)
			if err != nil || len(keys) != 1 || keys[0].ID != key.ID || keys[0].Fingerprint != key.Fingerprint || keys[0].PublicKey != key.PublicKey {
				t.Errorf("keys %+v %v", keys, err)
			}
		}},
		{"reserved IPs and their assignment, routed again", func(t *testing.T) {
			got, _, err := e2.do.ReservedIPs.Get(e2.ctx, rip.IP)
			if err != nil || got.Droplet == nil || got.Droplet.ID != d1.ID || got.Locked {
				t.Errorf("reserved IP %+v %v", got, err)
			}
			got, _, err = e2.do.ReservedIPs.Get(e2.ctx, spare.IP)
			if err != nil || got.Droplet != nil {
				t.Errorf("spare reserved IP %+v %v", got, err)
			}
			routes, _ := e2.routes.snapshot()
			if want := rip.IP + "->" + publicIP(t, d1); strings.Join(routes, " ") != want {
				t.Errorf("routes after restart %v, want [%s]", routes, want)
			}
		}},
		{"actions", func(t *testing.T) {
			acts, _, err := e2.do.Actions.List(e2.ctx, &godo.ListOptions{PerPage: 200})
			if err != nil || len(acts) != len(acts1) {
				t.Fatalf("actions %d %v, want %d", len(acts), err, len(acts1))
			}
			for i := range acts {
				a, b := acts[i], acts1[i]
				if a.ID != b.ID || a.Type != b.Type || a.Status != b.Status || a.ResourceID != b.ResourceID || a.StartedAt.String() != b.StartedAt.String() {
					t.Errorf("action %+v, want %+v", a, b)
				}
			}
		}},
		{"account", func(t *testing.T) {
			acct, _, err := e2.do.Account.Get(e2.ctx)
			if err != nil || acct.UUID != acct1.UUID {
				t.Errorf("account %+v %v, want uuid %s", acct, err, acct1.UUID)
			}
		}},
		{"ids and addresses continue", func(t *testing.T) {
			d3, resp := e2.create("web-3")
			if d3.ID != d2.ID+1 || resp.Links.Actions[0].ID <= acts1[0].ID {
				t.Errorf("new droplet %d (after %d), action %d (after %d)", d3.ID, d2.ID, resp.Links.Actions[0].ID, acts1[0].ID)
			}
			if ip := publicIP(t, e2.waitActive(d3.ID)); ip != "127.0.0.4" {
				t.Errorf("new droplet address %s", ip)
			}
			if k := e2.addKey("another"); k.ID != key.ID+1 {
				t.Errorf("new key id %d after %d", k.ID, key.ID)
			}
			r, _, err := e2.do.ReservedIPs.Create(e2.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
			if err != nil || r.IP != "127.0.0.202" {
				t.Errorf("new reserved IP %+v %v", r, err)
			}
		}},
	}
	for _, c := range checks {
		t.Run(c.name, c.check)
	}
}

// TestStateDurableBeforeAnswer takes a copy of the state file right after
// each call returned, as a crash would leave it, and starts a server on it.
func TestStateDurableBeforeAnswer(t *testing.T) {
	t.Parallel()
	path := statePath(t)
	e := startEnv(t, Options{StatePath: path, BootDelay: time.Hour, ActionDelay: time.Hour}, nil)
	var key *godo.Key
	var d, other *godo.Droplet
	var rip *godo.ReservedIP
	steps := []struct {
		name  string
		do    func(t *testing.T)
		check func(t *testing.T, c *env)
	}{
		{"key added", func(*testing.T) { key = e.addKey("k") }, func(t *testing.T, c *env) {
			if _, _, err := c.do.Keys.GetByID(c.ctx, key.ID); err != nil {
				t.Error(err)
			}
		}},
		{"droplet created", func(*testing.T) { d, _ = e.create("web", "fleet:x"); other, _ = e.create("other") }, func(t *testing.T, c *env) {
			if got := c.droplet(d.ID); got.Name != "web" || strings.Join(got.Tags, ",") != "fleet:x" {
				t.Errorf("droplet %+v", got)
			}
			c.waitActive(d.ID) // the copy boots it again
		}},
		{"tagged", func(t *testing.T) {
			if _, err := e.do.Tags.TagResources(e.ctx, "fleet:x", &godo.TagResourcesRequest{
				Resources: []godo.Resource{{ID: fmt.Sprint(other.ID), Type: godo.DropletResourceType}},
			}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, c *env) {
			if ds, _, err := c.do.Droplets.ListByTag(c.ctx, "fleet:x", nil); err != nil || len(ds) != 2 {
				t.Errorf("by tag %d %v", len(ds), err)
			}
		}},
		{"reserved IP created", func(t *testing.T) {
			var err error
			if rip, _, err = e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, c *env) {
			if _, _, err := c.do.ReservedIPs.Get(c.ctx, rip.IP); err != nil {
				t.Error(err)
			}
		}},
		{"droplet deleted", func(t *testing.T) {
			if _, err := e.do.Droplets.Delete(e.ctx, other.ID); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, c *env) {
			if _, _, err := c.do.Droplets.Get(c.ctx, other.ID); apiError(t, err).Response.StatusCode != 404 {
				t.Errorf("deleted droplet: %v", err)
			}
		}},
		{"key deleted", func(t *testing.T) {
			if _, err := e.do.Keys.DeleteByID(e.ctx, key.ID); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, c *env) {
			if keys, _, err := c.do.Keys.List(c.ctx, nil); err != nil || len(keys) != 0 {
				t.Errorf("keys %v %v", keys, err)
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do(t)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			crashed := statePath(t)
			if err := os.WriteFile(crashed, b, 0o600); err != nil {
				t.Fatal(err)
			}
			st.check(t, startEnv(t, Options{StatePath: crashed}, nil))
		})
	}
}

func TestStateFileWrites(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "not", "yet")
	path := filepath.Join(dir, "state.json")
	// A nested directory is created; a crash's temporary file is removed.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".state.json.tmp-42"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, Options{StatePath: path}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if _, _, err := e.do.Tags.Create(e.ctx, &godo.TagCreateRequest{Name: fmt.Sprintf("t%d", i)}); err != nil {
				t.Error(err)
			}
			if _, _, err := e.do.Droplets.Create(e.ctx, createReq(fmt.Sprintf("d%d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ds, _, err := e.do.Droplets.List(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		e.waitActive(d.ID)
	}
	e.srv.Close()

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"no temporary files left", func(t *testing.T) {
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, en := range ents {
				names = append(names, en.Name())
			}
			if strings.Join(names, " ") != "state.json unrelated" {
				t.Errorf("directory holds %v", names)
			}
		}},
		{"mode 0600", func(t *testing.T) {
			fi, err := os.Stat(path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v %v", fi.Mode(), err)
			}
		}},
		{"complete and readable", func(t *testing.T) {
			f, err := readStateFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != stateVersion || len(f.Droplets) != 8 || len(f.Tags) != 8 || len(f.Actions) != 8 {
				t.Errorf("state: version %d, %d droplets, %d tags, %d actions", f.Version, len(f.Droplets), len(f.Tags), len(f.Actions))
			}
			for _, a := range f.Actions {
				if a.Status != statusCompleted {
					t.Errorf("action %d %s after Close", a.ID, a.Status)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestStateBadFile(t *testing.T) {
	t.Parallel()
	valid := func() []byte {
		path := statePath(t)
		e := startEnv(t, Options{StatePath: path}, nil)
		e.create("a")
		e.srv.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	var f map[string]any
	if err := json.Unmarshal(valid, &f); err != nil {
		t.Fatal(err)
	}
	edit := func(change func(map[string]any)) string {
		var m map[string]any
		json.Unmarshal(valid, &m)
		change(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, content, want string
	}{
		{"garbage", "not json at all", "is corrupt"},
		{"empty", "", "is corrupt"},
		{"truncated", string(valid[:len(valid)/2]), "is corrupt"},
		{"trailing data", string(valid) + "{}", "is corrupt"},
		{"no version", `{"droplets":[]}`, "is corrupt: no format version"},
		{"unknown field", edit(func(m map[string]any) { m["surprise"] = 1 }), `unknown field "surprise"`},
		{"wrong type", edit(func(m map[string]any) { m["droplets"] = "many" }), "is corrupt"},
		{"repeated droplet", edit(func(m map[string]any) {
			ds := m["droplets"].([]any)
			m["droplets"] = append(ds, ds[0])
		}), "is invalid or repeated"},
		{"bad status", edit(func(m map[string]any) {
			m["droplets"].([]any)[0].(map[string]any)["status"] = "exploded"
		}), `has status "exploded"`},
		{"newer version", edit(func(m map[string]any) { m["version"] = stateVersion + 1 }), fmt.Sprintf("has format version %d, but this fleet reads version %d at most", stateVersion+1, stateVersion)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := statePath(t)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			srv, err := NewServer(Options{Token: testToken, StatePath: path, Logf: t.Logf})
			if err == nil {
				srv.Close()
				t.Fatal("NewServer accepted the file")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one naming %s and saying %q", err, path, tt.want)
			}
			if b, _ := os.ReadFile(path); string(b) != tt.content {
				t.Error("the bad file was overwritten")
			}
		})
	}
}

func TestStateReconcile(t *testing.T) {
	t.Parallel()
	stray := Machine{
		ID: 600000123, Name: "stray", Region: "ams3", Size: "s-1vcpu-2gb", Image: "debian-12-x64",
		PublicIPv4: "127.0.0.7", Tags: []string{"fleet:lost", "fleet-version:v2_0_0"}, Booted: true,
	}
	tests := []struct {
		name string
		// setup runs a first server (or not) and returns the backend the
		// restarted server gets.
		setup func(t *testing.T, path string) *machines
		check func(t *testing.T, e *env, b *machines, logs *logSink)
	}{
		{
			name: "droplet whose machine is gone is removed, its reserved IP unassigned",
			setup: func(t *testing.T, path string) *machines {
				b := newMachines(0)
				e := startEnv(t, Options{StatePath: path, Backend: b}, nil)
				a, _ := e.create("a")
				gone, _ := e.create("gone", "fleet:x")
				e.waitActive(a.ID)
				e.waitActive(gone.ID)
				rip, _, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
				if err != nil {
					t.Fatal(err)
				}
				e.assignAndWait(rip.IP, gone.ID)
				e.srv.Close()
				b.remove(gone.ID)
				return b
			},
			check: func(t *testing.T, e *env, b *machines, logs *logSink) {
				ds, _, err := e.do.Droplets.List(e.ctx, nil)
				if err != nil || len(ds) != 1 || ds[0].Name != "a" {
					t.Fatalf("droplets %v %v", ds, err)
				}
				rips, _, err := e.do.ReservedIPs.List(e.ctx, nil)
				if err != nil || len(rips) != 1 || rips[0].Droplet != nil {
					t.Errorf("reserved IPs %+v %v", rips, err)
				}
				if routes, _ := b.snapshot(); routes[len(routes)-1] != "127.0.0.200->" {
					t.Errorf("routes %v: the reserved IP should be unrouted", routes)
				}
				if !logs.has(`"gone" has no machine in the backend; removing it`) || !logs.has("reserved IP 127.0.0.200 is unassigned") {
					t.Errorf("corrections not logged: %v", logs.lines)
				}
				// Its address is free again.
				d, _ := e.create("next")
				if ip := publicIP(t, e.waitActive(d.ID)); ip != "127.0.0.3" {
					t.Errorf("next address %s", ip)
				}
			},
		},
		{
			name: "unknown booted machine is adopted, without a state file",
			setup: func(t *testing.T, path string) *machines {
				return newMachines(0, stray)
			},
			check: func(t *testing.T, e *env, b *machines, logs *logSink) {
				d := e.droplet(stray.ID)
				if d.Name != "stray" || d.Status != "active" || d.Region.Slug != "ams3" || d.Size.Slug != "s-1vcpu-2gb" ||
					d.Image.Distribution != "Debian" || publicIP(t, d) != "127.0.0.7" || strings.Join(d.Tags, ",") != "fleet:lost,fleet-version:v2_0_0" {
					t.Errorf("adopted %+v", d)
				}
				if tg, _, err := e.do.Tags.Get(e.ctx, "fleet:lost"); err != nil || tg.Resources.Count != 1 {
					t.Errorf("tag %+v %v", tg, err)
				}
				if !logs.has(`adopted backend machine 600000123 "stray"`) {
					t.Errorf("adoption not logged: %v", logs.lines)
				}
				if n := b.bootCount(stray.ID); n != 0 {
					t.Errorf("a booted machine was booted %d times", n)
				}
				// Ids move past it; its address stays taken.
				var ips []string
				for i := range 6 {
					n, _ := e.create(fmt.Sprintf("n%d", i))
					if n.ID != stray.ID+1+i {
						t.Errorf("new droplet id %d", n.ID)
					}
					ips = append(ips, publicIP(t, e.waitActive(n.ID)))
				}
				if slices.Contains(ips, "127.0.0.7") || ips[5] != "127.0.0.8" {
					t.Errorf("new addresses %v", ips)
				}
			},
		},
		{
			name: "unknown machine still booting is adopted new and boots",
			setup: func(t *testing.T, path string) *machines {
				m := stray
				m.Booted, m.PublicIPv4 = false, ""
				return newMachines(20*time.Millisecond, m)
			},
			check: func(t *testing.T, e *env, b *machines, logs *logSink) {
				d := e.waitActive(stray.ID)
				if publicIP(t, d) != "127.0.0.2" || b.bootCount(stray.ID) != 1 {
					t.Errorf("adopted %+v, booted %d times", d, b.bootCount(stray.ID))
				}
				acts, _, err := e.do.Droplets.Actions(e.ctx, stray.ID, nil)
				if err != nil || len(acts) != 1 || acts[0].Type != "create" || e.waitAction(acts[0].ID).Status != "completed" {
					t.Errorf("actions %+v %v", acts, err)
				}
				if !logs.has("has no address; giving it 127.0.0.2") {
					t.Errorf("address not logged: %v", logs.lines)
				}
			},
		},
		{
			name: "droplet booting without its machine yet is kept and booted",
			setup: func(t *testing.T, path string) *machines {
				b := newMachines(time.Hour)
				e := startEnv(t, Options{StatePath: path, Backend: b}, nil)
				e.create("slow")
				e.srv.Close()
				b.remove(500000001)
				b.setDelay(0)
				return b
			},
			check: func(t *testing.T, e *env, b *machines, logs *logSink) {
				e.waitActive(500000001)
				if n := b.bootCount(500000001); n != 2 {
					t.Errorf("booted %d times", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := statePath(t)
			b := tt.setup(t, path)
			logs := &logSink{t: t}
			e := startEnv(t, Options{StatePath: path, Backend: b}, logs)
			tt.check(t, e, b, logs)
		})
	}
}

func TestStateResumesInProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lister bool // a fake Docker, else the memory backend
	}{
		{"memory backend", false},
		{"lister backend", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := statePath(t)
			// Two droplets: one boots, then gets a reserved IP whose assign
			// is still in progress at shutdown; the other is still new.
			opts := Options{StatePath: path, ActionDelay: time.Hour}
			var m *machines
			if tt.lister {
				m = newMachines(0)
				opts.Backend = m
			} else {
				opts.Faults = []Fault{{Kind: FaultStuckNew, Name: "slow"}}
			}
			e1 := startEnv(t, opts, nil)
			live, _ := e1.create("live")
			live = e1.waitActive(live.ID)
			if m != nil {
				m.setDelay(time.Hour) // Close interrupts the boot
			}
			slow, resp := e1.create("slow")
			createAction := resp.Links.Actions[0].ID
			rip, _, err := e1.do.ReservedIPs.Create(e1.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
			if err != nil {
				t.Fatal(err)
			}
			assign, _, err := e1.do.ReservedIPActions.Assign(e1.ctx, rip.IP, live.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := e1.droplet(slow.ID); got.Status != "new" || !e1.droplet(live.ID).Locked {
				t.Fatalf("before restart: %+v", got)
			}
			e1.srv.Close()

			opts = Options{StatePath: path}
			if m != nil {
				m.setDelay(0)
				opts.Backend = m
			}
			e2 := startEnv(t, opts, nil)
			d := e2.waitActive(slow.ID)
			if d.Locked || publicIP(t, d) != "127.0.0.3" {
				t.Errorf("after restart %+v", d)
			}
			if a := e2.waitAction(createAction); a.Status != "completed" {
				t.Errorf("create action %s", a.Status)
			}
			if a := e2.waitAction(assign.ID); a.Status != "completed" {
				t.Errorf("assign action %s", a.Status)
			}
			got, _, err := e2.do.ReservedIPs.Get(e2.ctx, rip.IP)
			if err != nil || got.Droplet == nil || got.Droplet.ID != live.ID || got.Locked || e2.droplet(live.ID).Locked {
				t.Errorf("reserved IP %+v %v", got, err)
			}
			var routes []string
			if m != nil {
				routes, _ = m.snapshot()
				if n := m.bootCount(slow.ID); n != 2 {
					t.Errorf("slow booted %d times, want 2", n)
				}
			} else {
				routes, _ = e2.routes.snapshot()
			}
			if want := rip.IP + "->" + publicIP(t, live); strings.Join(routes, " ") != want {
				t.Errorf("routes %v, want [%s] (once)", routes, want)
			}
		})
	}
}

// Droplet ids restart in every local cloud and snapshots are shared: the
// cloud-init instance id of a container must not repeat, or a droplet made
// from a snapshot keeps the snapshot's host keys.
func TestInstanceIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := instanceID(500000002)
		if !strings.HasPrefix(id, "i-500000002-") || seen[id] {
			t.Fatalf("instance id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
}
