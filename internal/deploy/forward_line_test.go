package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The forward line as a real sh runs it: the marker stays when the stack
// forwards (or fails otherwise), and goes when it says it cannot (exit 4).
func TestForwardLineShell(t *testing.T) {
	for _, tc := range []struct {
		code       string
		wantMarker bool
	}{{"0", true}, {"4", false}, {"1", true}} {
		dir := t.TempDir()
		mk := filepath.Join(dir, "forwarding-to")
		line := forwardLine("blog", mk, 2, "10.0.0.2:443", `echo "to $FLEET_FORWARD_TO"; exit `+tc.code)
		line = strings.ReplaceAll(line, "cd /srv/fleet/blog", "cd "+dir)
		line = strings.ReplaceAll(line, "mkdir -p /etc/fleet/blog", "mkdir -p "+dir)
		out, err := exec.Command("sh", "-c", line).CombinedOutput()
		if got := exitCodeOf(err); got != tc.code {
			t.Errorf("exit %s: sh exited %s (%s)", tc.code, got, out)
		}
		if !strings.Contains(string(out), "to 10.0.0.2:443") {
			t.Errorf("exit %s: output %q", tc.code, out)
		}
		b, err := os.ReadFile(mk)
		if has := err == nil; has != tc.wantMarker || (has && string(b) != "2\n") {
			t.Errorf("exit %s: marker %q (%v), want present=%v", tc.code, b, err, tc.wantMarker)
		}
	}
}

func exitCodeOf(err error) string {
	if err == nil {
		return "0"
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimPrefix(ee.String(), "exit status ")
	}
	return err.Error()
}
