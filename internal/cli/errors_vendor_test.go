package cli

import (
	"fmt"
	"testing"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/remote"
)

// A vendor-data failure is a failed deploy, alone or inside a DeployError.
func TestExitCodeVendorData(t *testing.T) {
	ve := deploy.ClassifyCloudInit(&remote.CloudInitError{Droplet: "d", Code: 1, Source: remote.SourceVendor})
	if _, ok := ve.(*deploy.VendorDataError); !ok {
		t.Fatalf("ClassifyCloudInit = %T", ve)
	}
	for _, err := range []error{ve, fmt.Errorf("up: %w", ve), &deploy.DeployError{Droplet: "d", Err: ve}} {
		if got := exitCode(err); got != ExitDeploy {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitDeploy)
		}
	}
}
