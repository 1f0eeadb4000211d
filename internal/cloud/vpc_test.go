package cloud

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/digitalocean/godo"
)

// A droplet's private address and VPC come through every read: the one
// WaitReady returns, GetDroplet and ListByTag. The address is in its
// region's VPC range, and droplets of one region share a VPC.
func TestDropletPrivateNetwork(t *testing.T) {
	c, _ := optionsEnv(t)
	ctx := context.Background()
	vpcs, _, err := c.api.VPCs.List(ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	byRegion := map[string]*godo.VPC{}
	for _, v := range vpcs {
		byRegion[v.RegionSlug] = v
	}
	seen := map[string]bool{}
	for i, region := range []string{"nyc3", "nyc3", "ams3"} {
		t.Run(fmt.Sprintf("%d-%s", i, region), func(t *testing.T) {
			vpc := byRegion[region]
			if vpc == nil {
				t.Fatalf("no default VPC in %s: %+v", region, vpcs)
			}
			rng := netip.MustParsePrefix(vpc.IPRange)
			tag := fmt.Sprintf("fleet-deploy:vpc%d", i)
			d, action, err := c.CreateDroplet(ctx, CreateRequest{Name: fmt.Sprintf("web-%d", i), Region: region,
				Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: tag})
			if err != nil {
				t.Fatal(err)
			}
			ready, err := c.WaitReady(ctx, d, action, quick)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.GetDroplet(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			listed, err := c.ListByTag(ctx, tag)
			if err != nil || len(listed) != 1 {
				t.Fatalf("ListByTag(%s): %+v %v", tag, listed, err)
			}
			for _, r := range []struct {
				how string
				d   *Droplet
			}{{"WaitReady", ready}, {"GetDroplet", got}, {"ListByTag", &listed[0]}} {
				a, err := netip.ParseAddr(r.d.PrivateIPv4)
				if err != nil || !rng.Contains(a) || r.d.PrivateIPv4 == r.d.PublicIPv4 {
					t.Errorf("%s: private IPv4 %q (public %q), want one in %s", r.how, r.d.PrivateIPv4, r.d.PublicIPv4, rng)
				}
				if r.d.VPCUUID != vpc.ID {
					t.Errorf("%s: VPC %q, want %s's %s", r.how, r.d.VPCUUID, region, vpc.ID)
				}
			}
			if seen[ready.PrivateIPv4] {
				t.Errorf("private IPv4 %s given twice", ready.PrivateIPv4)
			}
			seen[ready.PrivateIPv4] = true
		})
	}
}
