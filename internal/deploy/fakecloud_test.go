package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
)

// fakeCloud is cloud.Cloud in memory: droplets with tags and reserved IPs
// with their assignment, with faults injected per method. It is what the
// abort-path tests need to say where the IP is and what the tags say
// after a command failed halfway.
type fakeCloud struct {
	mu       sync.Mutex
	droplets map[int]*cloud.Droplet
	ips      map[string]*cloud.ReservedIP
	nextIP   int
	// pending assigns: started, not finished; Settle finishes them.
	pending map[string]pendingAssign
	faults  map[string]*fault
	calls   []string
	// Images: snapshots by ID, the droplet each was taken of, and the
	// request each droplet was created with.
	images    map[int]*cloud.Image
	imageOf   map[int]int
	created   map[int]cloud.CreateRequest
	nextImage int
	now       time.Time // the clock snapshots are stamped with; ticks a minute per snapshot
	// moved: when each IP's last assign took effect (LastMove).
	moved map[string]time.Time
	// assignDelay: how long an Assign takes (as the API's action does).
	assignDelay time.Duration
}

var _ cloud.Cloud = (*fakeCloud)(nil)

// faultMode is how an injected fault plays out.
type faultMode int

const (
	// failBefore: the call errors and changes nothing.
	failBefore faultMode = iota
	// failAfter: the call takes effect, then errors (a lost answer).
	failAfter
	// failPending: Assign/CreateReservedIP error while the assign action
	// still runs; it takes effect when Settle waits for it.
	failPending
	// failPendingLost: as failPending, but the action ends errored: the
	// IP stays where it was.
	failPendingLost
)

// fault is one injected failure. Keys: a method name ("Assign", "Settle",
// "ReservedIP", ...) or, for Tag and Untag, "Tag:<tag>" / "Untag:<tag>".
type fault struct {
	mode  faultMode
	err   error
	times int    // calls that fail; 0 = every call
	hook  func() // runs when the fault fires (e.g. cancel the command: Ctrl-C)
}

func (f fault) error() error {
	if f.err != nil {
		return f.err
	}
	return errors.New("injected failure")
}

type pendingAssign struct {
	dropletID int // 0: unassign
	effect    bool
}

func newFakeCloud() *fakeCloud {
	return &fakeCloud{
		droplets: map[int]*cloud.Droplet{},
		ips:      map[string]*cloud.ReservedIP{},
		pending:  map[string]pendingAssign{},
		faults:   map[string]*fault{},
		images:   map[int]*cloud.Image{},
		imageOf:  map[int]int{},
		created:  map[int]cloud.CreateRequest{},
		now:      time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC),
	}
}

func (c *fakeCloud) addDroplet(d cloud.Droplet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.Tags = slices.Clone(d.Tags)
	c.droplets[d.ID] = &d
}

func (c *fakeCloud) addIP(ip string, dropletID int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ips[ip] = &cloud.ReservedIP{IP: ip, Region: "fra1", DropletID: dropletID}
}

// inject sets the fault for key, replacing any earlier one.
func (c *fakeCloud) inject(key string, f fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults[key] = &f
}

// fire returns the fault for one of keys that is due, consuming it; the
// caller holds mu.
func (c *fakeCloud) fire(keys ...string) *fault {
	for _, k := range keys {
		f, ok := c.faults[k]
		if !ok {
			continue
		}
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				delete(c.faults, k)
			}
		}
		if f.hook != nil {
			f.hook()
		}
		return f
	}
	return nil
}

func (c *fakeCloud) logCall(format string, args ...any) {
	c.calls = append(c.calls, fmt.Sprintf(format, args...))
}

func notFound(what string) error {
	return &cloud.APIError{Op: what, Status: http.StatusNotFound, Message: "The resource you were accessing could not be found."}
}

// holder is the droplet ip points at (0: none; -1: no such IP).
func (c *fakeCloud) holder(ip string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.ips[ip]
	if !ok {
		return -1
	}
	return r.DropletID
}

