package localcloud

import (
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/crypto/ssh"
	"golang.org/x/oauth2"

	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

const testToken = "dop_v1_localcloudtest"

// env is a Server behind the contract validator, with a godo client whose
// requests are validated too. Cleanup fails the test on any violation.
type env struct {
	t      *testing.T
	srv    *Server
	url    string
	v      *contract.Validator
	do     *godo.Client
	ctx    context.Context
	routes *routeLog
}

// routeLog is a MemoryBackend that records Route and Destroy calls.
type routeLog struct {
	MemoryBackend
	mu        sync.Mutex
	routes    []string
	destroyed []int
}

func (b *routeLog) Route(_ context.Context, ip, dst string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.routes = append(b.routes, ip+"->"+dst)
	return nil
}

func (b *routeLog) Destroy(_ context.Context, id int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.destroyed = append(b.destroyed, id)
	return nil
}

func (b *routeLog) snapshot() ([]string, []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.routes...), append([]int(nil), b.destroyed...)
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	return startEnv(t, opts, nil)
}

// client returns a godo client for token whose requests are validated.
func (e *env) client(token string) *godo.Client {
	base := &http.Client{Transport: e.v.Transport(http.DefaultTransport)}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	hc := oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token}))
	c, err := godo.New(hc, godo.SetBaseURL(e.url))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// raw sends a request with the test token (or none if token is "") and
// returns the status, headers and body.
func (e *env) raw(method, path, token, body string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (e *env) addKey(name string) *godo.Key {
	e.t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		e.t.Fatal(err)
	}
	k, _, err := e.do.Keys.Create(e.ctx, &godo.KeyCreateRequest{Name: name, PublicKey: string(ssh.MarshalAuthorizedKey(sp))})
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func createReq(name string, tags ...string) *godo.DropletCreateRequest {
	return &godo.DropletCreateRequest{
		Name: name, Region: "nyc3", Size: "s-1vcpu-1gb",
		Image:   godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"},
		SSHKeys: []godo.DropletCreateSSHKey{}, // never null: the contract says array
		Tags:    tags,
	}
}

func (e *env) create(name string, tags ...string) (*godo.Droplet, *godo.Response) {
	e.t.Helper()
	d, resp, err := e.do.Droplets.Create(e.ctx, createReq(name, tags...))
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return d, resp
}

func (e *env) droplet(id int) *godo.Droplet {
	e.t.Helper()
	d, _, err := e.do.Droplets.Get(e.ctx, id)
	if err != nil {
		e.t.Fatalf("get droplet %d: %v", id, err)
	}
	return d
}

// eventually polls cond every 5ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) waitActive(id int) *godo.Droplet {
	e.t.Helper()
	var d *godo.Droplet
	eventually(e.t, 15*time.Second, fmt.Sprintf("droplet %d active", id), func() bool {
		d = e.droplet(id)
		return d.Status == "active"
	})
	return d
}

func (e *env) waitAction(id int) *godo.Action {
	e.t.Helper()
	var a *godo.Action
	eventually(e.t, 15*time.Second, fmt.Sprintf("action %d done", id), func() bool {
		var err error
		a, _, err = e.do.Actions.Get(e.ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		return a.Status != "in-progress"
	})
	return a
}

// apiError returns the godo error response of err, failing if there is none.
func apiError(t *testing.T, err error) *godo.ErrorResponse {
	t.Helper()
	var er *godo.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("want an API error, got %v", err)
	}
	return er
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "dop_v1_wrong", http.StatusUnauthorized},
		{"right token", testToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, h, body := e.raw("GET", "/v2/account", tt.token, "")
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, body)
			}
			for _, k := range []string{"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id"} {
				if h.Get(k) == "" {
					t.Errorf("missing header %s", k)
				}
			}
			if status != http.StatusUnauthorized {
				return
			}
			var eb struct{ ID, Message, RequestID string }
			json.Unmarshal([]byte(body), &eb)
			var raw map[string]any
			json.Unmarshal([]byte(body), &raw)
			if raw["id"] != "unauthorized" || raw["message"] != "Unable to authenticate you" || raw["request_id"] != h.Get("x-request-id") {
				t.Errorf("401 body %s", body)
			}
		})
	}
	// godo sees the same.
	_, _, err := e.client("nope").Account.Get(e.ctx)
	if er := apiError(t, err); er.Response.StatusCode != 401 || er.Message != "Unable to authenticate you" {
		t.Errorf("godo: %v", err)
	}
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	acct, _, err := e.do.Account.Get(e.ctx)
	if err != nil || acct.Status != "active" || acct.DropletLimit != dropletLimit {
		t.Fatalf("account %+v, %v", acct, err)
	}
	regions, _, err := e.do.Regions.List(e.ctx, nil)
	if err != nil || len(regions) < 4 {
		t.Fatalf("regions %v, %v", regions, err)
	}
	sizes, _, err := e.do.Sizes.List(e.ctx, nil)
	if err != nil || len(sizes) < 3 {
		t.Fatalf("sizes %v, %v", sizes, err)
	}
	for _, want := range []string{"s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-4gb"} {
		found := false
		for _, s := range sizes {
			found = found || s.Slug == want
		}
		if !found {
			t.Errorf("size %s missing", want)
		}
	}
}

func TestSSHKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	pub, _, _ := ed25519.GenerateKey(nil)
	sp, _ := ssh.NewPublicKey(pub)
	line := string(ssh.MarshalAuthorizedKey(sp))
	sum := md5.Sum(sp.Marshal())
	var hexes []string
	for _, b := range sum {
		hexes = append(hexes, fmt.Sprintf("%02x", b))
	}
	wantFP := strings.Join(hexes, ":")

	k, resp, err := e.do.Keys.Create(e.ctx, &godo.KeyCreateRequest{Name: "laptop", PublicKey: line})
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %v", err)
	}
	if k.Fingerprint != wantFP {
		t.Errorf("fingerprint %s, want %s", k.Fingerprint, wantFP)
	}
	tests := []struct {
		name string
		req  godo.KeyCreateRequest
		want string
	}{
		{"duplicate", godo.KeyCreateRequest{Name: "again", PublicKey: line}, "already in use"},
		{"garbage", godo.KeyCreateRequest{Name: "bad", PublicKey: "ssh-ed25519 notbase64"}, "Key invalid"},
		{"no name", godo.KeyCreateRequest{Name: "", PublicKey: line}, "blank"},
	}
	for _, tt := range tests {
		_, _, err := e.do.Keys.Create(e.ctx, &tt.req)
		if er := apiError(t, err); er.Response.StatusCode != 422 || !strings.Contains(er.Message, tt.want) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if got, _, err := e.do.Keys.GetByFingerprint(e.ctx, wantFP); err != nil || got.ID != k.ID {
		t.Errorf("by fingerprint: %v %v", got, err)
	}
	if got, _, err := e.do.Keys.GetByID(e.ctx, k.ID); err != nil || got.PublicKey != strings.TrimSpace(line) {
		t.Errorf("by id: %v %v", got, err)
	}
	keys, _, err := e.do.Keys.List(e.ctx, nil)
	if err != nil || len(keys) != 1 {
		t.Errorf("list: %v %v", keys, err)
	}
	if _, err := e.do.Keys.DeleteByFingerprint(e.ctx, wantFP); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.do.Keys.GetByID(e.ctx, k.ID); apiError(t, err).Response.StatusCode != 404 {
		t.Errorf("after delete: %v", err)
	}
}

func TestDropletLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{BootDelay: time.Second})
	key := e.addKey("deploy")
	req := createReq("web-1", "fleet:demo", "fleet-version:v1_2_0")
	req.SSHKeys = []godo.DropletCreateSSHKey{{ID: key.ID}}
	req.UserData = "#cloud-config\n"
	d, resp, err := e.do.Droplets.Create(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || d.Status != "new" || !d.Locked || len(d.Networks.V4) != 0 {
		t.Fatalf("created: status %d, droplet %+v", resp.StatusCode, d)
	}
	if len(resp.Links.Actions) != 1 || resp.Links.Actions[0].Rel != "create" || !strings.HasPrefix(resp.Links.Actions[0].HREF, e.url+"/v2/actions/") {
		t.Fatalf("links %+v", resp.Links)
	}
	actionID := resp.Links.Actions[0].ID
	a, _, err := e.do.Actions.Get(e.ctx, actionID)
	if err != nil || a.Status != "in-progress" || a.Type != "create" || a.ResourceID != d.ID || a.ResourceType != "droplet" {
		t.Fatalf("create action %+v, %v", a, err)
	}
	if ip, err := e.droplet(d.ID).PublicIPv4(); err != nil || ip != "" {
		t.Errorf("public IPv4 before active: %q %v", ip, err)
	}

	d = e.waitActive(d.ID)
	if d.Locked {
		t.Error("active droplet still locked")
	}
	ip, _ := d.PublicIPv4()
	if ip != "127.0.0.2" {
		t.Errorf("public IPv4 %q, want 127.0.0.2", ip)
	}
	if got := strings.Join(d.Tags, ","); got != "fleet:demo,fleet-version:v1_2_0" {
		t.Errorf("tags %q", got)
	}
	if a := e.waitAction(actionID); a.Status != "completed" || a.CompletedAt == nil {
		t.Errorf("create action %+v", a)
	}
	acts, _, err := e.do.Droplets.Actions(e.ctx, d.ID, nil)
	if err != nil || len(acts) != 1 || acts[0].ID != actionID {
		t.Errorf("droplet actions %+v %v", acts, err)
	}
	all, _, err := e.do.Actions.List(e.ctx, nil)
	if err != nil || len(all) != 1 {
		t.Errorf("actions %+v %v", all, err)
	}
	// Tags were created implicitly.
	if tg, _, err := e.do.Tags.Get(e.ctx, "fleet:demo"); err != nil || tg.Resources.Count != 1 || tg.Resources.Droplets.Count != 1 {
		t.Errorf("tag %+v %v", tg, err)
	}

	if _, err := e.do.Droplets.Delete(e.ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.do.Droplets.Get(e.ctx, d.ID); apiError(t, err).Response.StatusCode != 404 {
		t.Errorf("get after delete: %v", err)
	}
	if _, destroyed := e.routes.snapshot(); len(destroyed) != 1 || destroyed[0] != d.ID {
		t.Errorf("destroyed %v", destroyed)
	}
	// The address is free again.
	d2, _ := e.create("web-2")
	if ip, _ := e.waitActive(d2.ID).PublicIPv4(); ip != "127.0.0.2" {
		t.Errorf("reused address %q", ip)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	key := e.addKey("k")
	tests := []struct {
		name   string
		mutate func(*godo.DropletCreateRequest)
		want   string
	}{
		{"unknown region", func(r *godo.DropletCreateRequest) { r.Region = "mars1" }, "region"},
		{"unknown size", func(r *godo.DropletCreateRequest) { r.Size = "s-64vcpu-1tb" }, "size"},
		{"no image", func(r *godo.DropletCreateRequest) { r.Image = godo.DropletCreateImage{} }, "image"},
		{"unknown ssh key id", func(r *godo.DropletCreateRequest) { r.SSHKeys = []godo.DropletCreateSSHKey{{ID: 7}} }, "SSH key"},
		{"unknown fingerprint", func(r *godo.DropletCreateRequest) {
			r.SSHKeys = []godo.DropletCreateSSHKey{{Fingerprint: "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"}}
		}, "SSH key"},
		{"bad tag", func(r *godo.DropletCreateRequest) { r.Tags = []string{"fleet-version:1.2.0"} }, "Tag"},
		{"user_data too big", func(r *godo.DropletCreateRequest) { r.UserData = strings.Repeat("x", 64<<10+1) }, "64 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := createReq("ok")
			tt.mutate(req)
			_, _, err := e.do.Droplets.Create(e.ctx, req)
			er := apiError(t, err)
			if er.Response.StatusCode != 422 || !strings.Contains(er.Message, tt.want) {
				t.Errorf("got %d %q, want 422 mentioning %q", er.Response.StatusCode, er.Message, tt.want)
			}
		})
	}
	// And the valid variants: key by id and by fingerprint, max user_data.
	req := createReq("ok", "a_b:c-d")
	req.SSHKeys = []godo.DropletCreateSSHKey{{ID: key.ID}, {Fingerprint: key.Fingerprint}}
	req.UserData = strings.Repeat("x", 64<<10)
	if _, _, err := e.do.Droplets.Create(e.ctx, req); err != nil {
		t.Errorf("valid create: %v", err)
	}
	ds, _, _ := e.do.Droplets.List(e.ctx, nil)
	if len(ds) != 1 {
		t.Errorf("%d droplets, want only the valid one", len(ds))
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	for i := range 45 {
		e.create(fmt.Sprintf("app-%02d", i), "fleet:paged")
	}
	e.create("other") // not tagged
	var names []string
	opt := &godo.ListOptions{Page: 1, PerPage: 20}
	pages := 0
	for {
		ds, resp, err := e.do.Droplets.ListByTag(e.ctx, "fleet:paged", opt)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if resp.Meta == nil || resp.Meta.Total != 45 {
			t.Fatalf("meta %+v", resp.Meta)
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil || cur != opt.Page {
			t.Errorf("current page %d (%v), want %d", cur, err, opt.Page)
		}
		want := map[int]int{1: 20, 2: 20, 3: 5}[opt.Page]
		if len(ds) != want {
			t.Errorf("page %d has %d droplets, want %d", opt.Page, len(ds), want)
		}
		p := resp.Links.Pages
		switch opt.Page {
		case 1:
			if p.First != "" || p.Prev != "" || p.Next == "" || p.Last != e.url+"/v2/droplets?page=3&per_page=20&tag_name=fleet%3Apaged" {
				t.Errorf("page 1 links %+v", p)
			}
		case 2:
			if p.First != e.url+"/v2/droplets?page=1&per_page=20&tag_name=fleet%3Apaged" || p.Prev == "" || p.Next == "" {
				t.Errorf("page 2 links %+v", p)
			}
		case 3:
			if p.Next != "" || p.Last != "" || p.Prev == "" {
				t.Errorf("page 3 links %+v", p)
			}
		}
		for _, d := range ds {
			names = append(names, d.Name)
		}
		if resp.Links.IsLastPage() {
			break
		}
		opt.Page++
	}
	if pages != 3 || len(names) != 45 || names[0] != "app-00" || names[44] != "app-44" {
		t.Errorf("%d pages, %d droplets: %v", pages, len(names), names)
	}
	// A single page has no links.pages.
	_, resp, err := e.do.Droplets.List(e.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil || resp.Links.Pages != nil || resp.Meta.Total != 46 {
		t.Errorf("single page: links %+v meta %+v err %v", resp.Links, resp.Meta, err)
	}
}

func TestDeleteByTag(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	for i := range 3 {
		e.create(fmt.Sprintf("old-%d", i), "fleet:old")
	}
	keep, _ := e.create("keep", "fleet:keep")
	if _, err := e.do.Droplets.DeleteByTag(e.ctx, "fleet:old"); err != nil {
		t.Fatal(err)
	}
	ds, _, err := e.do.Droplets.List(e.ctx, nil)
	if err != nil || len(ds) != 1 || ds[0].ID != keep.ID {
		t.Fatalf("left %v, %v", ds, err)
	}
	if _, destroyed := e.routes.snapshot(); len(destroyed) != 3 {
		t.Errorf("destroyed %v", destroyed)
	}
	// An unknown tag deletes nothing.
	if resp, err := e.do.Droplets.DeleteByTag(e.ctx, "fleet:none"); err != nil || resp.StatusCode != 204 {
		t.Errorf("unknown tag: %v", err)
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	d1, _ := e.create("a")
	d2, _ := e.create("b")
	if _, _, err := e.do.Tags.Create(e.ctx, &godo.TagCreateRequest{Name: "fleet-promoted"}); err != nil {
		t.Fatal(err)
	}
	res := func(ids ...int) []godo.Resource {
		var out []godo.Resource
		for _, id := range ids {
			out = append(out, godo.Resource{ID: fmt.Sprint(id), Type: godo.DropletResourceType})
		}
		return out
	}
	steps := []struct {
		name  string
		do    func() (*godo.Response, error)
		count int
	}{
		{"tag both", func() (*godo.Response, error) {
			return e.do.Tags.TagResources(e.ctx, "fleet-promoted", &godo.TagResourcesRequest{Resources: res(d1.ID, d2.ID)})
		}, 2},
		{"tag again", func() (*godo.Response, error) {
			return e.do.Tags.TagResources(e.ctx, "fleet-promoted", &godo.TagResourcesRequest{Resources: res(d1.ID)})
		}, 2},
		{"untag one", func() (*godo.Response, error) {
			return e.do.Tags.UntagResources(e.ctx, "fleet-promoted", &godo.UntagResourcesRequest{Resources: res(d2.ID)})
		}, 1},
	}
	for _, st := range steps {
		resp, err := st.do()
		if err != nil || resp.StatusCode != 204 {
			t.Fatalf("%s: %v", st.name, err)
		}
		tg, _, err := e.do.Tags.Get(e.ctx, "fleet-promoted")
		if err != nil || tg.Resources.Count != st.count {
			t.Errorf("%s: tag %+v, %v", st.name, tg, err)
		}
	}
	ds, _, _ := e.do.Droplets.ListByTag(e.ctx, "fleet-promoted", nil)
	if len(ds) != 1 || ds[0].ID != d1.ID {
		t.Errorf("by tag: %v", ds)
	}
	tags, _, err := e.do.Tags.List(e.ctx, nil)
	if err != nil || len(tags) != 1 {
		t.Errorf("tags %v %v", tags, err)
	}
	for name, call := range map[string]func() (*godo.Response, error){
		"unknown tag": func() (*godo.Response, error) {
			return e.do.Tags.TagResources(e.ctx, "nope", &godo.TagResourcesRequest{Resources: res(d1.ID)})
		},
		"unknown droplet": func() (*godo.Response, error) {
			return e.do.Tags.TagResources(e.ctx, "fleet-promoted", &godo.TagResourcesRequest{Resources: res(42)})
		},
	} {
		if _, err := call(); apiError(t, err).Response.StatusCode != 404 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := e.do.Tags.Delete(e.ctx, "fleet-promoted"); err != nil {
		t.Fatal(err)
	}
	if got := e.droplet(d1.ID).Tags; len(got) != 0 {
		t.Errorf("tags after tag delete: %v", got)
	}
}

func TestReservedIP(t *testing.T) {
	t.Parallel()
	// The pending-event checks must land while the assign runs.
	e := newEnv(t, Options{ActionDelay: time.Second})
	d1, _ := e.create("blue")
	d2, _ := e.create("green")
	d1 = e.waitActive(d1.ID)
	d2 = e.waitActive(d2.ID)
	ip1, _ := d1.PublicIPv4()
	ip2, _ := d2.PublicIPv4()

	rip, resp, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil || resp.StatusCode != 202 || rip.IP != "127.0.0.200" || rip.Droplet != nil || len(resp.Links.Actions) != 1 {
		t.Fatalf("create: %+v %+v %v", rip, resp.Links, err)
	}

	a, resp, err := e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d1.ID)
	if err != nil || resp.StatusCode != 201 || a.Status != "in-progress" || a.Type != "assign_ip" {
		t.Fatalf("assign: %+v %v", a, err)
	}
	// In progress: nothing assigned yet, everything involved locked.
	got, _, _ := e.do.ReservedIPs.Get(e.ctx, rip.IP)
	if got.Droplet != nil || !got.Locked || !e.droplet(d1.ID).Locked {
		t.Errorf("while assigning: %+v", got)
	}
	pending := []struct {
		name string
		call func() error
	}{
		{"assign same ip again", func() error { _, _, err := e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d2.ID); return err }},
		{"unassign", func() error { _, _, err := e.do.ReservedIPActions.Unassign(e.ctx, rip.IP); return err }},
	}
	for _, p := range pending {
		er := apiError(t, p.call())
		if er.Response.StatusCode != 422 || !strings.Contains(er.Message, "pending event") {
			t.Errorf("%s: %d %q", p.name, er.Response.StatusCode, er.Message)
		}
	}
	// A second reserved IP cannot target the locked droplet either.
	rip2, _, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = e.do.ReservedIPActions.Assign(e.ctx, rip2.IP, d1.ID)
	if er := apiError(t, err); er.Response.StatusCode != 422 || er.Message != "Droplet already has a pending event." {
		t.Errorf("assign to locked droplet: %v", err)
	}

	eventually(t, 15*time.Second, "assign completed", func() bool {
		a, _, err = e.do.ReservedIPActions.Get(e.ctx, rip.IP, a.ID)
		return err == nil && a.Status == "completed"
	})
	got, _, _ = e.do.ReservedIPs.Get(e.ctx, rip.IP)
	if got.Droplet == nil || got.Droplet.ID != d1.ID || got.Locked || e.droplet(d1.ID).Locked {
		t.Errorf("after assign: %+v", got)
	}

	// Move it to green, then delete green: the IP is unassigned.
	a, _, err = e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !e.droplet(d1.ID).Locked || !e.droplet(d2.ID).Locked {
		t.Error("both droplets should be locked while the IP moves")
	}
	e.waitAction(a.ID)
	acts, _, err := e.do.ReservedIPActions.List(e.ctx, rip.IP, nil)
	if err != nil || len(acts) != 3 { // reserve_ip, assign_ip, assign_ip
		t.Errorf("ip actions %d %v", len(acts), err)
	}
	if _, err := e.do.Droplets.Delete(e.ctx, d2.ID); err != nil {
		t.Fatal(err)
	}
	if got, _, _ = e.do.ReservedIPs.Get(e.ctx, rip.IP); got.Droplet != nil {
		t.Errorf("after deleting its droplet: %+v", got.Droplet)
	}

	// Created straight onto a droplet, then unassigned.
	rip3, resp, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{DropletID: d1.ID})
	if err != nil || len(resp.Links.Actions) != 1 || resp.Links.Actions[0].Rel != "assign_ip" {
		t.Fatalf("create on droplet: %+v %v", resp.Links, err)
	}
	e.waitAction(resp.Links.Actions[0].ID)
	a, _, err = e.do.ReservedIPActions.Unassign(e.ctx, rip3.IP)
	if err != nil {
		t.Fatal(err)
	}
	e.waitAction(a.ID)
	if got, _, _ = e.do.ReservedIPs.Get(e.ctx, rip3.IP); got.Droplet != nil {
		t.Errorf("after unassign: %+v", got.Droplet)
	}
	ips, _, err := e.do.ReservedIPs.List(e.ctx, nil)
	if err != nil || len(ips) != 3 {
		t.Errorf("list %v %v", ips, err)
	}
	if _, err := e.do.ReservedIPs.Delete(e.ctx, rip3.IP); err != nil {
		t.Error(err)
	}

	routes, _ := e.routes.snapshot()
	want := []string{
		"127.0.0.200->" + ip1, "127.0.0.200->" + ip2, "127.0.0.200->",
		"127.0.0.202->" + ip1, "127.0.0.202->",
	}
	if strings.Join(routes, " ") != strings.Join(want, " ") {
		t.Errorf("routes %v, want %v", routes, want)
	}
}

// A reserved IP belongs to a region: DigitalOcean assigns it only to a
// droplet of that region (422 otherwise, nothing changes), and one created
// onto a droplet takes the droplet's region.
func TestReservedIPRegion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	req := createReq("fra-1")
	req.Region = "fra1"
	d, _, err := e.do.Droplets.Create(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d = e.waitActive(d.ID)
	rip, _, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d.ID)
	er := apiError(t, err)
	if er.Response.StatusCode != 422 || !strings.Contains(er.Message, "region") || !strings.Contains(er.Message, "nyc3") || !strings.Contains(er.Message, "fra1") {
		t.Errorf("cross-region assign: %d %q, want a 422 naming both regions", er.Response.StatusCode, er.Message)
	}
	if got, _, _ := e.do.ReservedIPs.Get(e.ctx, rip.IP); got.Droplet != nil || got.Locked || e.droplet(d.ID).Locked {
		t.Errorf("a refused assign changed something: %+v", got)
	}
	if acts, _, _ := e.do.ReservedIPActions.List(e.ctx, rip.IP, nil); len(acts) != 1 {
		t.Errorf("%d actions on the IP, want only reserve_ip", len(acts))
	}

	made, resp, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	if made.Region == nil || made.Region.Slug != "fra1" {
		t.Errorf("created onto a fra1 droplet: region %+v", made.Region)
	}
	e.waitAction(resp.Links.Actions[0].ID)
	if got, _, _ := e.do.ReservedIPs.Get(e.ctx, made.IP); got.Droplet == nil || got.Droplet.ID != d.ID || got.Region.Slug != "fra1" {
		t.Errorf("after the create's assign: %+v", got)
	}
}

// A droplet lists its reserved IP among its public v4 networks, as
// DigitalOcean does; the order is not documented, and here it depends on
// the droplet ID's parity (even: the reserved IP first), so a client that
// takes "the first public address" is wrong for half the droplets.
func TestReservedIPInNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	d1, _ := e.create("one")
	d2, _ := e.create("two")
	for _, d := range []*godo.Droplet{d1, d2} {
		d = e.waitActive(d.ID)
		own, _ := d.PublicIPv4()
		rip, resp, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
		if err != nil {
			t.Fatal(err)
		}
		e.waitAction(resp.Links.Actions[0].ID)
		got := e.droplet(d.ID)
		var public []string
		for _, n := range got.Networks.V4 {
			if n.Type == "public" {
				public = append(public, n.IPAddress)
				if n.Netmask == "" || n.Gateway == "" {
					t.Errorf("droplet %d: network %+v without netmask or gateway", d.ID, n)
				}
			}
		}
		want := []string{own, rip.IP}
		if d.ID%2 == 0 {
			want = []string{rip.IP, own}
		}
		if strings.Join(public, " ") != strings.Join(want, " ") {
			t.Errorf("droplet %d: public v4 %v, want %v", d.ID, public, want)
		}
		// The same droplet inside the reserved IP's answer lists it too.
		r, _, _ := e.do.ReservedIPs.Get(e.ctx, rip.IP)
		if r.Droplet == nil || len(r.Droplet.Networks.V4) != 3 {
			t.Errorf("reserved IP %s: droplet %+v, want its three v4 networks", rip.IP, r.Droplet)
		}
	}
}

func TestAssignToBootingDroplet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{BootDelay: time.Hour})
	d, _ := e.create("slow")
	rip, _, err := e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = e.do.ReservedIPActions.Assign(e.ctx, rip.IP, d.ID)
	if er := apiError(t, err); er.Response.StatusCode != 422 || !strings.Contains(er.Message, "pending event") {
		t.Errorf("assign to a new droplet: %v", err)
	}
	_, _, err = e.do.ReservedIPs.Create(e.ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if er := apiError(t, err); er.Response.StatusCode != 422 || !strings.Contains(er.Message, "pending event") {
		t.Errorf("create on a new droplet: %v", err)
	}
	// Close must not wait for the hour-long boot.
	start := time.Now()
	e.srv.Close()
	if time.Since(start) > 10*time.Second {
		t.Errorf("Close took %v", time.Since(start))
	}
}

