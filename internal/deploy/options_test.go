package deploy

import (
	"testing"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

func TestWithDropletOptions(t *testing.T) {
	yes, no := true, false
	const vpc = "760e09ef-dc84-11e8-981e-3cfdfeaae000"
	set := spec.Droplet{Monitoring: &no, IPv6: &yes, Backups: &yes, VPCUUID: vpc}
	base := cloud.CreateRequest{Name: "web-1", DeployTag: "fleet-deploy:x"}
	for _, tc := range []struct {
		name string
		d    spec.Droplet
		bake bool
		want cloud.CreateRequest
	}{
		{"unset", spec.Droplet{}, false, base},
		{"set", set, false, cloud.CreateRequest{Name: "web-1", DeployTag: "fleet-deploy:x", Monitoring: &no, IPv6: &yes, Backups: &yes, VPCUUID: vpc}},
		{"bake: no backups", set, true, cloud.CreateRequest{Name: "web-1", DeployTag: "fleet-deploy:x", Monitoring: &no, IPv6: &yes, VPCUUID: vpc}},
	} {
		got := withDropletOptions(base, tc.d, tc.bake)
		if got.Name != tc.want.Name || got.DeployTag != tc.want.DeployTag || got.Monitoring != tc.want.Monitoring ||
			got.IPv6 != tc.want.IPv6 || got.Backups != tc.want.Backups || got.VPCUUID != tc.want.VPCUUID {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
