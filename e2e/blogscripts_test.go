//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
)

// TestBlogScripts runs the blog's Python unit tests (stacks/blog/app/tests:
// the incremental sync and fleet-data, without Django or Docker) with
// Debian trixie's python3, the one the app and utility images have. They
// need Python 3.11.4 or later (tarfile's extraction filters), which a
// bookworm host lacks, so they run in the droplet image, which has trixie's
// python3 for cloud-init: read-only sources, no network.
func TestBlogScripts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var log bytes.Buffer
	img, err := localcloud.EnsureImage(ctx, &log)
	if err != nil {
		t.Fatalf("droplet image: %v\n%s", err, log.String())
	}
	src, err := filepath.Abs("../stacks/blog")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "docker", "run", "--rm", "--network", "none",
		"-e", "PYTHONDONTWRITEBYTECODE=1", "-v", src+":/blog:ro", "-w", "/blog",
		"--entrypoint", "python3", img, "-m", "unittest", "discover", "-v", "-s", "app/tests")
	out, err := cmd.CombinedOutput()
	t.Logf("python3 -m unittest in %s:\n%s", img, out)
	if err != nil {
		t.Fatalf("the blog's Python tests failed: %v", err)
	}
	if !bytes.Contains(out, []byte("\nOK")) {
		t.Fatalf("no OK from unittest")
	}
}
