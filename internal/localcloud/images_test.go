package localcloud

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

func TestImageCatalogue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	dist, _, err := e.do.Images.ListDistribution(e.ctx, &godo.ListOptions{PerPage: 200})
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for _, im := range dist {
		slugs = append(slugs, im.Slug)
		if im.Type != "base" || im.Status != "available" || !im.Public || im.ID < 100000000 || len(im.Regions) == 0 || im.MinDiskSize == 0 {
			t.Errorf("distribution image %+v: want base, available, public, a 9-digit id, regions and min_disk_size", im)
		}
	}
	for _, want := range []string{"debian-13-x64", "debian-12-x64", "ubuntu-24-04-x64", "ubuntu-22-04-x64"} {
		if !slices.Contains(slugs, want) {
			t.Errorf("ListDistribution lacks %s: %v", want, slugs)
		}
	}
	deb, _, err := e.do.Images.GetBySlug(e.ctx, "debian-13-x64")
	if err != nil || deb.Distribution != "Debian" || deb.Slug != "debian-13-x64" {
		t.Fatalf("GetBySlug(debian-13-x64) = %+v, %v", deb, err)
	}
	if byID, _, err := e.do.Images.GetByID(e.ctx, deb.ID); err != nil || byID.Slug != deb.Slug {
		t.Errorf("GetByID(%d) = %+v, %v", deb.ID, byID, err)
	}

	tests := []struct {
		name string
		call func() (*godo.Response, error)
		want int
	}{
		{"unknown slug", func() (*godo.Response, error) {
			_, r, err := e.do.Images.GetBySlug(e.ctx, "debian-99-x64")
			return r, err
		}, 404},
		{"unknown id", func() (*godo.Response, error) { _, r, err := e.do.Images.GetByID(e.ctx, 123); return r, err }, 404},
		{"delete distribution", func() (*godo.Response, error) { return e.do.Images.Delete(e.ctx, deb.ID) }, 422},
		{"rename distribution", func() (*godo.Response, error) {
			_, r, err := e.do.Images.Update(e.ctx, deb.ID, &godo.ImageUpdateRequest{Name: "x"})
			return r, err
		}, 422},
		{"snapshot of a distribution", func() (*godo.Response, error) {
			_, r, err := e.do.Snapshots.Get(e.ctx, strconv.Itoa(deb.ID))
			return r, err
		}, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.call()
			if er := apiError(t, err); er.Response.StatusCode != tt.want {
				t.Errorf("got %d %q, want %d", er.Response.StatusCode, er.Message, tt.want)
			}
		})
	}

	for _, list := range []func(context.Context, *godo.ListOptions) ([]godo.Image, *godo.Response, error){
		e.do.Images.ListUser, e.do.Images.ListApplication,
	} {
		if ims, _, err := list(e.ctx, nil); err != nil || len(ims) != 0 {
			t.Errorf("user/application images of a new account: %v, %v", ims, err)
		}
	}
	// Pagination as on every list.
	all, resp, err := e.do.Images.List(e.ctx, &godo.ListOptions{PerPage: 2})
	if err != nil || len(all) != 2 || resp.Meta.Total != len(distImages) || resp.Links.IsLastPage() {
		t.Errorf("first page of 2: %d images, meta %+v, %v", len(all), resp.Meta, err)
	}
}

func TestCreateImageChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	deb, _, err := e.do.Images.GetBySlug(e.ctx, "debian-13-x64")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		image godo.DropletCreateImage
		want  string // "" = created
	}{
		{"unknown slug", godo.DropletCreateImage{Slug: "debian-99-x64"}, msgInvalidImage},
		{"unknown id", godo.DropletCreateImage{ID: 4242}, msgInvalidImage},
		{"slug", godo.DropletCreateImage{Slug: "debian-13-x64"}, ""},
		{"distribution id", godo.DropletCreateImage{ID: deb.ID}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := createReq("img-" + strconv.Itoa(i))
			req.Image = tt.image
			d, _, err := e.do.Droplets.Create(e.ctx, req)
			if tt.want != "" {
				if er := apiError(t, err); er.Response.StatusCode != 422 || er.Message != tt.want {
					t.Errorf("got %d %q, want 422 %q", er.Response.StatusCode, er.Message, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Image.Slug != "debian-13-x64" || d.Image.ID != deb.ID {
				t.Errorf("droplet image %+v, want the catalogue's debian-13-x64", d.Image)
			}
		})
	}
}

// refusing is a MemoryBackend that boots only Debian, as the Docker one.
type refusing struct{ *routeLog }

func (refusing) CheckImage(slug string) error {
	if !strings.HasPrefix(slug, "debian-") {
		return errNotLocal(slug)
	}
	return nil
}

func TestCreateImageTheBackendCannotBoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{Backend: refusing{&routeLog{}}})
	req := createReq("ubu")
	_, _, err := e.do.Droplets.Create(e.ctx, req)
	if er := apiError(t, err); er.Response.StatusCode != 422 || !strings.Contains(er.Message, "not available in this local cloud") {
		t.Errorf("ubuntu on a Debian-only backend: %d %q", er.Response.StatusCode, er.Message)
	}
	req.Image = godo.DropletCreateImage{Slug: "debian-12-x64"}
	if _, _, err := e.do.Droplets.Create(e.ctx, req); err != nil {
		t.Errorf("debian-12-x64: %v", err)
	}
}

// act runs a droplet action through godo and returns it, or the API error.
func (e *env) act(id int, typ, name string) (*godo.Action, error) {
	da := e.do.DropletActions
	var a *godo.Action
	var err error
	switch typ {
	case "power_off":
		a, _, err = da.PowerOff(e.ctx, id)
	case "power_on":
		a, _, err = da.PowerOn(e.ctx, id)
	case "shutdown":
		a, _, err = da.Shutdown(e.ctx, id)
	case "reboot":
		a, _, err = da.Reboot(e.ctx, id)
	case "rename":
		a, _, err = da.Rename(e.ctx, id, name)
	case "snapshot":
		a, _, err = da.Snapshot(e.ctx, id, name)
	default:
		a, _, err = da.Resize(e.ctx, id, typ, false)
	}
	return a, err
}

// waitDropletAction polls the action through the droplet's actions URL, as
// godo's DropletActions.Get does.
func (e *env) waitDropletAction(dropletID, id int) *godo.Action {
	e.t.Helper()
	var a *godo.Action
	eventually(e.t, 15*time.Second, "droplet action "+strconv.Itoa(id), func() bool {
		var err error
		a, _, err = e.do.DropletActions.Get(e.ctx, dropletID, id)
		if err != nil {
			e.t.Fatal(err)
		}
		return a.Status != "in-progress"
	})
	return a
}

