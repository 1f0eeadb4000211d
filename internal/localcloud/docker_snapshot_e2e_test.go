//go:build e2e

package localcloud

// Snapshots and power on the Docker backend, through the API and godo:
//
//	go test -tags e2e ./internal/localcloud/ -run DockerSnapshot -v

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

// dockerEnv is a Server over a Docker test backend behind the contract
// validator, with a validated godo client (as startEnv, with slow waits).
func dockerEnv(t *testing.T) (*env, *DockerBackend) {
	t.Helper()
	b := newDockerTestBackend(t)
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{Token: testToken, Backend: b, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	e := &env{t: t, srv: srv, url: hs.URL, v: v, ctx: t.Context()}
	e.do = e.client(testToken)
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		for _, msg := range v.Violations() {
			t.Errorf("contract violation: %s", msg)
		}
	})
	return e, b
}

// poll waits up to timeout for cond, every 500 ms.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (e *env) slowAction(id int, timeout time.Duration) *godo.Action {
	e.t.Helper()
	var a *godo.Action
	poll(e.t, timeout, "action "+strconv.Itoa(id), func() bool {
		var err error
		if a, _, err = e.do.Actions.Get(e.ctx, id); err != nil {
			e.t.Fatal(err)
		}
		return a.Status != "in-progress"
	})
	if a.Status != "completed" {
		e.t.Fatalf("action %d %s ended %s", id, a.Type, a.Status)
	}
	return a
}

func TestDockerSnapshot(t *testing.T) {
	e, b := dockerEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	e.ctx = ctx
	name := "e2e-" + b.Instance

	req := createReq(name + "-src")
	req.Image = godo.DropletCreateImage{Slug: "debian-13-x64"}
	src, resp, err := e.do.Droplets.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.slowAction(resp.Links.Actions[0].ID, 4*time.Minute)
	t.Logf("source droplet active in %v", time.Since(start).Round(time.Millisecond))
	c := b.ContainerName(src.Name)
	const mark = "written before the snapshot"
	for _, p := range []string{"/root/fleet-e2e-mark", "/var/lib/docker/fleet-e2e-mark"} {
		if out, err := dexec(t, c, "sh", "-c", "echo '"+mark+"' > "+p+" && sync"); err != nil {
			t.Fatalf("writing %s: %v\n%s", p, err, out)
		}
	}

	// Ubuntu is not something this local cloud boots.
	bad := createReq(name + "-ubuntu")
	if _, _, err := e.do.Droplets.Create(ctx, bad); err == nil || apiError(t, err).Response.StatusCode != 422 {
		t.Errorf("ubuntu on the Docker backend: %v", err)
	}

	// Shut down (docker stop), snapshot, power on.
	a, _, err := e.do.DropletActions.Shutdown(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	e.slowAction(a.ID, 2*time.Minute)
	t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
	if st, _ := docker(ctx, nil, "inspect", "--format", "{{.State.Running}}", c); st != "false" {
		t.Errorf("container of an off droplet running=%s", st)
	}
	if d := e.droplet(src.ID); d.Status != "off" {
		t.Errorf("after shutdown: %s", d.Status)
	}
	a, _, err = e.do.DropletActions.Snapshot(ctx, src.ID, "e2e bake")
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	e.slowAction(a.ID, 5*time.Minute)
	t.Logf("snapshot took %v", time.Since(start).Round(time.Millisecond))
	snaps, _, err := e.do.Droplets.Snapshots(ctx, src.ID, nil)
	if err != nil || len(snaps) != 1 || snaps[0].Name != "e2e bake" {
		t.Fatalf("droplet snapshots: %+v, %v", snaps, err)
	}
	im := snaps[0]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := b.DeleteImage(ctx, im.ID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Logf("snapshot %d: %.2f GB", im.ID, im.SizeGigaBytes)
	if im.SizeGigaBytes < 0.1 {
		t.Errorf("snapshot size %.2f GB: not the bytes it holds", im.SizeGigaBytes)
	}
	a, _, err = e.do.DropletActions.PowerOn(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.slowAction(a.ID, 2*time.Minute)
	if d := e.droplet(src.ID); d.Status != "active" {
		t.Errorf("after power_on: %s", d.Status)
	}

	// A droplet from the snapshot has both files.
	req = createReq(name + "-copy")
	req.Image = godo.DropletCreateImage{ID: im.ID}
	cp, resp, err := e.do.Droplets.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	e.slowAction(resp.Links.Actions[0].ID, 4*time.Minute)
	t.Logf("droplet from the snapshot active in %v", time.Since(start).Round(time.Millisecond))
	c2 := b.ContainerName(cp.Name)
	for _, p := range []string{"/root/fleet-e2e-mark", "/var/lib/docker/fleet-e2e-mark"} {
		if out, err := dexec(t, c2, "cat", p); err != nil || out != mark {
			t.Errorf("%s in the droplet from the snapshot: %q, %v", p, out, err)
		}
	}
	if out, _ := dexec(t, c2, "hostname"); out != cp.Name {
		t.Errorf("hostname of the copy: %q", out)
	}

	// Rename renames the container (the old name is free again); reboot
	// restarts it.
	a, _, err = e.do.DropletActions.Rename(ctx, cp.ID, cp.Name+"-renamed")
	if err != nil {
		t.Fatal(err)
	}
	e.slowAction(a.ID, time.Minute)
	if _, err := docker(ctx, nil, "inspect", "--format", "{{.Id}}", b.ContainerName(cp.Name+"-renamed")); err != nil {
		t.Errorf("container after rename: %v", err)
	}
	a, _, err = e.do.DropletActions.Reboot(ctx, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.slowAction(a.ID, 2*time.Minute)
	if d := e.droplet(cp.ID); d.Status != "active" || d.Name != cp.Name+"-renamed" {
		t.Errorf("after rename and reboot: %s %q", d.Status, d.Name)
	}

	// Power off is a kill; the image stays while the copy uses it, and is
	// gone from the API once deleted.
	a, _, err = e.do.DropletActions.PowerOff(ctx, cp.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.slowAction(a.ID, time.Minute)
	if _, err := e.do.Snapshots.Delete(ctx, strconv.Itoa(im.ID)); err != nil {
		t.Fatal(err)
	}
	if out, _ := docker(ctx, nil, "volume", "ls", "-q", "--filter", "name="+snapshotVolume(im.ID)); out != "" {
		t.Errorf("snapshot volume left after delete: %s", out)
	}
	if ims, err := b.Images(ctx); err != nil || len(ims) != 0 && containsImage(ims, im.ID) {
		t.Errorf("backend images after delete: %+v, %v", ims, err)
	}
	if out, _ := docker(ctx, nil, "ps", "-a", "--format", "{{.Names}}", "--filter", "name="+snapshotRepo); strings.Contains(out, strconv.Itoa(im.ID)) {
		t.Errorf("copy helpers left: %s", out)
	}
}

func containsImage(ims []Image, id int) bool {
	for _, im := range ims {
		if im.ID == id {
			return true
		}
	}
	return false
}
