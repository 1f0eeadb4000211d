package cloud

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

// env is a client against an in-process API server whose traffic is
// checked against DigitalOcean's OpenAPI description.
type env struct {
	c   *Client
	srv *localcloud.Server
}

func newEnv(t *testing.T, faults string, tweak func(*Config)) *env {
	t.Helper()
	return newEnvDelay(t, faults, 50*time.Millisecond, tweak)
}

// newEnvDelay is newEnv with actions (such as an assign) taking actionDelay.
func newEnvDelay(t *testing.T, faults string, actionDelay time.Duration, tweak func(*Config)) *env {
	t.Helper()
	fs, err := localcloud.ParseFaults(faults)
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, localcloud.Options{Faults: fs, ActionDelay: actionDelay}, tweak)
}

// newEnvWith starts the server with opts (token "t"; 50ms boots and
// actions unless set).
func newEnvWith(t *testing.T, opts localcloud.Options, tweak func(*Config)) *env {
	t.Helper()
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	opts.Token = "t"
	if opts.BootDelay == 0 {
		opts.BootDelay = 50 * time.Millisecond
	}
	if opts.ActionDelay == 0 {
		opts.ActionDelay = 50 * time.Millisecond
	}
	srv, err := localcloud.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		if vs := v.Violations(); len(vs) > 0 {
			t.Errorf("OpenAPI contract violations:\n%s", strings.Join(vs, "\n"))
		}
	})
	cfg := Config{Token: "t", APIURL: hs.URL, PollInterval: 20 * time.Millisecond, RetryWaitMin: 10 * time.Millisecond,
		// Above the Retry-After: 1 of an injected 429, which must be waited out.
		RetryWaitMax: 2 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{c: c, srv: srv}
}

var quick = Timeouts{Create: 5 * time.Second, Active: 5 * time.Second, Assign: 5 * time.Second}

func (e *env) create(t *testing.T, name, deployTag string) *Droplet {
	t.Helper()
	d, action, err := e.c.CreateDroplet(context.Background(), CreateRequest{
		Name: name, Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64",
		Tags: []string{"fleet:test"}, DeployTag: deployTag, UserData: "#cloud-config\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err = e.c.WaitReady(context.Background(), d, action, quick)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCreateIsIdempotent(t *testing.T) {
	tests := []struct {
		name   string
		faults string
		posts  int // POSTs the server sees
	}{
		{"clean", "", 1},
		{"500 after the create took effect", "POST /v2/droplets#1=500+after", 1},
		{"500 before it took effect", "POST /v2/droplets#1=500", 2},
		{"429 then success", "POST /v2/droplets#1=429", 2},
		{"two 503s", "POST /v2/droplets#1=503; POST /v2/droplets#2=503", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.faults, nil)
			d := e.create(t, "web-1", "fleet-deploy:abc123")
			if d.Status != "active" || d.PublicIPv4 == "" {
				t.Fatalf("droplet %+v is not ready", d)
			}
			all, err := e.c.ListByTag(context.Background(), "fleet:test")
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 1 {
				t.Fatalf("%d droplets exist, want exactly 1", len(all))
			}
			if got := e.srv.Stats().Count("POST", "/v2/droplets"); got != tt.posts {
				t.Errorf("server saw %d creates, want %d", got, tt.posts)
			}
		})
	}
}

func TestCreateGivesUpOnClientErrors(t *testing.T) {
	e := newEnv(t, "", nil)
	_, _, err := e.c.CreateDroplet(context.Background(), CreateRequest{
		Name: "web-1", Region: "nowhere", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:x",
	})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 422 {
		t.Fatalf("got %v, want the API's 422", err)
	}
	if got := e.srv.Stats().Count("POST", "/v2/droplets"); got != 1 {
		t.Errorf("a 422 was resent: %d creates", got)
	}
}

func TestListByTagPaginates(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.PageSize = 4 })
	for i := 0; i < 10; i++ {
		e.create(t, fmt.Sprintf("web-%d", i), fmt.Sprintf("fleet-deploy:%d", i))
	}
	all, err := e.c.ListByTag(context.Background(), "fleet:test")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, d := range all {
		seen[d.ID] = true
	}
	if len(all) != 10 || len(seen) != 10 {
		t.Fatalf("listed %d droplets (%d distinct), want 10 over 3 pages", len(all), len(seen))
	}
}

