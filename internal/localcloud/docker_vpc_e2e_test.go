//go:build e2e

package localcloud

// The Docker backend's VPC: droplets 127.0.0.165-167.
//
//	go test -tags e2e ./internal/localcloud/ -run 'TestDockerVPC'

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// cleanupVPCNetworks removes, at the end of tb, the VPC networks of
// regions that did not exist before (once no container uses them: `docker
// network rm` refuses otherwise). Ones that existed are shared; they stay.
func cleanupVPCNetworks(tb testing.TB, regions ...string) {
	tb.Helper()
	var made []string
	for _, r := range regions {
		if ok, err := checkVPCNetwork(context.Background(), VPCNetworkName(r), r, vpcSubnet(r)); err != nil {
			tb.Fatal(err)
		} else if !ok {
			made = append(made, VPCNetworkName(r))
		}
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, n := range made {
			if _, err := docker(ctx, nil, "network", "rm", n); err != nil && !isNoNetwork(err) {
				tb.Errorf("cleanup: %v", err)
			}
		}
	})
}

// reach says whether container c opens a TCP connection to ip:22 within 3 s.
func reach(t *testing.T, c, ip string) (bool, string) {
	out, err := dexec(t, c, "timeout", "3", "bash", "-c", "</dev/tcp/"+ip+"/22")
	return err == nil, out
}

