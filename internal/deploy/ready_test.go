package deploy

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
	"golang.org/x/crypto/ssh"
)

// Every up, stack or not, passes the readiness gate before it is tagged
// healthy; a droplet that fails it is tagged failed and promote refuses.
func TestUpReadinessGate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cloudInit remotetest.Reply
		health    *spec.Health
		wantErr   string // "" = healthy
	}{
		{name: "provision-only", cloudInit: remotetest.Reply{Stdout: ciDone}},
		{name: "cloud-init failed", cloudInit: remotetest.Reply{Stdout: ciFailed, Code: 1}, wantErr: "runcmd failed"},
		// The droplet's address is its sshd: no HTTP path can answer.
		{name: "health paths do not answer", cloudInit: remotetest.Reply{Stdout: ciDone},
			health: &spec.Health{Paths: []string{"/healthz"}, Timeout: 300 * time.Millisecond}, wantErr: "health paths"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, bc := bootDeployer(t)
			bc.answer(tc.cloudInit)
			d.Spec.Health = tc.health
			res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
			ds, _ := bc.ListByTag(t.Context(), ProjectTag("blog"))
			if len(ds) != 1 {
				t.Fatalf("%d droplets, want 1", len(ds))
			}
			dr := ds[0]
			if tc.wantErr != "" {
				var de *DeployError
				if !errors.As(err, &de) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("up: %v, want a DeployError with %q", err, tc.wantErr)
				}
				if !dr.HasTag(TagFailed) || dr.HasTag(TagHealthy) {
					t.Fatalf("tags %q, want failed and not healthy", dr.Tags)
				}
				_, err := d.Promote(t.Context(), false)
				var ce *ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("promote of a failed up: %v, want a ConflictError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !dr.HasTag(TagHealthy) || !res.Droplet.HasTag(TagHealthy) {
				t.Fatalf("tags %q, want healthy", dr.Tags)
			}
			checkRotated(t, d, bc, dr)
		})
	}
}

// checkRotated: dr records exactly one host key, not the one user_data
// carried, and the cache holds it.
func checkRotated(t *testing.T, d *Deployer, bc *bakeCloud, dr cloud.Droplet) {
	t.Helper()
	rec := recordedKeys(dr.Tags)
	userKey := hostKeyOf(t, bc.userData[dr.Name]).PublicKey()
	if len(rec) != 1 || HostKeyTag(userKey) == HostKeyPrefix+rec[0] {
		t.Fatalf("recorded host keys %q; want one, not user_data's", rec)
	}
	if bc.rotations != 1 {
		t.Fatalf("%d rotations, want 1", bc.rotations)
	}
	data, err := os.ReadFile(d.Remote.Dialer.KnownHosts.Path(dr.Name))
	if err != nil {
		t.Fatal(err)
	}
	_, _, k, _, _, err := ssh.ParseKnownHosts(data)
	if err != nil || HostKeyTag(k) != HostKeyPrefix+rec[0] {
		t.Fatalf("cache %q (%v), want the recorded key", data, err)
	}
}

// Promote refuses a candidate that never passed the gate, stack or not,
// unless --force.
func TestPromoteRefusesWithoutHealthy(t *testing.T) {
	for _, withStack := range []bool{false, true} {
		d, bc := bootDeployer(t)
		if withStack {
			d.Spec.Stack = &spec.Stack{}
		}
		bc.boot(cloud.Droplet{ID: 7, Name: "blog-v1-0-0-xa", Status: "active", Region: "fra1",
			Tags: []string{ProjectTag("blog"), VersionTag("v1.0.0")}})
		_, err := d.Promote(t.Context(), false)
		var ce *ConflictError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "readiness gate") {
			t.Fatalf("stack=%v: promote: %v, want a ConflictError about the readiness gate", withStack, err)
		}
		if slices.ContainsFunc(bc.calls, func(c string) bool { return strings.Contains(c, "ReservedIP") || strings.HasPrefix(c, "Assign") }) {
			t.Fatalf("stack=%v: a refused promote touched the reserved IP: %q", withStack, bc.calls)
		}
	}
}

// A re-run of an up whose rotation was interrupted converges. The
// droplet presents one recorded key and another is recorded too: the next
// key tagged but never swapped in, or user_data's swapped out but never
// untagged (fleet cannot tell them apart, nor needs to): it is rotated
// again and only the new key stays recorded.
func TestUpResumeConvergesHostKeyTags(t *testing.T) {
	d, bc := bootDeployer(t)
	bc.boot(cloud.Droplet{ID: 7, Name: "blog-v1-0-0-xa", Status: "active", Region: "fra1",
		Tags: []string{ProjectTag("blog"), VersionTag("v1.0.0"), HostKeyTag(newHostSigner(t).PublicKey())}})
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Resumed {
		t.Fatalf("re-run: %+v, %v", res, err)
	}
	dr, _ := bc.GetDroplet(t.Context(), 7)
	if rec := recordedKeys(dr.Tags); len(rec) != 1 || !dr.HasTag(TagHealthy) || bc.rotations != 1 {
		t.Fatalf("tags %q after %d rotations; want one host key, healthy, one rotation", dr.Tags, bc.rotations)
	}
}
