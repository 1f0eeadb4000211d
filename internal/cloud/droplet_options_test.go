package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

// optionsEnv is a client against the in-process API (contract-checked)
// that records the bodies of droplet creates.
func optionsEnv(t *testing.T) (*Client, func() []map[string]json.RawMessage) {
	t.Helper()
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localcloud.NewServer(localcloud.Options{Token: "t", BootDelay: 20 * time.Millisecond, ActionDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bodies []map[string]json.RawMessage
	h := v.Middleware(srv.Handler())
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v2/droplets" {
			b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("create body: %v", err)
			}
			mu.Lock()
			bodies = append(bodies, m)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		if vs := v.Violations(); len(vs) > 0 {
			t.Errorf("OpenAPI contract violations:\n%s", strings.Join(vs, "\n"))
		}
	})
	c, err := New(Config{Token: "t", APIURL: hs.URL, PollInterval: 10 * time.Millisecond, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []map[string]json.RawMessage {
		mu.Lock()
		defer mu.Unlock()
		return bodies
	}
}

// Unset options are left out of the create request (DigitalOcean's
// defaults); set ones are sent as they are, and the droplet shows them.
func TestCreateDropletOptions(t *testing.T) {
	yes, no := true, false
	c, bodies := optionsEnv(t)
	ctx := context.Background()
	vpcs, _, err := c.api.VPCs.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	var nyc3, ams3 string
	for _, v := range vpcs {
		if !v.Default {
			t.Errorf("VPC %+v is not a default one", v)
		}
		switch v.RegionSlug {
		case "nyc3":
			nyc3 = v.ID
		case "ams3":
			ams3 = v.ID
		}
	}
	if nyc3 == "" || ams3 == "" || nyc3 == ams3 {
		t.Fatalf("default VPCs: %+v", vpcs)
	}
	if v, _, err := c.api.VPCs.Get(ctx, nyc3); err != nil || v.ID != nyc3 || v.RegionSlug != "nyc3" || v.IPRange != "10.116.0.0/20" {
		t.Errorf("GET the nyc3 VPC: %+v %v", v, err)
	}
	if _, _, err := c.api.VPCs.Get(ctx, "760e09ef-dc84-11e8-981e-3cfdfeaae000"); err == nil {
		t.Error("GET of an unknown VPC succeeded")
	}
	for i, tc := range []struct {
		name     string
		req      CreateRequest
		sent     map[string]string // JSON of each option sent; absent: left out
		features []string
		vpc      string
		v6       bool
	}{
		{name: "unset", sent: map[string]string{}, features: []string{"droplet_agent", "private_networking"}, vpc: nyc3},
		{name: "all on", req: CreateRequest{Monitoring: &yes, IPv6: &yes, Backups: &yes, VPCUUID: nyc3},
			sent:     map[string]string{"monitoring": "true", "ipv6": "true", "backups": "true", "vpc_uuid": `"` + nyc3 + `"`},
			features: []string{"droplet_agent", "private_networking", "monitoring", "ipv6", "backups"}, vpc: nyc3, v6: true},
		{name: "all off", req: CreateRequest{Monitoring: &no, IPv6: &no, Backups: &no},
			sent:     map[string]string{"monitoring": "false", "ipv6": "false", "backups": "false"},
			features: []string{"droplet_agent", "private_networking"}, vpc: nyc3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Name, req.Region, req.Size, req.Image = "web-"+tc.name[:3], "nyc3", "s-1vcpu-1gb", "debian-13-x64"
			req.DeployTag = "fleet-deploy:opt" + string(rune('a'+i))
			d, action, err := c.CreateDroplet(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitReady(ctx, d, action, quick); err != nil {
				t.Fatal(err)
			}
			body := bodies()[len(bodies())-1]
			for _, k := range []string{"monitoring", "ipv6", "backups", "vpc_uuid"} {
				got, ok := body[k]
				want, wantOK := tc.sent[k]
				if ok != wantOK || ok && string(got) != want {
					t.Errorf("%s sent as %s (present %v), want %s (present %v)", k, got, ok, want, wantOK)
				}
			}
			g, _, err := c.api.Droplets.Get(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(g.Features, " ") != strings.Join(tc.features, " ") {
				t.Errorf("features %q, want %q", g.Features, tc.features)
			}
			if g.VPCUUID != tc.vpc {
				t.Errorf("vpc_uuid %q, want %q", g.VPCUUID, tc.vpc)
			}
			if v6, _ := g.PublicIPv6(); (v6 != "") != tc.v6 {
				t.Errorf("public IPv6 %q, want one: %v", v6, tc.v6)
			}
		})
	}
	for _, tc := range []struct{ name, vpc string }{
		{"unknown VPC", "760e09ef-dc84-11e8-981e-3cfdfeaae000"},
		{"VPC of another region", ams3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.CreateDroplet(ctx, CreateRequest{Name: "web-vpc", Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: "debian-13-x64", DeployTag: "fleet-deploy:vpc", VPCUUID: tc.vpc})
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "invalid VPC") {
				t.Errorf("create in %s: %v, want DigitalOcean's 422", tc.vpc, err)
			}
		})
	}
}
