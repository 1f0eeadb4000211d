package deploy

import (
	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// withDropletOptions sets the spec's DigitalOcean droplet options on req;
// unset ones stay unset, so DigitalOcean's defaults apply. A bake droplet
// lives minutes: it gets no backups.
func withDropletOptions(req cloud.CreateRequest, d spec.Droplet, bake bool) cloud.CreateRequest {
	req.Monitoring, req.IPv6, req.VPCUUID = d.Monitoring, d.IPv6, d.VPCUUID
	if !bake {
		req.Backups = d.Backups
	}
	return req
}
