package deploy

import (
	"context"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// listCloud answers only the reads State makes.
type listCloud struct {
	cloud.Cloud
	droplets []cloud.Droplet
	ips      []cloud.ReservedIP
}

func (c *listCloud) ListByTag(_ context.Context, tag string) ([]cloud.Droplet, error) {
	var out []cloud.Droplet
	for _, d := range c.droplets {
		if d.HasTag(tag) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (c *listCloud) ListReservedIPs(context.Context) ([]cloud.ReservedIP, error) { return c.ips, nil }

func (c *listCloud) ReservedIP(_ context.Context, ip string) (*cloud.ReservedIP, error) {
	for i := range c.ips {
		if c.ips[i].IP == ip {
			return &c.ips[i], nil
		}
	}
	return nil, &cloud.APIError{Status: 404}
}

func droplet(id int, version string, age time.Duration, tags ...string) cloud.Droplet {
	return cloud.Droplet{
		ID: id, Name: spec.DropletName("blog", version, "abc123"), Status: "active",
		Tags:      append([]string{ProjectTag("blog"), VersionTag(version)}, tags...),
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-age),
	}
}

func TestStateRoles(t *testing.T) {
	other := droplet(99, "v9.9.9", 0)
	other.Tags = []string{ProjectTag("shop"), VersionTag("v9.9.9")}
	tests := []struct {
		name       string
		reservedIP string
		droplets   []cloud.Droplet
		ips        []cloud.ReservedIP
		want       map[int]Role
		wantIP     string
		wantOrder  []int
	}{
		{
			name:     "fresh candidate, no IP yet",
			droplets: []cloud.Droplet{droplet(1, "v1.0.0", time.Hour)},
			want:     map[int]Role{1: RoleCandidate},
		},
		{
			name:     "live, previous, candidate, failed",
			droplets: []cloud.Droplet{droplet(1, "v1.0.0", 4*time.Hour, TagPromoted), droplet(2, "v1.1.0", 3*time.Hour, TagPromoted), droplet(3, "v1.2.0", 2*time.Hour, TagFailed), droplet(4, "v1.3.0", time.Hour)},
			ips:      []cloud.ReservedIP{{IP: "203.0.113.9"}, {IP: "203.0.113.10", DropletID: 2}},
			want:     map[int]Role{1: RolePrevious, 2: RoleLive, 3: RoleFailed, 4: RoleCandidate},
			wantIP:   "203.0.113.10", wantOrder: []int{4, 3, 2, 1},
		},
		{
			name:     "the IP decides live, even against a failed tag",
			droplets: []cloud.Droplet{droplet(1, "v1.0.0", 2*time.Hour, TagPromoted, TagFailed), droplet(2, "v1.1.0", time.Hour, TagPromoted)},
			ips:      []cloud.ReservedIP{{IP: "203.0.113.10", DropletID: 1}},
			want:     map[int]Role{1: RoleLive, 2: RolePrevious},
			wantIP:   "203.0.113.10",
		},
		{
			name:     "auto ignores an IP held by another project",
			droplets: []cloud.Droplet{droplet(1, "v1.0.0", time.Hour, TagPromoted), other},
			ips:      []cloud.ReservedIP{{IP: "203.0.113.10", DropletID: 99}},
			want:     map[int]Role{1: RolePrevious},
		},
		{
			name:       "a literal reserved IP, unassigned",
			reservedIP: "203.0.113.10",
			droplets:   []cloud.Droplet{droplet(1, "v1.0.0", time.Hour, TagPromoted)},
			ips:        []cloud.ReservedIP{{IP: "203.0.113.10"}},
			want:       map[int]Role{1: RolePrevious},
			wantIP:     "203.0.113.10",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip := tt.reservedIP
			if ip == "" {
				ip = "auto"
			}
			d := &Deployer{Cloud: &listCloud{droplets: tt.droplets, ips: tt.ips}, Spec: &spec.Spec{Project: "blog", ReservedIP: ip}}
			st, err := d.State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := map[int]Role{}
			var order []int
			for _, m := range st.Members {
				got[m.ID] = m.Role
				order = append(order, m.ID)
				if m.Version == "" {
					t.Errorf("droplet %d: version not decoded from tags %v", m.ID, m.Tags)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("roles %v, want %v", got, tt.want)
			}
			for id, r := range tt.want {
				if got[id] != r {
					t.Errorf("droplet %d is %s, want %s", id, got[id], r)
				}
			}
			gotIP := ""
			if st.ReservedIP != nil {
				gotIP = st.ReservedIP.IP
			}
			if gotIP != tt.wantIP {
				t.Errorf("reserved IP %q, want %q", gotIP, tt.wantIP)
			}
			for i, id := range tt.wantOrder {
				if order[i] != id {
					t.Errorf("order %v, want newest first %v", order, tt.wantOrder)
					break
				}
			}
		})
	}
}

func TestStateLiteralIPMissing(t *testing.T) {
	d := &Deployer{Cloud: &listCloud{}, Spec: &spec.Spec{Project: "blog", ReservedIP: "203.0.113.77"}}
	_, err := d.State(context.Background())
	if _, ok := err.(*ConfigError); !ok {
		t.Fatalf("got %v, want a ConfigError naming the address", err)
	}
}