// The hourly limit is DigitalOcean's: every answer carries the
// ratelimit-* headers; once the budget is spent the 429 has no
// Retry-After, remaining is 0 and reset is when the oldest request
// expires (each request counts for one window after it was made).
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{RateLimit: 3})
	first := time.Now()
	for i := range 3 {
		_, resp, err := e.do.Account.Get(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rate.Limit != 3 || resp.Rate.Remaining != 2-i || resp.Rate.Reset.Before(time.Now()) {
			t.Errorf("request %d: rate %+v", i, resp.Rate)
		}
	}
	_, _, err := e.do.Account.Get(e.ctx)
	er := apiError(t, err)
	if er.Response.StatusCode != 429 || er.Message != "API Rate limit exceeded." {
		t.Fatalf("want DigitalOcean's 429, got %v", err)
	}
	h := er.Response.Header
	if ra := h.Get("Retry-After"); ra != "" {
		t.Errorf("hourly 429 with Retry-After %q: DigitalOcean sends it only on a burst 429", ra)
	}
	if h.Get("ratelimit-remaining") != "0" || h.Get("ratelimit-limit") != "3" {
		t.Errorf("limit %q remaining %q, want 3 and 0", h.Get("ratelimit-limit"), h.Get("ratelimit-remaining"))
	}
	reset, _ := strconv.ParseInt(h.Get("ratelimit-reset"), 10, 64)
	if want := first.Add(time.Hour); time.Unix(reset, 0).Before(want.Truncate(time.Second)) || time.Unix(reset, 0).After(want.Add(3*time.Second)) {
		t.Errorf("ratelimit-reset %s, want when the first request expires (%s)", time.Unix(reset, 0).UTC(), want.UTC())
	}
	// Another token has its own budget... but this server knows one token;
	// the unauthenticated request is not counted and still gets headers.
	status, h, _ := e.raw("GET", "/v2/account", "", "")
	if status != 401 || h.Get("ratelimit-limit") != "3" {
		t.Errorf("401 after limit: %d %v", status, h)
	}
}