// waitReach polls until c reaches ip:22 or limit passes.
func waitReach(t *testing.T, c, ip string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, out := reach(t, c, ip)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot reach %s:22 within %v: %s", c, ip, limit, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Two droplets of a region reach each other on their private addresses
// (eth1; eth0 stays the bridge), through a power cycle too; a droplet of
// another region reaches neither, nor they it. List reads the addresses
// back; Destroy leaves no container behind.
func TestDockerVPC(t *testing.T) {
	b := newDockerTestBackend(t)
	cleanupVPCNetworks(t, "nyc3", "ams3")
	ms := []Machine{
		{ID: 700101, Name: "e2e-" + b.Instance + "-a", Region: "nyc3", PublicIPv4: "127.0.0.165", PrivateIPv4: "10.116.0.165"},
		{ID: 700102, Name: "e2e-" + b.Instance + "-b", Region: "nyc3", PublicIPv4: "127.0.0.166"}, // derived: 10.116.0.166
		{ID: 700103, Name: "e2e-" + b.Instance + "-c", Region: "ams3", PublicIPv4: "127.0.0.167", PrivateIPv4: "10.132.0.167"},
	}
	priv := []string{"10.116.0.165", "10.116.0.166", "10.132.0.167"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		wg.Go(func() { errs[i] = b.Boot(ctx, m) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Boot %s: %v", ms[i].Name, err)
		}
	}
	a, bb, c := b.ContainerName(ms[0].Name), b.ContainerName(ms[1].Name), b.ContainerName(ms[2].Name)

	// eth0 the bridge (default route), eth1 the VPC.
	for i, ctr := range []string{a, bb, c} {
		out, err := dexec(t, ctr, "ip", "-4", "-o", "addr", "show", "eth1")
		if err != nil || !strings.Contains(out, " "+priv[i]+"/20 ") {
			t.Errorf("%s eth1: %q %v, want %s/20", ctr, out, err, priv[i])
		}
		out, err = dexec(t, ctr, "ip", "-4", "route", "show", "default")
		if err != nil || !strings.Contains(out, " dev eth0") {
			t.Errorf("%s default route: %q %v, want via eth0", ctr, out, err)
		}
	}

	// sshd answers on every droplet's own private address first, so the
	// refusals below are the network's doing.
	for i, ctr := range []string{a, bb, c} {
		waitReach(t, ctr, priv[i], 2*time.Minute)
	}
	check := func(when string) {
		t.Helper()
		for _, tt := range []struct {
			from, to string
			want     bool
		}{
			{a, priv[1], true}, {bb, priv[0], true},
			{a, priv[2], false}, {bb, priv[2], false}, {c, priv[0], false}, {c, priv[1], false},
		} {
			ok, out := reach(t, tt.from, tt.to)
			// A refusal of a reachable peer is its sshd restarting
			// (cloud-init's ssh module does so while booting): ask again.
			for i := 0; tt.want && !ok && strings.Contains(out, "refused") && i < 50; i++ {
				time.Sleep(200 * time.Millisecond)
				ok, out = reach(t, tt.from, tt.to)
			}
			if ok != tt.want {
				t.Errorf("%s: %s -> %s:22 connected %v, want %v (%s)", when, tt.from, tt.to, ok, tt.want, out)
			}
		}
	}
	check("after boot")

	got, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		j := slices.IndexFunc(got, func(g Machine) bool { return g.ID == m.ID })
		if j < 0 || got[j].PrivateIPv4 != priv[i] {
			t.Errorf("List: droplet %d: %+v, want private %s", m.ID, got, priv[i])
		}
	}

	// A power cycle keeps the address (the container keeps its network).
	if err := b.PowerOff(ctx, ms[0].ID, false); err != nil {
		t.Fatal(err)
	}
	if err := b.PowerOn(ctx, ms[0]); err != nil {
		t.Fatal(err)
	}
	waitReach(t, a, priv[0], 2*time.Minute)
	check("after a power cycle")

	// Networks in use stay.
	if removed, err := RemoveVPCNetworks(ctx); err != nil || slices.Contains(removed, VPCNetworkName("nyc3")) || slices.Contains(removed, VPCNetworkName("ams3")) {
		t.Errorf("RemoveVPCNetworks with droplets on them: removed %v, %v", removed, err)
	}
	for _, m := range ms {
		if err := b.Destroy(ctx, m.ID); err != nil {
			t.Fatalf("Destroy %d: %v", m.ID, err)
		}
		assertGone(t, b, m.ID)
	}
	for _, r := range []string{"nyc3", "ams3"} {
		out, err := docker(ctx, nil, "network", "inspect", "--format", "{{len .Containers}}", VPCNetworkName(r))
		if err != nil || out != "0" {
			t.Errorf("%s after Destroy: %q containers (%v), want 0", VPCNetworkName(r), out, err)
		}
	}
	// Unused, they go (Boot would make them again).
	removed, err := RemoveVPCNetworks(ctx)
	if err != nil || !slices.Contains(removed, VPCNetworkName("nyc3")) || !slices.Contains(removed, VPCNetworkName("ams3")) {
		t.Errorf("RemoveVPCNetworks after Destroy: removed %v, %v", removed, err)
	}
	t.Logf("RemoveVPCNetworks removed %v", removed)
}

// A VPC range that overlaps a host network, or a network of the VPC's name
// that is something else, fails Boot with a message that says so, and
// leaves nothing behind.
func TestDockerVPCConflicts(t *testing.T) {
	b := newDockerTestBackend(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tests := []struct {
		name, region, ip string
		// foreign is the docker network create arguments of what is in
		// the way.
		foreign []string
		want    string
	}{
		{"host network overlaps", "sgp1", "127.0.0.165",
			[]string{"--subnet", "10.196.8.0/24", "fleet-e2e-overlap-" + b.Instance}, "overlaps the host's network 10.196.8.0/24"},
		{"name taken", "sfo3", "127.0.0.166",
			[]string{"--subnet", "10.250.0.0/24", VPCNetworkName("sfo3")}, "exists but is not sfo3's VPC"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok, err := checkVPCNetwork(ctx, VPCNetworkName(tt.region), tt.region, vpcSubnet(tt.region)); ok || err != nil {
				t.Skipf("%s exists (%v): cannot test its creation", VPCNetworkName(tt.region), err)
			}
			name := tt.foreign[len(tt.foreign)-1]
			if _, err := docker(ctx, nil, append([]string{"network", "create"}, tt.foreign...)...); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { docker(context.Background(), nil, "network", "rm", name) })
			m := Machine{ID: 700110 + i, Name: fmt.Sprintf("e2e-%s-x%d", b.Instance, i), Region: tt.region, PublicIPv4: tt.ip}
			err := b.Boot(ctx, m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Boot: %v, want %q", err, tt.want)
			} else {
				t.Logf("Boot: %v", err)
			}
			assertGone(t, b, m.ID)
		})
	}
}
