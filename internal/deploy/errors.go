package deploy

import (
	"errors"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// ConflictError is a refusal: the request makes no sense in the current
// state (no candidate to promote, the live droplet without --force, ...).
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// ConfigError is a spec or account set-up the operator must fix.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// DeployError is a failed deploy; the candidate, if any, was kept and
// marked failed. Hint says how to look at it or remove it.
type DeployError struct {
	Droplet string
	Err     error
	Hint    string
}

func (e *DeployError) Error() string {
	s := e.Err.Error()
	if e.Droplet != "" {
		s = "deploy of " + e.Droplet + " failed: " + s
	}
	if e.Hint != "" {
		s += "\n" + e.Hint
	}
	return s
}

func (e *DeployError) Unwrap() error { return e.Err }

// BakeError is a bake that failed: its droplet was destroyed (unless
// DestroyErr says why not) and no snapshot was made.
type BakeError struct {
	Droplet    string
	Err        error
	Destroyed  bool
	DestroyErr error
}

func (e *BakeError) Error() string {
	s := "bake on " + e.Droplet + " failed: " + e.Err.Error()
	if e.Destroyed {
		return s + "\n" + e.Droplet + " was destroyed; no snapshot was made"
	}
	return s + fmt.Sprintf("\ndestroying %s also failed (%v): remove it with `fleet image bake` (it replaces leftovers) or in the control panel", e.Droplet, e.DestroyErr)
}

func (e *BakeError) Unwrap() error { return e.Err }

// RegionError is a move the API would refuse: DigitalOcean assigns a
// reserved IP only to droplets of its own region. fleet checks it before
// anything is tagged, frozen, created or moved.
type RegionError struct {
	IP, IPRegion     string
	Droplet, DRegion string // the droplet the IP would go to ("" for up)
	SpecRegion       string // for up: the spec's droplet.region
	Fix              string
}

func (e *RegionError) Error() string {
	var s string
	if e.Droplet != "" {
		s = fmt.Sprintf("reserved IP %s is in %s and %s is in %s: DigitalOcean assigns a reserved IP only to droplets of its region, so the IP cannot move there; nothing was changed", e.IP, e.IPRegion, e.Droplet, e.DRegion)
	} else {
		s = fmt.Sprintf("droplet.region is %s but the project's reserved IP %s is in %s: DigitalOcean assigns a reserved IP only to droplets of its region, so a droplet made there could never be promoted; nothing was created", e.SpecRegion, e.IP, e.IPRegion)
	}
	if e.Fix != "" {
		s += "\n" + e.Fix
	}
	return s
}

// VendorDataError is a cloud-init failure in the cloud's vendor-data, not
// in the project's template: on DigitalOcean, droplet.monitoring: true
// has the vendor-data install the metrics agent before user_data runs,
// and a failed install fails the boot. It is a failed deploy (exit 8),
// told apart so the operator does not go looking in the template.
type VendorDataError struct {
	Droplet string
	Err     *remote.CloudInitError
}

func (e *VendorDataError) Error() string {
	return fmt.Sprintf("the failure on %s is in DigitalOcean's vendor-data (module scripts-vendor, e.g. the monitoring agent's install), not in your cloud-init template; "+
		"retry `fleet up`, or set droplet.monitoring: false in droplets.yaml to boot without the agent\n%v", e.Droplet, e.Err)
}

func (e *VendorDataError) Unwrap() error { return e.Err }

// ClassifyCloudInit returns err as a *VendorDataError when it holds a
// *remote.CloudInitError whose failures are all in the vendor-data
// (Source "vendor"), and err unchanged otherwise. The up and bake paths
// call it on what WaitCloudInit returned, before wrapping it.
func ClassifyCloudInit(err error) error {
	var ve *VendorDataError
	if errors.As(err, &ve) {
		return err
	}
	var ce *remote.CloudInitError
	if errors.As(err, &ce) && ce.Source == remote.SourceVendor {
		return &VendorDataError{Droplet: ce.Droplet, Err: ce}
	}
	return err
}