// Each request has its own timer: the budget comes back one request at a
// time, not all at once at the end of a fixed window.
func TestRateWindowSlides(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	e := newEnv(t, Options{RateLimit: 2, RateWindow: window})
	get := func() int {
		_, resp, err := e.do.Account.Get(e.ctx)
		if err != nil {
			return apiError(t, err).Response.StatusCode
		}
		return resp.StatusCode
	}
	if c := get(); c != 200 {
		t.Fatalf("first: %d", c)
	}
	// After the answer: the server counted the first request before t0.
	t0 := time.Now()
	time.Sleep(window / 2)
	if c := get(); c != 200 {
		t.Fatalf("second: %d", c)
	}
	if c := get(); c != 429 {
		t.Fatalf("third, within the window: %d, want 429", c)
	}
	time.Sleep(time.Until(t0.Add(window + 50*time.Millisecond)))
	if c := get(); c != 200 {
		t.Fatalf("once the first request expired: %d, want 200", c)
	}
	if c := get(); c != 429 {
		t.Fatalf("the second request still counts: %d, want 429", c)
	}
}

// The burst limit (250 a minute on DigitalOcean) answers 429 with
// Retry-After: the seconds until a request of the burst window expires.
func TestBurstLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{BurstLimit: 3, BurstWindow: 1500 * time.Millisecond})
	for i := range 3 {
		_, resp, err := e.do.Account.Get(e.ctx)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.Rate.Limit != 5000 || resp.Rate.Remaining != 4999-i {
			t.Errorf("request %d: rate %+v, want the hourly budget", i, resp.Rate)
		}
	}
	start := time.Now()
	_, _, err := e.do.Account.Get(e.ctx)
	er := apiError(t, err)
	if er.Response.StatusCode != 429 || er.Message != "API Rate limit exceeded." {
		t.Fatalf("want 429, got %v", err)
	}
	h := er.Response.Header
	if ra := h.Get("Retry-After"); ra != "1" && ra != "2" {
		t.Errorf("Retry-After %q, want the seconds left of the burst window (1 or 2)", ra)
	}
	if h.Get("ratelimit-remaining") != "0" || h.Get("ratelimit-limit") != "5000" {
		t.Errorf("limit %q remaining %q, want 5000 and 0 (as DigitalOcean's sample)", h.Get("ratelimit-limit"), h.Get("ratelimit-remaining"))
	}
	time.Sleep(time.Until(start.Add(1600 * time.Millisecond)))
	if _, _, err := e.do.Account.Get(e.ctx); err != nil {
		t.Errorf("after the burst window: %v", err)
	}
}

// takenBackend says some addresses belong to someone else.
type takenBackend struct {
	MemoryBackend
	taken map[string]bool
}

func (b takenBackend) AddressTaken(ip string) bool { return b.taken[ip] }

func TestAllocationSkipsTakenAddresses(t *testing.T) {
	e := newEnv(t, Options{Backend: takenBackend{taken: map[string]bool{"127.0.0.2": true, "127.0.0.3": true}}})
	d, _ := e.create("web-1")
	got, _, err := e.do.Droplets.Get(e.ctx, d.ID)
	for err == nil && got.Status != "active" {
		time.Sleep(10 * time.Millisecond)
		got, _, err = e.do.Droplets.Get(e.ctx, d.ID)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ip, _ := got.PublicIPv4(); ip != "127.0.0.4" {
		t.Fatalf("droplet got %s, want 127.0.0.4 (the first address nobody else holds)", ip)
	}
}
