package deploy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/remote"
)

func TestClassifyCloudInit(t *testing.T) {
	vendor := &remote.CloudInitError{Droplet: "blog-v1-a", Code: 1, Status: "error", Source: remote.SourceVendor,
		Errors: []string{"('scripts-vendor', RuntimeError('Runparts: 1 failures (droplet-agent) in 1 attempted commands'))"}}
	user := &remote.CloudInitError{Droplet: "blog-v1-a", Code: 1, Status: "error", Source: remote.SourceUser}
	unknown := &remote.CloudInitError{Droplet: "blog-v1-a", Code: -1, Err: errors.New("did not finish within 10m")}
	plain := errors.New("dial: connection refused")
	for _, tc := range []struct {
		name   string
		err    error
		vendor bool
	}{
		{"vendor", vendor, true},
		{"vendor, wrapped", fmt.Errorf("waiting: %w", vendor), true},
		{"user", user, false},
		{"unknown", unknown, false},
		{"not cloud-init", plain, false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClassifyCloudInit(tc.err)
			var ve *VendorDataError
			if errors.As(got, &ve) != tc.vendor {
				t.Fatalf("ClassifyCloudInit(%v) = %T %v", tc.err, got, got)
			}
			if !tc.vendor {
				if got != tc.err {
					t.Errorf("changed %v into %v", tc.err, got)
				}
				return
			}
			var ce *remote.CloudInitError
			if !errors.As(got, &ce) || ce != vendor {
				t.Errorf("the CloudInitError is not kept: %v", got)
			}
			msg := got.Error()
			for _, w := range []string{"blog-v1-a", "DigitalOcean's vendor-data", "not in your cloud-init template", "droplet.monitoring: false", "scripts-vendor"} {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
			if again := ClassifyCloudInit(got); again != got {
				t.Errorf("classified twice: %v", again)
			}
		})
	}
}
