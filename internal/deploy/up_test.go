package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// upDeployer is a provision-only deployer of project "blog" on c.
func upDeployer(t *testing.T, c cloud.Cloud) *Deployer {
	t.Helper()
	tmpl := filepath.Join(t.TempDir(), "droplet.yaml")
	if err := os.WriteFile(tmpl, []byte("#cloud-config\nhostname: {{.DropletName}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &Deployer{Cloud: c, Spec: &spec.Spec{
		Project: "blog", ReservedIP: "auto", Keep: 2,
		Droplet:  spec.Droplet{Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-13-x64", CloudInit: tmpl},
		Timeouts: spec.Timeouts{Create: time.Second, Active: time.Second, Assign: time.Second, SSH: time.Second},
	}}
}

// stopAtReady cancels the command when it waits for the droplet to boot,
// as Ctrl-C would.
type stopAtReady struct {
	*bakeCloud
	cancel context.CancelFunc
}

func (s *stopAtReady) WaitReady(ctx context.Context, d *cloud.Droplet, _ int, _ cloud.Timeouts) (*cloud.Droplet, error) {
	s.cancel()
	<-ctx.Done()
	return nil, ctx.Err()
}

// An interrupted up keeps its candidate as the candidate; the re-run
// adopts it: no failed tag, no second droplet (issue 9.4).
func TestUpInterruptedIsResumed(t *testing.T) {
	d, bc := bootDeployer(t)
	ctx, cancel := context.WithCancel(t.Context())
	d.Cloud = &stopAtReady{bakeCloud: bc, cancel: cancel}
	_, err := d.Up(ctx, "v1.0.0", UpOptions{})
	if err == nil || !strings.Contains(err.Error(), "kept as the candidate") {
		t.Fatalf("interrupted up: %v", err)
	}
	ds, _ := bc.ListByTag(t.Context(), ProjectTag("blog"))
	if len(ds) != 1 || ds[0].HasTag(TagFailed) {
		t.Fatalf("after the interrupt: %+v", ds)
	}
	d2 := *d
	d2.Cloud = bc
	res, err := d2.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Resumed || res.Droplet.ID != ds[0].ID || !res.Droplet.HasTag(TagHealthy) {
		t.Fatalf("re-run: %+v, %v", res, err)
	}
	if ds, _ = bc.ListByTag(t.Context(), ProjectTag("blog")); len(ds) != 1 {
		t.Errorf("%d droplets after the re-run, want 1", len(ds))
	}
}

// A re-run of an up that had passed the gate runs it again (the stack is
// shipped and restarted): interrupted there, its candidate is no longer
// healthy, so promote refuses it until an up passes again.
func TestUpRerunClearsHealthyUntilTheGatePasses(t *testing.T) {
	d, bc := bootDeployer(t)
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Droplet.HasTag(TagHealthy) {
		t.Fatalf("first up: %+v, %v", res, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	d2 := *d
	d2.Cloud = &stopAtReady{bakeCloud: bc, cancel: cancel}
	if _, err := d2.Up(ctx, "v1.0.0", UpOptions{}); err == nil {
		t.Fatal("interrupted re-run succeeded")
	}
	ds, _ := bc.ListByTag(t.Context(), ProjectTag("blog"))
	if len(ds) != 1 || ds[0].HasTag(TagHealthy) || ds[0].HasTag(TagFailed) {
		t.Fatalf("after the interrupted re-run: %+v, want one candidate, neither healthy nor failed", ds)
	}
	if _, err := d.Promote(t.Context(), false); err == nil || !strings.Contains(err.Error(), "not passed") {
		t.Errorf("promote of the re-run candidate: %v, want a refusal", err)
	}
	if res, err = d.Up(t.Context(), "v1.0.0", UpOptions{}); err != nil || !res.Droplet.HasTag(TagHealthy) {
		t.Fatalf("third up: %+v, %v", res, err)
	}
}

// A droplet that refuses this machine's key is not failed: the fault is
// most often the runner's (a wrong FLEET_SSH_KEY), and a re-run with the
// right key resumes the same candidate.
func TestUpWithAWrongKeyKeepsTheCandidate(t *testing.T) {
	d, bc := bootDeployer(t)
	right := d.Remote.Dialer.KeyFiles
	wrong, _ := clientKey(t)
	d.Remote.Dialer.KeyFiles = []string{wrong}
	_, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "kept as the candidate") {
		t.Fatalf("up with a wrong key: %v, want a ConfigError keeping the candidate", err)
	}
	ds, _ := bc.ListByTag(t.Context(), ProjectTag("blog"))
	if len(ds) != 1 || ds[0].HasTag(TagFailed) || ds[0].HasTag(TagHealthy) {
		t.Fatalf("after the refused login: %+v", ds)
	}
	d.Remote.Dialer.KeyFiles = right
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Resumed || res.Droplet.ID != ds[0].ID || !res.Droplet.HasTag(TagHealthy) {
		t.Fatalf("re-run with the right key: %+v, %v", res, err)
	}
}

// sshd reloads its keys asynchronously: the reconnect after the swap may
// still see the old key for a moment, which is no reason to fail.
func TestRotationWaitsForTheReload(t *testing.T) {
	d, bc := bootDeployer(t)
	bc.swapDelay = 800 * time.Millisecond
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Droplet.HasTag(TagHealthy) || len(recordedKeys(res.Droplet.Tags)) != 1 {
		t.Fatalf("up with a slow reload: %+v, %v", res, err)
	}
}

// Candidates of the same version left by an up killed mid-create are
// destroyed by the up that adopts one of them.
func TestUpDropsDuplicateCandidates(t *testing.T) {
	d, bc := bootDeployer(t)
	base := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for i, id := range []int{7, 8} {
		bc.boot(cloud.Droplet{ID: id, Name: "blog-v1-0-0-x" + string(rune('a'+i)), Status: "active",
			Tags: []string{ProjectTag("blog"), VersionTag("v1.0.0")}, CreatedAt: base.Add(time.Duration(i) * time.Minute)})
	}
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil || !res.Resumed || res.Droplet.ID != 8 || len(res.Duplicates) != 1 || res.Duplicates[0].ID != 7 {
		t.Fatalf("up: %+v, %v", res, err)
	}
	if ds, _ := bc.ListByTag(t.Context(), ProjectTag("blog")); len(ds) != 1 || ds[0].ID != 8 {
		t.Errorf("droplets left: %+v", ds)
	}
}

// The create request carries the tag of the host key fleet put in
// user_data: from then on any holder of the token can verify the droplet,
// even one whose create outlived a killed fleet.
func TestCreateRecordsTheHostKey(t *testing.T) {
	for _, withStack := range []bool{false, true} {
		d, bc := bootDeployer(t)
		dr, _, err := d.create(t.Context(), "v1.0.0", UpOptions{}, withStack, &ImageRef{Slug: "debian-13-x64"})
		if err != nil {
			t.Fatalf("stack=%v: create: %v", withStack, err)
		}
		req := bc.created[dr.ID]
		want := HostKeyTag(hostKeyOf(t, req.UserData).PublicKey())
		if !slices.Contains(req.Tags, want) || len(recordedKeys(req.Tags)) != 1 {
			t.Errorf("stack=%v: create tags %q, want exactly one host key tag, %s", withStack, req.Tags, want)
		}
		if _, err := os.Stat(d.Remote.Dialer.KnownHosts.Path(dr.Name)); err == nil {
			t.Errorf("stack=%v: a key was pinned locally before any verified handshake", withStack)
		}
	}
}

// An up in another region than the project's reserved IP is refused
// before any droplet is created: its candidate could never be promoted.
func TestUpRefusesAnotherRegionThanTheReservedIP(t *testing.T) {
	for _, fixed := range []bool{false, true} {
		d, bc := bootDeployer(t)
		fc := bc.fakeCloud
		fc.addDroplet(cloud.Droplet{ID: 7, Name: "blog-v1-0-0-xa", Status: "active", Region: "fra1", PublicIPv4: "192.0.2.1",
			Tags: []string{ProjectTag("blog"), VersionTag("v1.0.0"), TagPromoted}})
		fc.addIP(testIP, 7) // in fra1
		d.Spec.Droplet.Region = "ams3"
		if fixed {
			d.Spec.ReservedIP = testIP
		}
		_, err := d.Up(t.Context(), "v1.1.0", UpOptions{})
		var re *RegionError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "droplet.region is ams3") || !strings.Contains(err.Error(), testIP+" is in fra1") {
			t.Errorf("fixed=%v: got %v, want a RegionError naming both regions", fixed, err)
		}
		if slices.ContainsFunc(fc.calls, func(c string) bool { return strings.HasPrefix(c, "CreateDroplet") }) {
			t.Errorf("fixed=%v: a droplet was created: %q", fixed, fc.calls)
		}
	}
}
