package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fleetdeploy/fleet/internal/deploy"
)

// A move that failed after forwarding started is exit 5 (re-run the
// command), even when its cause was an interrupt: the switch is past its
// commit point, not interrupted before it.
func TestExitCodeForwarding(t *testing.T) {
	for _, cause := range []error{errors.New("assign: API answered 503"), context.Canceled} {
		fe := &deploy.ForwardingError{IP: "203.0.113.7", From: "a", To: "b", Command: "promote", Err: cause}
		for _, err := range []error{fe, fmt.Errorf("promote: %w", fe)} {
			if got := exitCode(err); got != ExitRefused {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitRefused)
			}
		}
	}
}