func TestDropletActions(t *testing.T) {
	t.Parallel()
	// Long enough that the checks made while an action runs see it run,
	// even on a busy machine under -race.
	e := newEnv(t, Options{ActionDelay: time.Second})
	d, _ := e.create("web-1")
	e.waitActive(d.ID)
	steps := []struct {
		typ, name  string
		wantErr    string // a 422 containing this, or "" for an action
		wantStatus string // the droplet's status after it
		wantName   string
	}{
		{"power_on", "", "already powered on", "active", "web-1"},
		{"resize", "", "not supported", "active", "web-1"},
		{"rename", "bad name!", "invalid", "active", "web-1"},
		{"power_off", "", "", "off", "web-1"},
		{"power_off", "", "", "off", "web-1"}, // already off: completes
		{"shutdown", "", "", "off", "web-1"},
		{"reboot", "", "", "active", "web-1"}, // an off droplet boots
		{"shutdown", "", "", "off", "web-1"},
		{"power_on", "", "", "active", "web-1"},
		{"reboot", "", "", "active", "web-1"},
		{"rename", "web-renamed", "", "active", "web-renamed"},
	}
	for i, st := range steps {
		a, err := e.act(d.ID, st.typ, st.name)
		if st.wantErr != "" {
			if er := apiError(t, err); er.Response.StatusCode != 422 || !strings.Contains(er.Message, st.wantErr) {
				t.Errorf("step %d %s: got %d %q, want 422 with %q", i, st.typ, er.Response.StatusCode, er.Message, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d %s: %v", i, st.typ, err)
		}
		if a.Status != "in-progress" || a.Type != st.typ || a.ResourceID != d.ID || a.ResourceType != "droplet" || a.RegionSlug != "nyc3" {
			t.Errorf("step %d: action %+v", i, a)
		}
		if got := e.droplet(d.ID); !got.Locked {
			t.Errorf("step %d %s: droplet not locked while its action runs", i, st.typ)
		}
		if _, err := e.act(d.ID, "reboot", ""); err == nil || !strings.Contains(apiError(t, err).Message, "pending event") {
			t.Errorf("step %d: a second action while one runs: %v", i, err)
		}
		if a = e.waitDropletAction(d.ID, a.ID); a.Status != "completed" || a.CompletedAt == nil {
			t.Errorf("step %d %s: action ended %s", i, st.typ, a.Status)
		}
		got := e.droplet(d.ID)
		if got.Status != st.wantStatus || got.Name != st.wantName || got.Locked {
			t.Errorf("step %d %s: droplet %s %q locked=%v, want %s %q", i, st.typ, got.Status, got.Name, got.Locked, st.wantStatus, st.wantName)
		}
		if ip, err := got.PublicIPv4(); err != nil || ip == "" {
			t.Errorf("step %d: an %s droplet keeps its address: %q, %v", i, got.Status, ip, err)
		}
	}
	acts, _, err := e.do.Droplets.Actions(e.ctx, d.ID, &godo.ListOptions{PerPage: 200})
	if err != nil || len(acts) != 9 || acts[0].Type != "rename" || acts[len(acts)-1].Type != "create" {
		t.Errorf("droplet actions: %d, %v", len(acts), err)
	}
	if _, err := e.act(999, "power_off", ""); apiError(t, err).Response.StatusCode != 404 {
		t.Errorf("unknown droplet: %v", err)
	}
	if _, _, err := e.do.DropletActions.Get(e.ctx, d.ID, 1); apiError(t, err).Response.StatusCode != 404 {
		t.Errorf("unknown action: %v", err)
	}
}

func TestDropletActionErrored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	d, _ := e.create("web-1")
	e.waitActive(d.ID)
	e.srv.AddFault(Fault{Kind: FaultErrored, Action: "power_off"})
	a, err := e.act(d.ID, "power_off", "")
	if err != nil {
		t.Fatal(err)
	}
	if a = e.waitDropletAction(d.ID, a.ID); a.Status != "errored" {
		t.Errorf("power_off with an errored fault: %s", a.Status)
	}
	if got := e.droplet(d.ID); got.Status != "active" || got.Locked {
		t.Errorf("after an errored power_off: %s locked=%v, want active and unlocked", got.Status, got.Locked)
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{ActionDelay: time.Second})
	d, _ := e.create("web-1")
	e.waitActive(d.ID)
	a, err := e.act(d.ID, "snapshot", "web-snap")
	if err != nil {
		t.Fatal(err)
	}
	if a.Type != "snapshot" || a.Status != "in-progress" {
		t.Fatalf("snapshot action %+v", a)
	}
	if snaps, _, _ := e.do.Snapshots.List(e.ctx, nil); len(snaps) != 0 {
		t.Errorf("a snapshot in progress is listed: %+v", snaps)
	}
	if a = e.waitAction(a.ID); a.Status != "completed" {
		t.Fatalf("snapshot ended %s", a.Status)
	}

	// As DigitalOcean's Terraform provider finds it: the droplet's
	// snapshot whose created_at is the action's started_at.
	ds, _, err := e.do.Droplets.Snapshots(e.ctx, d.ID, &godo.ListOptions{PerPage: 200})
	if err != nil || len(ds) != 1 {
		t.Fatalf("droplet snapshots: %+v, %v", ds, err)
	}
	im := ds[0]
	created, _ := time.Parse("2006-01-02T15:04:05Z", im.Created)
	if (godo.Timestamp{Time: created}) != *a.StartedAt || im.Name != "web-snap" || im.Type != "snapshot" || im.MinDiskSize != 25 {
		t.Errorf("droplet snapshot %+v, action started %v", im, a.StartedAt)
	}
	sn, _, err := e.do.Snapshots.Get(e.ctx, strconv.Itoa(im.ID))
	if err != nil || sn.ResourceID != strconv.Itoa(d.ID) || sn.ResourceType != "droplet" || sn.Name != "web-snap" || !slices.Equal(sn.Regions, []string{"nyc3"}) {
		t.Errorf("Snapshots.Get = %+v, %v", sn, err)
	}
	for name, list := range map[string]func() (int, error){
		"Snapshots.List":        func() (int, error) { l, _, err := e.do.Snapshots.List(e.ctx, nil); return len(l), err },
		"Snapshots.ListDroplet": func() (int, error) { l, _, err := e.do.Snapshots.ListDroplet(e.ctx, nil); return len(l), err },
		"Images.ListUser":       func() (int, error) { l, _, err := e.do.Images.ListUser(e.ctx, nil); return len(l), err },
	} {
		if n, err := list(); n != 1 || err != nil {
			t.Errorf("%s: %d, %v; want the snapshot", name, n, err)
		}
	}
	if l, _, err := e.do.Snapshots.ListVolume(e.ctx, nil); len(l) != 0 || err != nil {
		t.Errorf("volume snapshots: %v, %v", l, err)
	}
	if got := e.droplet(d.ID); !slices.Equal(got.SnapshotIDs, []int{im.ID}) {
		t.Errorf("droplet snapshot_ids %v, want [%d]", got.SnapshotIDs, im.ID)
	}
	gi, _, err := e.do.Images.GetByID(e.ctx, im.ID)
	if err != nil || gi.Type != "snapshot" || gi.Public || gi.Slug != "" || gi.Distribution != "Ubuntu" {
		t.Errorf("Images.GetByID = %+v, %v", gi, err)
	}

	// A droplet from the snapshot: only in its region, on a disk as big.
	tests := []struct {
		name, region, size string
		want               int
	}{
		{"other region", "fra1", "s-1vcpu-1gb", 422},
		{"from snapshot", "nyc3", "s-1vcpu-1gb", 202},
	}
	var from *godo.Droplet
	for _, tt := range tests {
		req := createReq("from-snap")
		req.Region, req.Size, req.Image = tt.region, tt.size, godo.DropletCreateImage{ID: im.ID}
		d2, resp, err := e.do.Droplets.Create(e.ctx, req)
		if tt.want != 202 {
			if er := apiError(t, err); er.Response.StatusCode != tt.want {
				t.Errorf("%s: %d %q", tt.name, er.Response.StatusCode, er.Message)
			}
			continue
		}
		if err != nil || resp.StatusCode != 202 {
			t.Fatalf("%s: %v", tt.name, err)
		}
		from = d2
	}
	if got := e.waitActive(from.ID); got.Image.ID != im.ID || got.Image.Type != "snapshot" {
		t.Errorf("droplet from snapshot has image %+v", got.Image)
	}

	if u, _, err := e.do.Images.Update(e.ctx, im.ID, &godo.ImageUpdateRequest{Name: "renamed"}); err != nil || u.Name != "renamed" {
		t.Errorf("Images.Update: %+v, %v", u, err)
	}
	if _, err := e.do.Snapshots.Delete(e.ctx, strconv.Itoa(im.ID)); err != nil {
		t.Fatal(err)
	}
	for name, get := range map[string]func() error{
		"Images.GetByID": func() error { _, _, err := e.do.Images.GetByID(e.ctx, im.ID); return err },
		"Snapshots.Get":  func() error { _, _, err := e.do.Snapshots.Get(e.ctx, strconv.Itoa(im.ID)); return err },
		"Images.Delete":  func() error { _, err := e.do.Images.Delete(e.ctx, im.ID); return err },
	} {
		if er := apiError(t, get()); er.Response.StatusCode != 404 {
			t.Errorf("%s after delete: %d", name, er.Response.StatusCode)
		}
	}
	if got := e.droplet(d.ID); len(got.SnapshotIDs) != 0 {
		t.Errorf("snapshot_ids after delete: %v", got.SnapshotIDs)
	}
	// Default name, as DigitalOcean's: <droplet>-<unix ms>.
	a, err = e.act(d.ID, "snapshot", "")
	if err != nil {
		t.Fatal(err)
	}
	e.waitAction(a.ID)
	if ds, _, _ := e.do.Droplets.Snapshots(e.ctx, d.ID, nil); len(ds) != 1 || !strings.HasPrefix(ds[0].Name, "web-1-17") {
		t.Errorf("unnamed snapshot: %+v", ds)
	}
}

func TestSnapshotErroredOrDeleted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cause func(e *env, dropletID int)
	}{
		{"errored fault", func(e *env, _ int) { e.srv.AddFault(Fault{Kind: FaultErrored, Action: "snapshot"}) }},
		{"droplet deleted", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Options{ActionDelay: 500 * time.Millisecond})
			d, _ := e.create("web-1")
			e.waitActive(d.ID)
			if tt.cause != nil {
				tt.cause(e, d.ID)
			}
			a, err := e.act(d.ID, "snapshot", "s")
			if err != nil {
				t.Fatal(err)
			}
			if tt.cause == nil {
				if _, err := e.do.Droplets.Delete(e.ctx, d.ID); err != nil {
					t.Fatal(err)
				}
			}
			if a = e.waitAction(a.ID); a.Status != "errored" {
				t.Errorf("snapshot ended %s, want errored", a.Status)
			}
			if ims, _, _ := e.do.Images.ListUser(e.ctx, nil); len(ims) != 0 {
				t.Errorf("a failed snapshot is listed: %+v", ims)
			}
		})
	}
}

