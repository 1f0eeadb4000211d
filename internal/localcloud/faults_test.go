package localcloud

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    []Fault
		wantErr string
	}{
		{"", nil, ""},
		{
			"POST /v2/droplets#1=500+after; GET /v2/droplets latency=200ms; stuck-new=blog-*; errored=assign",
			[]Fault{
				{Kind: FaultFail, Method: "POST", Path: "/v2/droplets", Nth: 1, Status: 500, After: true},
				{Kind: FaultLatency, Method: "GET", Path: "/v2/droplets", Delay: 200 * time.Millisecond},
				{Kind: FaultStuckNew, Name: "blog-*"},
				{Kind: FaultErrored, Action: "assign"},
			}, "",
		},
		{"get /v2/account#3=429\n* /v2/tags=503", []Fault{
			{Kind: FaultFail, Method: "GET", Path: "/v2/account", Nth: 3, Status: 429},
			{Kind: FaultFail, Method: "*", Path: "/v2/tags", Nth: 1, Status: 503},
		}, ""},
		{"GET /v2/droplets?tag_name=a#2=500", []Fault{
			{Kind: FaultFail, Method: "GET", Path: "/v2/droplets?tag_name=a", Nth: 2, Status: 500},
		}, ""},
		{"errored=create; FETCH /v2/x=500", nil, `fault 2 "FETCH /v2/x=500": unknown method "FETCH"`},
		{"POST /v2/droplets#0=500", nil, `fault 1 "POST /v2/droplets#0=500": #0: N must be a positive integer`},
		{"POST /v2/droplets=five", nil, `status "five" is not a number`},
		{"POST /v2/droplets=999", nil, `status 999 is not an HTTP status`},
		{"POST v2/droplets=500", nil, `path "v2/droplets" must start with /`},
		{"GET /v2/droplets latency=fast", nil, `latency "fast"`},
		{"GET /v2/droplets slow=1s", nil, `"slow=1s": want latency=DURATION`},
		{"GET /v2/droplets", nil, `want PATH[#N]=STATUS[+after]`},
		{"stuck-new=[", nil, `bad glob "["`},
		{"errored=", nil, `errored needs an action type`},
		{"hold=cloud-init:blog-*:20s; hold=sshd:*:1m30s; vendor-fail=shop-?", []Fault{
			{Kind: FaultHold, Unit: HoldCloudInit, Name: "blog-*", Delay: 20 * time.Second},
			{Kind: FaultHold, Unit: HoldSSHD, Name: "*", Delay: 90 * time.Second},
			{Kind: FaultVendorFail, Name: "shop-?"},
		}, ""},
		{"hold=docker:blog-*:20s", nil, `unit "docker": want cloud-init or sshd`},
		{"hold=sshd:blog-*", nil, `want hold=UNIT:GLOB:DURATION`},
		{"hold=sshd:blog-*:soon", nil, `hold delay "soon"`},
		{"hold=sshd:blog-*:0s", nil, `delay 0s must be positive and at most 1h0m0s`},
		{"hold=sshd:blog-*:2h", nil, `delay 2h0m0s must be positive`},
		{"hold=sshd::1s", nil, `hold needs a name glob`},
		{"hold=sshd:[:1s", nil, `bad glob "["`},
		{"vendor-fail=", nil, `vendor-fail needs a name glob`},
		{"explode", nil, `fault 1 "explode": want "METHOD PATH`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseFaults(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			// String round-trips, and so does JSON.
			for _, f := range got {
				back, err := ParseFaults(f.String())
				if err != nil || len(back) != 1 || !reflect.DeepEqual(back[0], f) {
					t.Errorf("String %q parses back to %+v (%v)", f.String(), back, err)
				}
				b, _ := json.Marshal(f)
				var j Fault
				if err := json.Unmarshal(b, &j); err != nil || !reflect.DeepEqual(j, f) {
					t.Errorf("JSON %s reads back as %+v (%v)", b, j, err)
				}
			}
		})
	}
}

func TestFailFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		spec       string
		run        func(e *env) (status []int)
		wantStatus []int
		check      func(t *testing.T, e *env)
	}{
		{
			name: "second request fails once",
			spec: "GET /v2/account#2=503",
			run: func(e *env) []int {
				var out []int
				for range 3 {
					_, resp, _ := e.do.Account.Get(e.ctx)
					out = append(out, resp.StatusCode)
				}
				return out
			},
			wantStatus: []int{200, 503, 200},
		},
		{
			name: "500 after the create took effect",
			spec: "POST /v2/droplets#1=500+after",
			run: func(e *env) []int {
				_, resp, _ := e.do.Droplets.Create(e.ctx, createReq("web-1", "fleet-deploy:abc"))
				_, resp2, _ := e.do.Droplets.Create(e.ctx, createReq("web-2"))
				return []int{resp.StatusCode, resp2.StatusCode}
			},
			wantStatus: []int{500, 202},
			check: func(t *testing.T, e *env) {
				ds, _, err := e.do.Droplets.ListByTag(e.ctx, "fleet-deploy:abc", nil)
				if err != nil || len(ds) != 1 || ds[0].Name != "web-1" {
					t.Errorf("the failed create should exist: %v %v", ds, err)
				}
			},
		},
		{
			name: "500 before: nothing happens",
			spec: "POST /v2/droplets=500",
			run: func(e *env) []int {
				_, resp, _ := e.do.Droplets.Create(e.ctx, createReq("web-1"))
				return []int{resp.StatusCode}
			},
			wantStatus: []int{500},
			check: func(t *testing.T, e *env) {
				if ds, _, _ := e.do.Droplets.List(e.ctx, nil); len(ds) != 0 {
					t.Errorf("droplets %v", ds)
				}
			},
		},
		{
			name: "429 with Retry-After",
			spec: "GET /v2/droplets=429",
			run: func(e *env) []int {
				_, resp, err := e.do.Droplets.List(e.ctx, nil)
				if got := resp.Header.Get("Retry-After"); got != "1" {
					e.t.Errorf("Retry-After %q (%v)", got, err)
				}
				return []int{resp.StatusCode}
			},
			wantStatus: []int{429},
		},
		{
			name: "query-matched",
			spec: "GET /v2/droplets?tag_name=fleet:x=500",
			run: func(e *env) []int {
				_, r1, _ := e.do.Droplets.List(e.ctx, nil)
				_, r2, _ := e.do.Droplets.ListByTag(e.ctx, "fleet:x", nil)
				return []int{r1.StatusCode, r2.StatusCode}
			},
			wantStatus: []int{200, 500},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			faults, err := ParseFaults(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, Options{Faults: faults})
			e.t = t
			got := tt.run(e)
			if !reflect.DeepEqual(got, tt.wantStatus) {
				t.Errorf("statuses %v, want %v", got, tt.wantStatus)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestLatencyFault(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	e := newEnv(t, Options{Faults: []Fault{{Kind: FaultLatency, Method: "GET", Path: "/v2/droplets", Delay: delay}}})
	tests := []struct {
		name string
		call func() error
		slow bool
	}{
		{"matching", func() error { _, _, err := e.do.Droplets.List(e.ctx, nil); return err }, true},
		{"other path", func() error { _, _, err := e.do.Account.Get(e.ctx); return err }, false},
	}
	for _, tt := range tests {
		start := time.Now()
		if err := tt.call(); err != nil {
			t.Fatal(err)
		}
		// Slow: at least the delay; fast: well under it, even under -race.
		if took := time.Since(start); (tt.slow && took < delay) || (!tt.slow && took >= delay/2) {
			t.Errorf("%s took %v (delay %v, slow %v)", tt.name, took, delay, tt.slow)
		}
	}
}

func TestStuckNewFault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	e.srv.AddFault(Fault{Kind: FaultStuckNew, Name: "blog-*"})
	stuck, resp := e.create("blog-1")
	ok, _ := e.create("shop-1")
	e.waitActive(ok.ID)
	time.Sleep(50 * time.Millisecond)
	d := e.droplet(stuck.ID)
	a, _, err := e.do.Actions.Get(e.ctx, resp.Links.Actions[0].ID)
	if err != nil || d.Status != "new" || !d.Locked || len(d.Networks.V4) != 0 || a.Status != "in-progress" {
		t.Errorf("stuck droplet %+v, action %+v %v", d, a, err)
	}
	// It can still be deleted; its create action then ends errored.
	if _, err := e.do.Droplets.Delete(e.ctx, stuck.ID); err != nil {
		t.Fatal(err)
	}
	if a := e.waitAction(a.ID); a.Status != "errored" {
		t.Errorf("action after delete: %+v", a)
	}
}

// bootLog is a MemoryBackend that records the machines it boots.
type bootLog struct {
	MemoryBackend
	mu     sync.Mutex
	booted []Machine
}

func (b *bootLog) Boot(ctx context.Context, m Machine) error {
	b.mu.Lock()
	b.booted = append(b.booted, m)
	b.mu.Unlock()
	return b.MemoryBackend.Boot(ctx, m)
}

func TestBootFaults(t *testing.T) {
	t.Parallel()
	b := &bootLog{}
	e := newEnv(t, Options{Backend: b, Faults: []Fault{
		{Kind: FaultHold, Unit: HoldCloudInit, Name: "blog-*", Delay: 20 * time.Second},
		{Kind: FaultHold, Unit: HoldCloudInit, Name: "blog-1", Delay: 30 * time.Second},
		{Kind: FaultHold, Unit: HoldSSHD, Name: "*-1", Delay: time.Second},
		{Kind: FaultVendorFail, Name: "shop-*"},
	}})
	want := map[string]Machine{
		"blog-1": {Holds: map[string]time.Duration{HoldCloudInit: 30 * time.Second, HoldSSHD: time.Second}},
		"blog-2": {Holds: map[string]time.Duration{HoldCloudInit: 20 * time.Second}},
		"shop-1": {Holds: map[string]time.Duration{HoldSSHD: time.Second}, VendorFail: true},
		"web-2":  {},
	}
	for name := range want {
		d, _ := e.create(name)
		e.waitActive(d.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.booted) != len(want) {
		t.Fatalf("booted %d machines, want %d", len(b.booted), len(want))
	}
	for _, m := range b.booted {
		w := want[m.Name]
		if !reflect.DeepEqual(m.Holds, w.Holds) || m.VendorFail != w.VendorFail {
			t.Errorf("%s: holds %v vendor-fail %v, want %v %v", m.Name, m.Holds, m.VendorFail, w.Holds, w.VendorFail)
		}
	}
}

func TestErroredFaults(t *testing.T) {
	t.Parallel()
	t.Run("create", func(t *testing.T) {
		e := newEnv(t, Options{Faults: []Fault{{Kind: FaultErrored, Action: "create"}}})
		d, resp := e.create("web-1")
		if a := e.waitAction(resp.Links.Actions[0].ID); a.Status != "errored" {
			t.Errorf("create action %+v", a)
		}
		if d = e.droplet(d.ID); d.Status != "new" || d.Locked || len(d.Networks.V4) != 0 {
			t.Errorf("droplet after errored create %+v", d)
		}
	})
	t.Run("assign", func(t *testing.T) {
		e := newEnv(t, Options{Faults: []Fault{{Kind: FaultErrored, Action: "assign"}}})
		d, _ := e.create("web-1")
		e.waitActive(d.ID)
		rip, _, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
		if err != nil {
			t.Fatal(err)
		}
		a, _, err := e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if a = e.waitAction(a.ID); a.Status != "errored" {
			t.Errorf("assign action %+v", a)
		}
		got, _, _ := e.do.ReservedIPs.Get(e.ctx, rip.IP)
		if got.Droplet != nil || got.Locked || e.droplet(d.ID).Locked {
			t.Errorf("after errored assign: %+v", got)
		}
		if routes, _ := e.routes.snapshot(); len(routes) != 0 {
			t.Errorf("routes %v", routes)
		}
	})
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	tests := []struct {
		name, method, body, token string
		status                    int
	}{
		{"no token", "POST", `{"kind":"fail","method":"GET","path":"/v2/account","status":500}`, "", 401},
		{"json fault", "POST", `{"kind":"fail","method":"GET","path":"/v2/account","status":500}`, testToken, 201},
		{"json list", "POST", `[{"kind":"latency","path":"/v2/sizes","delay":"1ms"},{"kind":"stuck-new","name":"x-*"}]`, testToken, 201},
		{"text", "POST", "errored=assign; GET /v2/regions#2=502", testToken, 201},
		{"bad json fault", "POST", `{"kind":"fail","path":"/v2/account","status":1000}`, testToken, 422},
		{"bad text", "POST", "GET /v2/regions#x=502", testToken, 422},
		{"list", "GET", "", testToken, 200},
	}
	for _, tt := range tests {
		status, _, body := e.raw(tt.method, "/_fleet/faults", tt.token, tt.body)
		if status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.status)
		}
	}
	_, _, body := e.raw("GET", "/_fleet/faults", testToken, "")
	var faults []Fault
	if err := json.Unmarshal([]byte(body), &faults); err != nil || len(faults) != 5 {
		t.Errorf("faults %s (%v)", body, err)
	}
	if _, resp, _ := e.do.Account.Get(e.ctx); resp.StatusCode != 500 {
		t.Errorf("injected fault: %d", resp.StatusCode)
	}
	if status, _, _ := e.raw("DELETE", "/_fleet/faults", testToken, ""); status != 204 {
		t.Errorf("delete: %d", status)
	}
	e.do.Account.Get(e.ctx)
	e.do.Droplets.List(e.ctx, &godo.ListOptions{Page: 2})
	status, _, body := e.raw("GET", "/_fleet/stats", testToken, "")
	var st Stats
	if err := json.Unmarshal([]byte(body), &st); status != 200 || err != nil {
		t.Fatalf("stats %d %s", status, body)
	}
	want := []string{"GET /v2/account 500", "GET /v2/account 200", "GET /v2/droplets?page=2 200"}
	var got []string
	for _, r := range st.Requests {
		got = append(got, r.Method+" "+r.Path+" "+strconv.Itoa(r.Status))
		if r.Time.IsZero() {
			t.Errorf("no time in %+v", r)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats %v, want %v", got, want)
	}
	if n := e.srv.Stats().Count("GET", "/v2/account"); n != 2 {
		t.Errorf("Count = %d", n)
	}
}
