package deploy

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/cloud"
)

// RegionCheck is what CheckRegion found: the project's reserved IP and
// its region ("" for both when reserved_ip is auto and none is held yet)
// against the spec's droplet.region.
type RegionCheck struct {
	IP       string
	IPRegion string
	Region   string
}

// CheckRegion compares the region of the project's reserved IP (the
// literal reserved_ip, looked up; with auto, the one the project's live
// droplet holds) with droplet.region, as `fleet up` does before it
// creates anything. A mismatch is a *RegionError; a literal address the
// account lacks is a *ConfigError. It only reads.
func (d *Deployer) CheckRegion(ctx context.Context) (*RegionCheck, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	rc := &RegionCheck{Region: d.Spec.Droplet.Region}
	r := st.ReservedIP
	if r == nil {
		return rc, nil
	}
	rc.IP, rc.IPRegion = r.IP, r.Region
	return rc, d.regionMismatch(r)
}

// regionMismatch is the *RegionError of a reserved IP outside
// droplet.region, or nil: a candidate made there could never get the IP.
func (d *Deployer) regionMismatch(r *cloud.ReservedIP) error {
	region := d.Spec.Droplet.Region
	if r == nil || r.Region == "" || region == "" || r.Region == region {
		return nil
	}
	fix := fmt.Sprintf("set droplet.region: %s, or reserved_ip to an address reserved in %s", r.Region, region)
	if d.Spec.ReservedIP == "auto" {
		fix = fmt.Sprintf("set droplet.region: %s (the project's live droplet and its reserved IP are there)", r.Region)
	}
	return &RegionError{IP: r.IP, IPRegion: r.Region, SpecRegion: region, Fix: fix}
}