// engine is a fake Docker engine's image store, shared by several
// backends (local clouds).
type engine struct {
	mu      sync.Mutex
	images  map[int]Image
	deleted []int
}

// sharedBackend is a Lister and Snapshotter whose images live in an engine.
type sharedBackend struct {
	*machines
	eng   *engine
	block chan struct{} // if set, Snapshot waits for it (or ctx)
}

func (b *sharedBackend) Snapshot(ctx context.Context, _ int, img Image) error {
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.eng.mu.Lock()
	defer b.eng.mu.Unlock()
	img.SizeGigabytes = 3.25 // the backend measures it
	b.eng.images[img.ID] = img
	return nil
}

func (b *sharedBackend) DeleteImage(_ context.Context, id int) error {
	b.eng.mu.Lock()
	defer b.eng.mu.Unlock()
	delete(b.eng.images, id)
	b.eng.deleted = append(b.eng.deleted, id)
	return nil
}

func (b *sharedBackend) Images(context.Context) ([]Image, error) {
	b.eng.mu.Lock()
	defer b.eng.mu.Unlock()
	var out []Image
	for _, im := range b.eng.images {
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func TestSnapshotsSharedByLocalClouds(t *testing.T) {
	t.Parallel()
	eng := &engine{images: map[int]Image{}}
	a := startEnv(t, Options{Backend: &sharedBackend{machines: newMachines(0), eng: eng}}, nil)
	b := startEnv(t, Options{Backend: &sharedBackend{machines: newMachines(0), eng: eng}}, nil)
	d, _ := a.create("web-1")
	a.waitActive(d.ID)
	act, err := a.act(d.ID, "snapshot", "bake")
	if err != nil {
		t.Fatal(err)
	}
	a.waitAction(act.ID)
	ims, _, err := a.do.Images.ListUser(a.ctx, nil)
	if err != nil || len(ims) != 1 || ims[0].SizeGigaBytes != 3.25 {
		t.Fatalf("the snapshot, with the size the backend measured: %+v, %v", ims, err)
	}
	id := ims[0].ID
	// The other local cloud sees it within imageRefreshEvery, and can
	// boot it and delete it.
	eventually(t, 3*imageRefreshEvery, "the other local cloud lists the snapshot", func() bool {
		l, _, err := b.do.Images.ListUser(b.ctx, nil)
		return err == nil && len(l) == 1 && l[0].ID == id && l[0].Name == "bake"
	})
	req := createReq("from-a")
	req.Image = godo.DropletCreateImage{ID: id}
	d2, _, err := b.do.Droplets.Create(b.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b.waitActive(d2.ID)
	if _, err := b.do.Images.Delete(b.ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*imageRefreshEvery, "the first local cloud forgets the deleted snapshot", func() bool {
		_, _, err := a.do.Images.GetByID(a.ctx, id)
		return err != nil && apiError(t, err).Response.StatusCode == http.StatusNotFound
	})
}

func TestSnapshotInterruptedByRestart(t *testing.T) {
	t.Parallel()
	path := statePath(t)
	eng := &engine{images: map[int]Image{}}
	block := make(chan struct{})
	be := &sharedBackend{machines: newMachines(0), eng: eng}
	e := startEnv(t, Options{StatePath: path, Backend: be}, nil)
	d, _ := e.create("web-1")
	e.waitActive(d.ID)
	done, err := e.act(d.ID, "snapshot", "kept")
	if err != nil {
		t.Fatal(err)
	}
	e.waitAction(done.ID)
	be.block = block // the next snapshot hangs until the server stops
	cut, err := e.act(d.ID, "snapshot", "cut")
	if err != nil {
		t.Fatal(err)
	}
	pendingID := 0
	e.srv.mu.Lock()
	for id, im := range e.srv.images {
		if im.status == imagePending {
			pendingID = id
		}
	}
	e.srv.mu.Unlock()
	e.srv.Close()

	e2 := startEnv(t, Options{StatePath: path, Backend: &sharedBackend{machines: be.machines, eng: eng}}, nil)
	if a, _, err := e2.do.Actions.Get(e2.ctx, cut.ID); err != nil || a.Status != "errored" {
		t.Errorf("the interrupted snapshot: %+v, %v; want errored", a, err)
	}
	ims, _, err := e2.do.Images.ListUser(e2.ctx, nil)
	if err != nil || len(ims) != 1 || ims[0].Name != "kept" {
		t.Errorf("images after the restart: %+v, %v; want only the finished one", ims, err)
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if pendingID == 0 || !slices.Contains(eng.deleted, pendingID) {
		t.Errorf("the interrupted snapshot %d was not deleted from the backend (deleted %v)", pendingID, eng.deleted)
	}
	if got := e2.droplet(d.ID); got.Locked {
		t.Error("the droplet stays locked after the restart")
	}
}

func TestStateKeepsImagesAndOff(t *testing.T) {
	t.Parallel()
	path := statePath(t)
	e := startEnv(t, Options{StatePath: path}, nil)
	d, _ := e.create("web-1")
	e.waitActive(d.ID)
	for _, typ := range []string{"snapshot", "power_off"} {
		a, err := e.act(d.ID, typ, "snap")
		if err != nil {
			t.Fatal(err)
		}
		e.waitAction(a.ID)
	}
	before, _, _ := e.do.Images.ListUser(e.ctx, nil)
	e.srv.Close()
	e2 := startEnv(t, Options{StatePath: path}, nil)
	after, _, err := e2.do.Images.ListUser(e2.ctx, nil)
	if err != nil || len(before) != 1 || !slices.EqualFunc(before, after, func(a, b godo.Image) bool {
		return a.ID == b.ID && a.Name == b.Name && a.Created == b.Created
	}) {
		t.Errorf("images before %+v, after %+v (%v)", before, after, err)
	}
	if got := e2.droplet(d.ID); got.Status != "off" || !slices.Equal(got.SnapshotIDs, []int{before[0].ID}) {
		t.Errorf("droplet after restart: %s %v", got.Status, got.SnapshotIDs)
	}
}