// tags is the droplet's tags without the project's and version's, sorted.
func (c *fakeCloud) tags(id int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.droplets[id]
	if !ok {
		return []string{"(destroyed)"}
	}
	var out []string
	for _, t := range d.Tags {
		if !strings.HasPrefix(t, "fleet:") && !strings.HasPrefix(t, versionTagPrefix) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

func (c *fakeCloud) EnsureSSHKeys(_ context.Context, keys []cloud.SSHKey) ([]string, error) {
	var fps []string
	for _, k := range keys {
		fps = append(fps, k.Fingerprint)
	}
	return fps, nil
}

func (c *fakeCloud) CreateDroplet(ctx context.Context, req cloud.CreateRequest) (*cloud.Droplet, int, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("CreateDroplet %s", req.Name)
	if f := c.fire("CreateDroplet"); f != nil && f.mode == failBefore {
		return nil, 0, f.error()
	}
	id := 1000 + len(c.droplets)
	for c.droplets[id] != nil || c.created[id].Name != "" { // IDs are never reused
		id++
	}
	d := &cloud.Droplet{ID: id, Name: req.Name, Status: "active", Region: req.Region, Size: req.Size, Tags: append(slices.Clone(req.Tags), req.DeployTag)}
	c.droplets[id] = d
	c.created[id] = req
	cp := *d
	return &cp, 0, nil
}

func (c *fakeCloud) WaitReady(ctx context.Context, d *cloud.Droplet, _ int, _ cloud.Timeouts) (*cloud.Droplet, error) {
	return c.GetDroplet(ctx, d.ID)
}

func (c *fakeCloud) GetDroplet(ctx context.Context, id int) (*cloud.Droplet, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fire("GetDroplet"); f != nil {
		return nil, f.error()
	}
	d, ok := c.droplets[id]
	if !ok {
		return nil, notFound(fmt.Sprintf("get droplet %d", id))
	}
	cp := *d
	cp.Tags = slices.Clone(d.Tags)
	return &cp, nil
}

func (c *fakeCloud) ListByTag(ctx context.Context, tag string) ([]cloud.Droplet, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fire("ListByTag"); f != nil {
		return nil, f.error()
	}
	var out []cloud.Droplet
	for _, d := range c.droplets {
		if d.HasTag(tag) {
			cp := *d
			cp.Tags = slices.Clone(d.Tags)
			out = append(out, cp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (c *fakeCloud) DeleteDroplet(ctx context.Context, id int) error {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("DeleteDroplet %d", id)
	f := c.fire("DeleteDroplet")
	if f != nil && f.mode == failBefore {
		return f.error()
	}
	delete(c.droplets, id)
	for _, r := range c.ips {
		if r.DropletID == id {
			r.DropletID = 0
		}
	}
	if f != nil {
		return f.error()
	}
	return nil
}

func (c *fakeCloud) Tag(ctx context.Context, id int, tag string) error {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Tag %d %s", id, tag)
	f := c.fire("Tag:"+tag, "Tag")
	if f != nil && f.mode == failBefore {
		return f.error()
	}
	d, ok := c.droplets[id]
	if !ok {
		return notFound(fmt.Sprintf("tag droplet %d %s", id, tag))
	}
	if !d.HasTag(tag) {
		d.Tags = append(d.Tags, tag)
	}
	if f != nil {
		return f.error()
	}
	return nil
}

func (c *fakeCloud) Untag(ctx context.Context, id int, tag string) error {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Untag %d %s", id, tag)
	f := c.fire("Untag:"+tag, "Untag")
	if f != nil && f.mode == failBefore {
		return f.error()
	}
	if d, ok := c.droplets[id]; ok {
		d.Tags = slices.DeleteFunc(d.Tags, func(t string) bool { return t == tag })
	}
	if f != nil {
		return f.error()
	}
	return nil
}

func (c *fakeCloud) ReservedIP(ctx context.Context, ip string) (*cloud.ReservedIP, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fire("ReservedIP"); f != nil {
		return nil, f.error()
	}
	r, ok := c.ips[ip]
	if !ok {
		return nil, notFound("get reserved IP " + ip)
	}
	cp := *r
	return &cp, nil
}

func (c *fakeCloud) ListReservedIPs(ctx context.Context) ([]cloud.ReservedIP, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fire("ListReservedIPs"); f != nil {
		return nil, f.error()
	}
	var out []cloud.ReservedIP
	for _, r := range c.ips {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP < out[j].IP })
	return out, nil
}

func (c *fakeCloud) CreateReservedIP(ctx context.Context, id int, _ cloud.Timeouts, record func(ip string) error) (*cloud.ReservedIP, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	c.logCall("CreateReservedIP %d", id)
	f := c.fire("CreateReservedIP")
	if f != nil && f.mode == failBefore {
		c.mu.Unlock()
		return nil, f.error()
	}
	if _, ok := c.droplets[id]; !ok {
		c.mu.Unlock()
		return nil, notFound(fmt.Sprintf("droplet %d", id))
	}
	c.nextIP++
	ip := fmt.Sprintf("198.51.100.%d", c.nextIP)
	c.ips[ip] = &cloud.ReservedIP{IP: ip, Region: "fra1"}
	c.mu.Unlock()
	// The API made the address; record runs outside the lock (it tags).
	if record != nil {
		if err := record(ip); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f != nil {
		switch f.mode {
		case failPending:
			c.pending[ip] = pendingAssign{dropletID: id, effect: true}
		case failPendingLost:
			c.pending[ip] = pendingAssign{dropletID: id}
		case failAfter:
			c.ips[ip].DropletID = id
		}
		return nil, f.error()
	}
	c.ips[ip].DropletID = id
	cp := *c.ips[ip]
	return &cp, nil
}

func (c *fakeCloud) Assign(ctx context.Context, ip string, id int, t cloud.Timeouts) error {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return err
	}
	c.mu.Lock()
	delay := c.assignDelay
	c.mu.Unlock()
	time.Sleep(delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Idle {
		c.logCall("Assign %s %d (idle)", ip, id)
	} else {
		c.logCall("Assign %s %d", ip, id)
	}
	return c.assign("Assign", ip, id)
}

func (c *fakeCloud) WaitIdle(ctx context.Context, id int, _ cloud.Timeouts) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("WaitIdle %d", id)
	if f := c.fire("WaitIdle"); f != nil {
		return f.error()
	}
	return nil
}

func (c *fakeCloud) Unassign(ctx context.Context, ip string, _ cloud.Timeouts) error {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Unassign %s", ip)
	return c.assign("Unassign", ip, 0)
}

// assign moves ip to id (0: detach) under the method's fault; the caller
// holds mu.
func (c *fakeCloud) assign(method, ip string, id int) error {
	r, ok := c.ips[ip]
	if !ok {
		return notFound("reserved IP " + ip)
	}
	if _, ok := c.droplets[id]; id != 0 && !ok {
		return notFound(fmt.Sprintf("droplet %d", id))
	}
	if _, busy := c.pending[ip]; busy {
		return &cloud.APIError{Op: method + " " + ip, Status: http.StatusUnprocessableEntity, Message: "The reserved IP has a pending event."}
	}
	f := c.fire(method)
	if f == nil {
		r.DropletID = id
		c.markMoved(ip, id)
		return nil
	}
	switch f.mode {
	case failAfter:
		r.DropletID = id
	case failPending:
		c.pending[ip] = pendingAssign{dropletID: id, effect: true}
	case failPendingLost:
		c.pending[ip] = pendingAssign{dropletID: id}
	}
	return f.error()
}

// Settle finishes ip's pending action, then reads it: the fake's actions
// end exactly when someone waits for them.
func (c *fakeCloud) Settle(ctx context.Context, ip string, _ cloud.Timeouts) (*cloud.ReservedIP, error) {
	if err := ctx.Err(); err != nil { // a request on a cancelled context never leaves
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Settle %s", ip)
	f := c.fire("Settle")
	if f != nil && f.mode == failBefore {
		return nil, f.error()
	}
	r, ok := c.ips[ip]
	if !ok {
		return nil, notFound("reserved IP " + ip)
	}
	if p, ok := c.pending[ip]; ok {
		if p.effect {
			r.DropletID = p.dropletID
			c.markMoved(ip, p.dropletID)
		}
		delete(c.pending, ip)
	}
	if f != nil {
		return nil, f.error()
	}
	cp := *r
	return &cp, nil
}

// addImage stores a snapshot (of no droplet) and returns its ID.
func (c *fakeCloud) addImage(img cloud.Image) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextImage++
	img.ID = 5000 + c.nextImage
	img.Type = "snapshot"
	c.images[img.ID] = &img
	return img.ID
}

// imageNames lists the snapshots' names, sorted.
func (c *fakeCloud) imageNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, i := range c.images {
		out = append(out, i.Name)
	}
	sort.Strings(out)
	return out
}

func (c *fakeCloud) PowerOff(ctx context.Context, id int, _ cloud.Timeouts) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("PowerOff %d", id)
	if f := c.fire("PowerOff"); f != nil {
		return f.error()
	}
	d, ok := c.droplets[id]
	if !ok {
		return notFound(fmt.Sprintf("droplet %d", id))
	}
	d.Status = "off"
	return nil
}

// Snapshot is idempotent like the real one: a snapshot of the droplet
// with that name is returned, not made again. failAfter makes it, then
// errors.
func (c *fakeCloud) Snapshot(ctx context.Context, id int, name string, _ cloud.Timeouts) (*cloud.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Snapshot %d %s", id, name)
	for iid, src := range c.imageOf {
		if img := c.images[iid]; src == id && img != nil && img.Name == name {
			cp := *img
			return &cp, nil
		}
	}
	f := c.fire("Snapshot")
	if f != nil && f.mode == failBefore {
		return nil, f.error()
	}
	d, ok := c.droplets[id]
	if !ok {
		return nil, notFound(fmt.Sprintf("droplet %d", id))
	}
	c.nextImage++
	c.now = c.now.Add(time.Minute)
	img := &cloud.Image{ID: 5000 + c.nextImage, Name: name, Type: "snapshot", Regions: []string{d.Region}, CreatedAt: c.now, SizeGB: 2.5, MinDiskGB: 25}
	c.images[img.ID], c.imageOf[img.ID] = img, id
	if f != nil {
		return nil, f.error()
	}
	cp := *img
	return &cp, nil
}

func (c *fakeCloud) Snapshots(ctx context.Context, prefix string) ([]cloud.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.fire("Snapshots"); f != nil {
		return nil, f.error()
	}
	var out []cloud.Image
	for _, i := range c.images {
		if strings.HasPrefix(i.Name, prefix) {
			out = append(out, *i)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

func (c *fakeCloud) DeleteSnapshot(ctx context.Context, id int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("DeleteSnapshot %d", id)
	if f := c.fire("DeleteSnapshot"); f != nil {
		return f.error()
	}
	delete(c.images, id)
	delete(c.imageOf, id)
	return nil
}

// fakeSlugs are the distribution images the fake knows.
var fakeSlugs = map[string]bool{"debian-13-x64": true, "ubuntu-24-04-x64": true}

func (c *fakeCloud) ImageBySlug(ctx context.Context, slug string) (*cloud.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !fakeSlugs[slug] {
		return nil, notFound("get image " + slug)
	}
	return &cloud.Image{ID: 100, Slug: slug, Name: slug, Type: "base", Public: true, Regions: []string{"fra1", "nyc3"}}, nil
}

// fakePrices are DigitalOcean's prices of the sizes the tests use.
var fakePrices = map[string]cloud.Price{
	"s-1vcpu-512mb-10gb": {Monthly: 4, Hourly: 0.00595},
	"s-1vcpu-1gb":        {Monthly: 6, Hourly: 0.00893},
	"s-2vcpu-4gb":        {Monthly: 24, Hourly: 0.03571},
}

func (c *fakeCloud) Sizes(ctx context.Context) (map[string]cloud.Price, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("Sizes")
	if f := c.fire("Sizes"); f != nil {
		return nil, f.error()
	}
	return maps.Clone(fakePrices), nil
}

// markMoved records an assign that took effect; the caller holds mu.
func (c *fakeCloud) markMoved(ip string, id int) {
	if id == 0 {
		return
	}
	if c.moved == nil {
		c.moved = map[string]time.Time{}
	}
	c.moved[ip] = time.Now()
}

func (c *fakeCloud) LastMove(ctx context.Context, ip string) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.logCall("LastMove %s", ip)
	if f := c.fire("LastMove"); f != nil {
		return time.Time{}, f.error()
	}
	return c.moved[ip], nil
}
