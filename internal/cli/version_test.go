package cli

import (
	"runtime/debug"
	"testing"
)

func TestModuleVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"go install @v1.2.3", &debug.BuildInfo{Main: debug.Module{Path: "github.com/fleetdeploy/fleet", Version: "v1.2.3"}}, "v1.2.3"},
		{"go build in a work tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no version", &debug.BuildInfo{}, "dev"},
		{"no build info", nil, "dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := moduleVersion(func() (*debug.BuildInfo, bool) { return tc.bi, tc.bi != nil })
			if got != tc.want {
				t.Errorf("moduleVersion = %q, want %q", got, tc.want)
			}
		})
	}
}