// A page that keeps failing fails the listing: a partial list would make
// fleet misjudge roles.
func TestListByTagNeverSkipsAFailedPage(t *testing.T) {
	e := newEnv(t, "", func(c *Config) { c.PageSize = 4; c.RetryMax = 2 })
	for i := 0; i < 10; i++ {
		e.create(t, fmt.Sprintf("web-%d", i), fmt.Sprintf("fleet-deploy:%d", i))
	}
	for n := 1; n <= 3; n++ { // every try at page 2 fails
		fs, _ := localcloud.ParseFaults(fmt.Sprintf("GET /v2/droplets?page=2#%d=500", n))
		e.srv.AddFault(fs[0])
	}
	all, err := e.c.ListByTag(context.Background(), "fleet:test")
	if err == nil || !strings.Contains(err.Error(), "page 2") {
		t.Fatalf("got %d droplets and error %v, want an error naming page 2", len(all), err)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	e := newEnv(t, "stuck-new=stuck-*", nil)
	d, action, err := e.c.CreateDroplet(context.Background(), CreateRequest{
		Name: "stuck-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:s",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.WaitReady(context.Background(), d, action, Timeouts{Create: 300 * time.Millisecond, Active: time.Second})
	var te *TimeoutError
	if !errors.As(err, &te) || !strings.Contains(te.Error(), "create action of stuck-1") {
		t.Fatalf("got %v, want a timeout on the create action", err)
	}
}

func TestWaitReadyHonoursCancel(t *testing.T) {
	e := newEnv(t, "stuck-new=stuck-*", nil)
	d, action, err := e.c.CreateDroplet(context.Background(), CreateRequest{
		Name: "stuck-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:s",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err = e.c.WaitReady(ctx, d, action, quick)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestReservedIPLifecycle(t *testing.T) {
	tests := []struct {
		name   string
		faults string
		delay  time.Duration // of actions; 0 = newEnv's
	}{
		{"clean", "", 0},
		{"create answered 500 after it took effect", "POST /v2/reserved_ips#1=500+after", 0},
		// The retry looks while the first create is still assigning.
		{"create answered 500 after it took effect, slow assign", "POST /v2/reserved_ips#1=500+after", 400 * time.Millisecond},
		{"assign refused with a pending event twice", "POST /v2/reserved_ips/#1=422; POST /v2/reserved_ips/#2=422", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			delay := cmp.Or(tt.delay, 50*time.Millisecond)
			e := newEnvDelay(t, tt.faults, delay, nil)
			ctx := context.Background()
			a := e.create(t, "web-a", "fleet-deploy:a")
			b := e.create(t, "web-b", "fleet-deploy:b")
			ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
			if err != nil {
				t.Fatal(err)
			}
			if all, _ := e.c.ListReservedIPs(ctx); len(all) != 1 {
				t.Fatalf("%d reserved IPs exist, want 1", len(all))
			}
			if err := e.c.Assign(ctx, ip.IP, b.ID, quick); err != nil {
				t.Fatal(err)
			}
			got, err := e.c.ReservedIP(ctx, ip.IP)
			if err != nil || got.DropletID != b.ID {
				t.Fatalf("after assign: %+v, %v; want droplet %d", got, err, b.ID)
			}
			if err := e.c.Unassign(ctx, ip.IP, quick); err != nil {
				t.Fatal(err)
			}
			if got, _ := e.c.ReservedIP(ctx, ip.IP); got.DropletID != 0 {
				t.Fatalf("after unassign the IP points at %d", got.DropletID)
			}
		})
	}
}

func TestAssignErroredAction(t *testing.T) {
	e := newEnv(t, "errored=assign", nil)
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
	var ae *ActionError
	if err == nil {
		b := e.create(t, "web-b", "fleet-deploy:b")
		err = e.c.Assign(ctx, ip.IP, b.ID, quick)
	}
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an ActionError", err)
	}
}

func TestMissingFingerprintIsExplained(t *testing.T) {
	e := newEnv(t, "", nil)
	_, err := e.c.EnsureSSHKeys(context.Background(), []SSHKey{{Fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"}})
	if err == nil || !strings.Contains(err.Error(), "is not on the account") {
		t.Fatalf("got %v", err)
	}
}

// A droplet lists its reserved IP among its public networks, first or not
// (the local cloud: first for even IDs); fleet always reads the droplet's
// own address, through every call that returns a droplet, and lists the
// account's reserved IPs at most once per call to tell them apart.
func TestPublicIPv4IsTheDropletsOwn(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	b := e.create(t, "web-b", "fleet-deploy:b")
	if a.ID%2 == b.ID%2 {
		t.Fatalf("droplets %d and %d: want one even and one odd ID, for both orders", a.ID, b.ID)
	}
	own := map[int]string{a.ID: a.PublicIPv4, b.ID: b.PublicIPv4}
	for _, d := range []*Droplet{a, b} {
		if _, err := e.c.CreateReservedIP(ctx, d.ID, quick, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, fresh := range []bool{false, true} {
		c := e.c
		if fresh { // knows no reserved IP yet
			var err error
			if c, err = New(c.cfg); err != nil {
				t.Fatal(err)
			}
		}
		listsBefore := e.srv.Stats().Count("GET", "/v2/reserved_ips")
		all, err := c.ListByTag(ctx, "fleet:test")
		if err != nil {
			t.Fatal(err)
		}
		if n := e.srv.Stats().Count("GET", "/v2/reserved_ips") - listsBefore; n > 1 || (!fresh && n != 0) {
			t.Errorf("fresh=%v: the listing listed reserved IPs %d times", fresh, n)
		}
		for _, d := range all {
			if d.PublicIPv4 != own[d.ID] {
				t.Errorf("fresh=%v: ListByTag gives %s for droplet %d, want its own %s", fresh, d.PublicIPv4, d.ID, own[d.ID])
			}
			got, err := c.GetDroplet(ctx, d.ID)
			if err != nil || got.PublicIPv4 != own[d.ID] {
				t.Errorf("fresh=%v: GetDroplet gives %+v, %v; want %s", fresh, got, err, own[d.ID])
			}
			ready, err := c.WaitReady(ctx, &d, 0, quick)
			if err != nil || ready.PublicIPv4 != own[d.ID] {
				t.Errorf("fresh=%v: WaitReady gives %+v, %v; want %s", fresh, ready, err, own[d.ID])
			}
		}
	}
}

// An assign across regions is DigitalOcean's 422 (not a "pending event"):
// Assign fails at once with the API's message, the IP unmoved.
func TestAssignAcrossRegionsFailsAtOnce(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	d, action, err := e.c.CreateDroplet(ctx, CreateRequest{Name: "web-ams", Region: "ams3", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:b"})
	if err != nil {
		t.Fatal(err)
	}
	if d, err = e.c.WaitReady(ctx, d, action, quick); err != nil {
		t.Fatal(err)
	}
	ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = e.c.Assign(ctx, ip.IP, d.ID, quick)
	if !IsStatus(err, 422) || isPendingEvent(err) || !strings.Contains(err.Error(), "region") {
		t.Fatalf("got %v, want the API's 422 on regions", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the refused assign took %v: retried as a pending event?", took)
	}
	if got, _ := e.c.ReservedIP(ctx, ip.IP); got.DropletID != a.ID || got.Region != "nyc3" {
		t.Errorf("after the refused assign: %+v", got)
	}
	if n := e.srv.Stats().Count("POST", "/v2/reserved_ips/"); n != 1 {
		t.Errorf("%d assign requests, want 1", n)
	}
}

// A reserved IP's assign action is read again soon (150, 300, 600 ms at
// the default 1 s PollInterval), not after a full interval: the move is
// inside promote's freeze window. At most 3 reads fall in its first second.
func TestAssignReadsTheActionSoon(t *testing.T) {
	e := newEnvDelay(t, "", 300*time.Millisecond, func(c *Config) { c.PollInterval = time.Second; c.MaxPoll = 5 * time.Second })
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := e.create(t, "web-b", "fleet-deploy:b")
	start := time.Now()
	if err := e.c.Assign(ctx, ip.IP, b.ID, quick); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var post, firstDone time.Time
	var gets []time.Duration
	for _, r := range e.srv.Stats().Requests {
		switch {
		case r.Time.Before(start):
		case r.Method == "POST" && strings.HasPrefix(r.Path, "/v2/reserved_ips/"+ip.IP+"/actions"):
			post = r.Time
		case r.Method == "GET" && strings.HasPrefix(r.Path, "/v2/reserved_ips/"+ip.IP+"/actions/"):
			if len(gets) == 0 {
				firstDone = r.Time.Add(r.Duration)
			} else if len(gets) == 1 {
				// The wait between the first answer and the second read.
				// 150 ms by design, 1 s before; slack for a loaded machine.
				if gap := r.Time.Sub(firstDone); gap > 500*time.Millisecond {
					t.Errorf("the action was read again %v after its first answer, want within 500 ms", gap)
				}
			}
			gets = append(gets, r.Time.Sub(post))
		}
	}
	t.Logf("assign took %v; action read at %v after the POST", took, gets)
	if len(gets) < 2 {
		t.Errorf("the action was read %d times, want the in-progress read and a second", len(gets))
	}
	if len(gets) > 3 {
		t.Errorf("%d reads of a 300 ms action, assign took %v: want at most 3", len(gets), took)
	}
}

// WaitIdle reads the droplet's actions; an Assign told Idle (the caller
// waited before its freeze) does not read them again.
func TestAssignIdleSkipsTheWait(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := e.create(t, "web-b", "fleet-deploy:b")
	actions := func() int { return e.srv.Stats().Count("GET", fmt.Sprintf("/v2/droplets/%d/actions", b.ID)) }
	n0 := actions()
	if err := e.c.WaitIdle(ctx, b.ID, quick); err != nil {
		t.Fatal(err)
	}
	n1 := actions()
	idle := quick
	idle.Idle = true
	if err := e.c.Assign(ctx, ip.IP, b.ID, idle); err != nil {
		t.Fatal(err)
	}
	if n2 := actions(); n1-n0 != 1 || n2 != n1 {
		t.Errorf("droplet actions read %d times by WaitIdle, %d by the idle Assign; want 1 and 0", n1-n0, n2-n1)
	}
	if r, err := e.c.ReservedIP(ctx, ip.IP); err != nil || r.DropletID != b.ID {
		t.Errorf("after the idle Assign: %+v %v", r, err)
	}
}
