package cloud

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// A bake's calls against the local API (contract checked): power off,
// snapshot (twice: the second finds the first, no second POST), list by
// prefix, create from the snapshot's ID, delete; slugs known and not.
func TestImagesAgainstLocalAPI(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	d := e.create(t, "blog-bake-aaaaaa", "fleet-deploy:aaaaaa")
	ready, err := e.c.WaitReady(ctx, d, 0, quick)
	if err != nil {
		t.Fatal(err)
	}
	tq := quick
	tq.Shutdown, tq.Snapshot = quick.Create, quick.Create
	if err := e.c.PowerOff(ctx, ready.ID, tq); err != nil {
		t.Fatalf("power off: %v", err)
	}
	if g, err := e.c.GetDroplet(ctx, ready.ID); err != nil || g.Status != "off" {
		t.Fatalf("after power off: %+v, %v", g, err)
	}
	if err := e.c.PowerOff(ctx, ready.ID, tq); err != nil {
		t.Fatalf("power off when off: %v", err)
	}
	img, err := e.c.Snapshot(ctx, ready.ID, "fleet-blog-0123456789ab", tq)
	if err != nil || img.ID == 0 || img.Name != "fleet-blog-0123456789ab" {
		t.Fatalf("snapshot: %+v, %v", img, err)
	}
	again, err := e.c.Snapshot(ctx, ready.ID, "fleet-blog-0123456789ab", tq)
	if err != nil || again.ID != img.ID {
		t.Fatalf("second snapshot: %+v, %v; want %d again", again, err, img.ID)
	}
	path := fmt.Sprintf("/v2/droplets/%d/actions", ready.ID)
	if n := e.srv.Stats().Count("POST", path); n != 2 { // shutdown, snapshot
		t.Errorf("%d POSTs to %s, want 2 (shutdown, one snapshot)", n, path)
	}
	snaps, err := e.c.Snapshots(ctx, "fleet-blog-")
	if err != nil || len(snaps) != 1 || snaps[0].ID != img.ID || !snaps[0].InRegion(ready.Region) {
		t.Fatalf("snapshots: %+v, %v", snaps, err)
	}
	if other, err := e.c.Snapshots(ctx, "fleet-shop-"); err != nil || len(other) != 0 {
		t.Errorf("another prefix: %+v, %v", other, err)
	}
	from, _, err := e.c.CreateDroplet(ctx, CreateRequest{Name: "blog-v1-0-0-bbbbbb", Region: ready.Region, Size: "s-1vcpu-1gb", ImageID: img.ID, DeployTag: "fleet-deploy:bbbbbb"})
	if err != nil {
		t.Fatalf("create from the snapshot: %v", err)
	}
	if _, err := e.c.WaitReady(ctx, from, 0, quick); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteSnapshot(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteSnapshot(ctx, img.ID); err != nil {
		t.Errorf("deleting a deleted snapshot: %v", err)
	}
	if s, err := e.c.ImageBySlug(ctx, "debian-13-x64"); err != nil || !s.Public {
		t.Errorf("debian-13-x64: %+v, %v", s, err)
	}
	if _, err := e.c.ImageBySlug(ctx, "fleet-blog-0123456789ab"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a snapshot's name as a slug: %v, want ErrNotFound", err)
	}
}
