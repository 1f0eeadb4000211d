package localcloud

import (
	"bufio"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
)

// privateOf is d's private IPv4 as godo reads it, failing the test if it has none.
func privateOf(t *testing.T, d *godo.Droplet) string {
	t.Helper()
	ip, err := d.PrivateIPv4()
	if err != nil || ip == "" {
		t.Fatalf("droplet %d: no private IPv4 (%v): %+v", d.ID, err, d.Networks)
	}
	return ip
}

// regionVPCs maps each region to its default VPC (id, ip_range) as the API lists them.
func (e *env) regionVPCs() map[string]*godo.VPC {
	e.t.Helper()
	vs, _, err := e.do.VPCs.List(e.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]*godo.VPC{}
	for _, v := range vs {
		out[v.RegionSlug] = v
	}
	return out
}

// A droplet's private IP is in its region's VPC range, the same one the
// backend is asked to configure, and its vpc_uuid is that VPC.
func TestPrivateIPPerRegion(t *testing.T) {
	t.Parallel()
	b := newMachines(0)
	e := startEnv(t, Options{Backend: b}, nil)
	vpcs := e.regionVPCs()
	tests := []struct{ region, want string }{
		{"nyc3", "10.116.0.2"},
		{"ams3", "10.132.0.3"},
		{"fra1", "10.148.0.4"},
		{"sgp1", "10.196.0.5"},
	}
	for _, tt := range tests {
		req := createReq("p-" + tt.region)
		req.Region = tt.region
		d, _, err := e.do.Droplets.Create(e.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		d = e.waitActive(d.ID)
		if got := privateOf(t, d); got != tt.want {
			t.Errorf("%s: private IP %s, want %s", tt.region, got, tt.want)
		}
		if v := vpcs[tt.region]; v == nil || d.VPCUUID != v.ID || v.IPRange != vpcPrefix(tt.region)+".0.0/20" {
			t.Errorf("%s: vpc_uuid %q, region VPC %+v", tt.region, d.VPCUUID, v)
		}
		b.mu.Lock()
		m := b.byID[d.ID]
		b.mu.Unlock()
		if m.PrivateIPv4 != tt.want {
			t.Errorf("%s: backend asked for private IP %q, want %s", tt.region, m.PrivateIPv4, tt.want)
		}
	}
}

// Machines the server adopts or corrects keep the backend's private IP, or
// get their region's (not always nyc3's 10.116).
func TestPrivateIPAdoptedAndReconciled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    Machine
		want string
	}{
		{"no recorded private IP, ams3", Machine{ID: 700, Name: "a", Region: "ams3", PublicIPv4: "127.0.0.7", Booted: true}, "10.132.0.7"},
		{"no recorded private IP, lon1", Machine{ID: 701, Name: "b", Region: "lon1", PublicIPv4: "127.0.0.9", Booted: true}, "10.164.0.9"},
		{"recorded private IP kept", Machine{ID: 702, Name: "c", Region: "fra1", PublicIPv4: "127.0.0.11", PrivateIPv4: "10.148.0.40", Booted: true}, "10.148.0.40"},
		{"no address: allocated, then derived", Machine{ID: 703, Name: "d", Region: "sfo3", Booted: true}, "10.180.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEnv(t, Options{StatePath: statePath(t), Backend: newMachines(0, tt.m)}, nil)
			if got := privateOf(t, e.droplet(tt.m.ID)); got != tt.want {
				t.Errorf("private IP %s, want %s", got, tt.want)
			}
		})
	}
}

// A droplet whose machine has another address after a restart takes the
// backend's addresses, its private one in its own region.
func TestPrivateIPReconciledAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		recorded string // the backend's PrivateIPv4 after the move
		want     string
	}{
		{"derived from the region", "", "10.148.0.33"},
		{"the backend's", "10.148.0.77", "10.148.0.77"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := statePath(t)
			b := newMachines(0)
			e1 := startEnv(t, Options{StatePath: path, Backend: b}, nil)
			req := createReq("moved")
			req.Region = "fra1"
			d, _, err := e1.do.Droplets.Create(e1.ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			e1.waitActive(d.ID)
			e1.srv.Close()
			b.mu.Lock()
			m := b.byID[d.ID]
			m.PublicIPv4, m.PrivateIPv4 = "127.0.0.33", tt.recorded
			b.byID[d.ID] = m
			b.mu.Unlock()
			e := startEnv(t, Options{StatePath: path, Backend: b}, nil)
			got := e.droplet(d.ID)
			if publicIP(t, got) != "127.0.0.33" || privateOf(t, got) != tt.want {
				t.Errorf("addresses %s %s, want 127.0.0.33 %s", publicIP(t, got), privateOf(t, got), tt.want)
			}
		})
	}
}

func TestCheckPrivateIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		region, ip string
		ok         bool
	}{
		{"nyc3", "10.116.0.2", true},
		{"nyc3", "10.116.15.254", true},
		{"ams3", "10.132.0.199", true},
		{"nyc3", "10.132.0.2", false},  // another region's range
		{"nyc3", "10.116.16.2", false}, // past the /20
		{"nyc3", "10.116.0.0", false},  // network
		{"nyc3", "10.116.0.1", false},  // gateway
		{"nyc3", "10.116.15.255", false},
		{"nyc3", "", false},
		{"nyc3", "fd00::2", false},
		{"nyc3", "10.116.0.2; rm -rf /", false},
	}
	for _, tt := range tests {
		if err := checkPrivateIP(tt.region, tt.ip); (err == nil) != tt.ok {
			t.Errorf("checkPrivateIP(%q, %q) = %v, want ok %v", tt.region, tt.ip, err, tt.ok)
		}
	}
}

// A backend record that is not an address of the droplet's VPC is ignored
// (logged), and the private address derived.
func TestPrivateIPBadRecord(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, recorded string }{
		{"other region", "10.116.0.8"},
		{"not an address", "10.148.0.8\nx"},
		{"gateway", "10.148.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := Machine{ID: 710, Name: "bad", Region: "fra1", PublicIPv4: "127.0.0.8", PrivateIPv4: tt.recorded, Booted: true}
			logs := &logSink{t: t}
			e := startEnv(t, Options{StatePath: statePath(t), Backend: newMachines(0, m)}, logs)
			if got := privateOf(t, e.droplet(m.ID)); got != "10.148.0.8" {
				t.Errorf("private IP %s, want 10.148.0.8", got)
			}
			if !logs.has("ignoring its private address") {
				t.Errorf("not logged: %v", logs.lines)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	t.Parallel()
	const table = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	010200C0	0003	0	0	0	00000000	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
eth0	000200C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
tun0	0000000A	00000000	0001	0	0	0	000000FF	0	0	0
bad	zz	00000000	0001	0	0	0	00FFFFFF	0	0	0
short	000200C0
`
	got := parseRoutes(bufio.NewScanner(strings.NewReader(table)))
	want := []string{"172.17.0.0/16", "192.0.2.0/24", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("route %d: %v, want %s", i, got[i], want[i])
		}
	}
}

func TestOverlappingHostNetwork(t *testing.T) {
	t.Parallel()
	host := func(ps ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	tests := []struct {
		name string
		host []netip.Prefix
		want string // "" for none
	}{
		{"this machine's", host("127.0.0.0/8", "192.0.2.0/24", "172.17.0.0/16"), ""},
		{"other regions' VPCs", host("10.132.0.0/20", "10.148.0.0/20"), ""},
		{"a VPN's 10/8", host("192.0.2.0/24", "10.0.0.0/8"), "10.0.0.0/8"},
		{"a host inside", host("10.116.3.0/24"), "10.116.3.0/24"},
		{"just after", host("10.116.16.0/20"), ""},
	}
	for _, tt := range tests {
		n, ok := overlappingHostNetwork(vpcSubnet("nyc3"), tt.host)
		if got := map[bool]string{true: n.String()}[ok]; got != tt.want {
			t.Errorf("%s: overlap %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestIsNoNetwork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stderr string
		want   bool
	}{
		{"Error response from daemon: network fleet-vpc-ams3 not found", true},
		{"Error: No such network: fleet-vpc-ams3", true},
		{"Error response from daemon: No such container: fleet-x", false},
		{"Error response from daemon: container fleet-x not found", false},
		{"Error response from daemon: network fleet-vpc-nyc3 id 1f has active endpoints", false},
	}
	for _, tt := range tests {
		if got := isNoNetwork(&dockerError{stderr: tt.stderr, err: errors.New("exit status 1")}); got != tt.want {
			t.Errorf("isNoNetwork(%q) = %v, want %v", tt.stderr, got, tt.want)
		}
	}
	if isNoNetwork(errors.New("network x not found")) {
		t.Error("isNoNetwork of a non-docker error")
	}
}

func TestWithoutCapDrop(t *testing.T) {
	in := []string{"create", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--cap-drop", "NET_ADMIN", "img"}
	got := strings.Join(withoutCapDrop(in), " ")
	if want := "create --cap-add ALL --cap-drop NET_ADMIN img"; got != want {
		t.Errorf("withoutCapDrop = %q, want %q", got, want)
	}
}
