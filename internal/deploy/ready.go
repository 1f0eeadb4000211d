package deploy

import (
	"context"
	"strings"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// The readiness gate every `fleet up` passes before its candidate is
// tagged fleet-healthy (and so promotable): SSH with a host key the
// cloud records, cloud-init done, the host key rotated, and, with a stack,
// the stack running; then the health paths, if any.

// finishUp takes the booted candidate dr through the gate.
func (d *Deployer) finishUp(ctx context.Context, res *UpResult, dr *cloud.Droplet, version string, stk *prepared, live *Member) error {
	c, err := d.ready(ctx, dr)
	if err != nil {
		return err
	}
	defer c.Close()
	if stk != nil {
		if err := d.finishStack(ctx, res, c, dr, version, stk, live); err != nil {
			return err
		}
	}
	return d.passGate(ctx, dr)
}

// ready dials dr verified by its recorded host key, waits for cloud-init
// and rotates the host key; it returns a connection verified with the
// new key.
func (d *Deployer) ready(ctx context.Context, dr *cloud.Droplet) (*remote.Client, error) {
	d.step("connecting to %s over SSH (host key recorded in the cloud)", dr.Name)
	c, err := d.Remote.Dial(ctx, dr, d.Remote.SSHWait)
	if err != nil {
		return nil, err
	}
	d.step("waiting for cloud-init on %s", dr.Name)
	ci, err := c.WaitCloudInit(ctx, d.Remote.SSHWait)
	if err != nil {
		c.Close()
		return nil, ClassifyCloudInit(err) // DigitalOcean's vendor-data, or the template
	}
	if ci.Recoverable {
		d.warn("cloud-init finished with recoverable errors on %s:\n  %s", dr.Name, strings.Join(append(ci.Errors, ci.Warnings...), "\n  "))
	}
	return d.rotateHostKey(ctx, c, dr)
}

// passGate checks the health paths, if any, then tags dr healthy.
func (d *Deployer) passGate(ctx context.Context, dr *cloud.Droplet) error {
	if h := d.health(); len(h.Paths) > 0 {
		d.step("checking health over HTTP")
		if err := d.checkHTTP(ctx, dr.PublicIPv4, h.Timeout); err != nil {
			return err
		}
	}
	if err := d.Cloud.Tag(ctx, dr.ID, TagHealthy); err != nil {
		return err
	}
	dr.Tags = append(dr.Tags, TagHealthy)
	return nil
}

// health is the spec's HTTP gate: top-level health:, else stack.health.
func (d *Deployer) health() spec.Health {
	switch {
	case d.Spec.Health != nil:
		return *d.Spec.Health
	case d.Spec.Stack != nil:
		return d.Spec.Stack.Health
	}
	return spec.Health{Timeout: spec.DefaultHealthTimeout}
}
