package localcloud

// State persistence (Options.StatePath).
//
// The whole API state (droplets with their addresses and tags, actions,
// SSH keys, tags, reserved IPs and their assignments, the id counters and
// the account/project/VPC ids) is one JSON document. Address pools need no
// record of their own: the next droplet address is the lowest one no
// droplet holds, the next reserved IP the lowest one not reserved.
//
// Guarantee: a mutating API request (any method but GET and HEAD) is
// answered only after the state containing its effect is on disk (written
// to a temporary file in the same directory, fsynced, renamed over the
// state file, directory fsynced; mode 0600). If that write fails, the
// client gets a 500 naming the file. Changes made in the background (a
// boot finishing, a reserved IP action completing) are written by a
// background writer soon after, and Close flushes whatever is left. A crash
// before such a background write leaves the action in progress on disk,
// and the next start finishes it again (Boot is re-run, Route re-applied),
// so losing it is harmless.
//
// Cost: s.save() (with s.mu held) only marks the state dirty. A writer
// copies the state under s.mu, then encodes and writes it outside the lock;
// concurrent requests share one write (group commit).
//
// On start (NewServer) an existing state file is loaded; a file that does
// not parse is an error naming it, as is one of a newer format version.
// If the Backend is a Lister, the state is reconciled with its machines
// (they are the truth): droplets without a machine are removed, unknown
// machines are adopted, and every correction is logged. Then in-progress
// reserved IP actions complete (Route is re-applied), every assigned
// reserved IP is routed again, and droplets still "new" boot again.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stateVersion is the format version this code writes and reads (2 added
// images, droplet status "off" and snapshot_id; version 1 files read as
// having none).
const stateVersion = 2

// stateStore is the persistence side of a Server.
type stateStore struct {
	path string
	kick chan struct{} // wakes the background writer; capacity 1
	gen  uint64        // bumped by save; guarded by Server.mu

	wmu     sync.Mutex // serializes writes; held during file I/O
	written uint64     // gen of the state on disk; guarded by wmu
}

type stateFile struct {
	Version     int               `json:"version"`
	Saved       time.Time         `json:"saved"`
	AccountID   string            `json:"account_id"`
	ProjectID   string            `json:"project_id"`
	VPCID       string            `json:"vpc_id"`
	NextIDs     stateIDs          `json:"next_ids"`
	TagSeq      int               `json:"tag_seq"`
	Droplets    []stateDroplet    `json:"droplets"`
	Actions     []stateAction     `json:"actions"`
	Keys        []stateKey        `json:"ssh_keys"`
	Tags        []stateTag        `json:"tags"`
	ReservedIPs []stateReservedIP `json:"reserved_ips"`
	Images      []stateImage      `json:"images,omitempty"`
}

type stateImage struct {
	ID           int       `json:"id"`
	Name         string    `json:"name"`
	Distribution string    `json:"distribution"`
	Description  string    `json:"description,omitempty"`
	Regions      []string  `json:"regions"`
	Created      time.Time `json:"created"`
	MinDisk      int       `json:"min_disk_size"`
	SizeGB       float64   `json:"size_gigabytes"`
	DropletID    int       `json:"droplet_id"`
	Status       string    `json:"status"`
	Action       int       `json:"action,omitempty"`
}

// stateIDs are the last ids handed out.
type stateIDs struct {
	Droplet int `json:"droplet"`
	Action  int `json:"action"`
	Key     int `json:"key"`
}

type stateDroplet struct {
	ID           int       `json:"id"`
	Name         string    `json:"name"`
	Region       string    `json:"region"`
	Size         string    `json:"size"`
	Image        imageJSON `json:"image"`
	UserData     string    `json:"user_data,omitempty"`
	SSHKeys      []string  `json:"ssh_keys,omitempty"`
	Tags         []string  `json:"tags,omitempty"`
	Created      time.Time `json:"created"`
	Status       string    `json:"status"`
	IPv4         string    `json:"ipv4"`
	PrivateIPv4  string    `json:"private_ipv4"`
	CreateAction int       `json:"create_action,omitempty"`
	SnapshotID   int       `json:"snapshot_id,omitempty"`
	Monitoring   bool      `json:"monitoring,omitempty"`
	IPv6         bool      `json:"ipv6,omitempty"`
	Backups      bool      `json:"backups,omitempty"`
	VPCUUID      string    `json:"vpc_uuid,omitempty"`
}

type stateAction struct {
	ID           int       `json:"id"`
	Type         string    `json:"type"`
	Status       string    `json:"status"`
	Started      time.Time `json:"started"`
	Completed    time.Time `json:"completed,omitzero"`
	ResourceID   int       `json:"resource_id"`
	ResourceType string    `json:"resource_type"`
	Region       string    `json:"region,omitempty"`
	Locks        []int     `json:"locks,omitempty"`
	ReservedIP   string    `json:"reserved_ip,omitempty"`
}

type stateKey struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
}

type stateTag struct {
	Name string `json:"name"`
	Seq  int    `json:"seq"`
}

type stateReservedIP struct {
	IP        string `json:"ip"`
	Region    string `json:"region"`
	DropletID int    `json:"droplet_id,omitempty"`
	Pending   int    `json:"pending_action,omitempty"`
	Created   int    `json:"created"`
}

// save marks the state changed: a mutating request waits for it to be
// written before it is answered, and the background writer writes it
// otherwise. s.mu must be held.
func (s *Server) save() {
	if s.state == nil {
		return
	}
	s.state.gen++
	select {
	case s.state.kick <- struct{}{}:
	default:
	}
}

// syncState writes the state if it changed since the last write, and
// returns once the state as of the call is on disk.
func (s *Server) syncState() error {
	st := s.state
	if st == nil {
		return nil
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	s.mu.Lock()
	gen := st.gen
	if gen == st.written {
		s.mu.Unlock()
		return nil
	}
	snap := s.snapshot()
	s.mu.Unlock()
	b, err := json.MarshalIndent(snap, "", "\t")
	if err == nil {
		err = writeFileAtomic(st.path, append(b, '\n'))
	}
	if err != nil {
		return fmt.Errorf("localcloud: saving state to %s: %w", st.path, err)
	}
	st.written = gen
	return nil
}

// stateWriter writes background changes until the server is closed.
func (s *Server) stateWriter() {
	defer s.wg.Done()
	for {
		select {
		case <-s.state.kick:
			if err := s.syncState(); err != nil {
				s.logf("%v", err)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// closeState flushes the state; Close calls it after the background
// goroutines have stopped.
func (s *Server) closeState() {
	if err := s.syncState(); err != nil {
		s.logf("%v", err)
	}
}

// routeDurably routes r; for a mutating request with persistence on, it
// holds the response back until the state is on disk.
func (s *Server) routeDurably(w http.ResponseWriter, r *http.Request) {
	if s.state == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.route(w, r)
		return
	}
	held := &heldResponse{header: w.Header()}
	s.route(held, r)
	if err := s.syncState(); err != nil {
		s.logf("%v", err)
		writeError(w, r, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	held.sendTo(w)
}

// heldResponse buffers a response (its headers go straight to the real
// writer's header map, which is sent only with the status).
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }
func (h *heldResponse) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *heldResponse) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *heldResponse) sendTo(w http.ResponseWriter) {
	if h.status == 0 {
		return
	}
	w.WriteHeader(h.status)
	w.Write(h.body.Bytes())
}

// snapshot copies the state; s.mu must be held. Nothing in the result
// shares mutable memory with the server.
func (s *Server) snapshot() *stateFile {
	f := &stateFile{
		Version: stateVersion, Saved: time.Now().UTC(),
		AccountID: s.accountID, ProjectID: s.projectID, VPCID: s.vpcID,
		NextIDs: stateIDs{Droplet: s.nextID.droplet, Action: s.nextID.action, Key: s.nextID.key},
		TagSeq:  s.tagSeq,
		// Never null, so the file reads the same whatever is in it.
		Droplets: []stateDroplet{}, Actions: []stateAction{}, Keys: []stateKey{},
		Tags: []stateTag{}, ReservedIPs: []stateReservedIP{},
	}
	for _, d := range s.sortedDroplets(func(*droplet) bool { return true }) {
		img := d.image
		img.Regions, img.Tags = slices.Clone(img.Regions), slices.Clone(img.Tags)
		f.Droplets = append(f.Droplets, stateDroplet{
			ID: d.id, Name: d.name, Region: d.region, Size: d.size, Image: img,
			UserData: d.userData, SSHKeys: slices.Clone(d.sshKeys), Tags: slices.Clone(d.tags),
			Created: d.created, Status: d.status, IPv4: d.ipv4, PrivateIPv4: d.privateIPv4,
			CreateAction: d.createAction, SnapshotID: d.snapshotID,
			Monitoring: d.monitoring, IPv6: d.ipv6, Backups: d.backups, VPCUUID: d.vpc,
		})
	}
	acts := s.sortedActions(func(*action) bool { return true })
	slices.Reverse(acts) // oldest first
	for _, a := range acts {
		f.Actions = append(f.Actions, stateAction{
			ID: a.id, Type: a.typ, Status: a.status, Started: a.started, Completed: a.completed,
			ResourceID: a.resourceID, ResourceType: a.resourceType, Region: a.region,
			Locks: slices.Clone(a.locks), ReservedIP: a.reservedIP,
		})
	}
	for _, k := range s.keys {
		f.Keys = append(f.Keys, stateKey{ID: k.id, Name: k.name, PublicKey: k.publicKey, Fingerprint: k.fingerprint})
	}
	for _, t := range s.tags {
		f.Tags = append(f.Tags, stateTag{Name: t.name, Seq: t.seq})
	}
	sort.Slice(f.Tags, func(i, j int) bool { return f.Tags[i].Seq < f.Tags[j].Seq })
	for _, rip := range s.rips {
		f.ReservedIPs = append(f.ReservedIPs, stateReservedIP{
			IP: rip.ip, Region: rip.region, DropletID: rip.dropletID, Pending: rip.pending, Created: rip.created,
		})
	}
	sort.Slice(f.ReservedIPs, func(i, j int) bool { return f.ReservedIPs[i].Created < f.ReservedIPs[j].Created })
	for _, im := range s.images {
		f.Images = append(f.Images, stateImage{
			ID: im.id, Name: im.name, Distribution: im.distribution, Description: im.description,
			Regions: slices.Clone(im.regions), Created: im.created, MinDisk: im.minDisk, SizeGB: im.sizeGB,
			DropletID: im.dropletID, Status: im.status, Action: im.action,
		})
	}
	sort.Slice(f.Images, func(i, j int) bool { return f.Images[i].ID < f.Images[j].ID })
	return f
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsynced and renamed over path, then the directory fsynced.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // best effort: not every platform can sync a directory
		d.Close()
	}
	return nil
}

// tempPrefix is the name prefix of the temporary files of a state file.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// readStateFile reads and checks a state file; nil if there is none.
func readStateFile(path string) (*stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("localcloud: reading state file: %w", err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("localcloud: state file %s is corrupt: %s (move it away to start with an empty cloud)", path, fmt.Sprintf(format, args...))
	}
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, corrupt("%v", err)
	}
	switch {
	case head.Version > stateVersion:
		return nil, fmt.Errorf("localcloud: state file %s has format version %d, but this fleet reads version %d at most: use a newer fleet, or move the file away", path, head.Version, stateVersion)
	case head.Version < 1:
		return nil, corrupt("no format version")
	}
	var f stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, corrupt("data after the state")
	}
	if err := f.check(); err != nil {
		return nil, corrupt("%v", err)
	}
	return &f, nil
}

// check finds what no server could have written.
func (f *stateFile) check() error {
	seen := map[int]bool{}
	ips := map[string]bool{}
	for _, d := range f.Droplets {
		switch {
		case d.ID <= 0 || seen[d.ID]:
			return fmt.Errorf("droplet id %d is invalid or repeated", d.ID)
		case d.Status != "new" && d.Status != "active" && d.Status != "off":
			return fmt.Errorf("droplet %d has status %q", d.ID, d.Status)
		case net.ParseIP(d.IPv4).To4() == nil:
			return fmt.Errorf("droplet %d has address %q", d.ID, d.IPv4)
		}
		seen[d.ID] = true
	}
	clear(seen)
	for _, a := range f.Actions {
		switch {
		case a.ID <= 0 || seen[a.ID]:
			return fmt.Errorf("action id %d is invalid or repeated", a.ID)
		case a.Status != statusInProgress && a.Status != statusCompleted && a.Status != statusErrored:
			return fmt.Errorf("action %d has status %q", a.ID, a.Status)
		}
		seen[a.ID] = true
	}
	clear(seen)
	for _, k := range f.Keys {
		if k.ID <= 0 || seen[k.ID] || k.Fingerprint == "" {
			return fmt.Errorf("SSH key id %d is invalid or repeated", k.ID)
		}
		seen[k.ID] = true
	}
	names := map[string]bool{}
	for _, t := range f.Tags {
		if !validTag(t.Name) || names[t.Name] {
			return fmt.Errorf("tag %q is invalid or repeated", t.Name)
		}
		names[t.Name] = true
	}
	for _, r := range f.ReservedIPs {
		if net.ParseIP(r.IP).To4() == nil || ips[r.IP] {
			return fmt.Errorf("reserved IP %q is invalid or repeated", r.IP)
		}
		ips[r.IP] = true
	}
	clear(seen)
	for _, im := range f.Images {
		if im.ID <= 0 || seen[im.ID] || (im.Status != imagePending && im.Status != imageAvailable) {
			return fmt.Errorf("image id %d is invalid or repeated, or has status %q", im.ID, im.Status)
		}
		seen[im.ID] = true
	}
	return nil
}

// restore loads Options.StatePath, reconciles with a Lister backend,
// finishes what was in progress and starts the state writer. NewServer
// calls it before the server is shared; it starts goroutines only once
// nothing can fail any more.
func (s *Server) restore() error {
	if s.opts.StatePath != "" {
		s.state = &stateStore{path: s.opts.StatePath, kick: make(chan struct{}, 1)}
		dir, base := filepath.Split(s.opts.StatePath)
		if dir == "" {
			dir = "."
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("localcloud: state directory: %w", err)
		}
		// Temporary files of a write a crash interrupted.
		if stale, _ := filepath.Glob(filepath.Join(dir, tempPrefix(base)+"*")); len(stale) > 0 {
			for _, p := range stale {
				os.Remove(p)
			}
		}
		f, err := readStateFile(s.opts.StatePath)
		if err != nil {
			return err
		}
		if f != nil {
			s.load(f)
			s.logf("localcloud: state: loaded %s: %d droplets, %d reserved IPs, %d SSH keys",
				s.opts.StatePath, len(s.droplets), len(s.rips), len(s.keys))
		}
	}
	var unrouted []string
	if l, ok := s.backend.(Lister); ok {
		machines, err := l.List(s.ctx)
		if err != nil {
			return fmt.Errorf("localcloud: listing the backend's machines: %w", err)
		}
		unrouted = s.reconcile(machines)
	}
	routed := s.resumeReservedIPActions()
	s.endDropletActions()
	s.refreshImages(s.ctx, true)
	for _, ip := range unrouted {
		if err := s.backend.Route(s.ctx, ip, ""); err != nil {
			s.logf("localcloud: state: unrouting %s: %v", ip, err)
		}
	}
	// Forwarding comes back for every assigned reserved IP.
	for _, rip := range s.sortedReservedIPs() {
		d := s.droplets[rip.dropletID]
		if d == nil || routed[rip.ip] {
			continue
		}
		if err := s.backend.Route(s.ctx, rip.ip, d.ipv4); err != nil {
			s.logf("localcloud: state: routing %s to droplet %d: %v", rip.ip, d.id, err)
		}
	}
	if s.state != nil {
		s.mu.Lock()
		s.save()
		s.mu.Unlock()
		if err := s.syncState(); err != nil {
			return err
		}
		s.wg.Add(1)
		go s.stateWriter()
	}
	// Droplets still new boot again (Backend.Boot is idempotent).
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.sortedDroplets(func(d *droplet) bool { return d.status == "new" }) {
		a := s.actions[d.createAction]
		if a == nil || a.status != statusInProgress {
			continue // its create action failed: it stays new, as before the restart
		}
		if s.stuckNew(d.name) {
			s.logf("localcloud: droplet %d %q is stuck new (fault)", d.id, d.name)
			continue
		}
		s.logf("localcloud: state: droplet %d %q was booting; booting it again", d.id, d.name)
		s.boot(d, a)
	}
	return nil
}

// load replaces the (empty) state with f's.
func (s *Server) load(f *stateFile) {
	s.accountID, s.projectID, s.vpcID = f.AccountID, f.ProjectID, f.VPCID
	s.nextID.droplet = max(s.nextID.droplet, f.NextIDs.Droplet)
	s.nextID.action = max(s.nextID.action, f.NextIDs.Action)
	s.nextID.key = max(s.nextID.key, f.NextIDs.Key)
	s.tagSeq = f.TagSeq
	for _, t := range f.Tags {
		s.tags[t.Name] = &tag{name: t.Name, seq: t.Seq}
		s.tagSeq = max(s.tagSeq, t.Seq)
	}
	for _, k := range f.Keys {
		s.keys = append(s.keys, &sshKey{id: k.ID, name: k.Name, publicKey: k.PublicKey, fingerprint: k.Fingerprint})
		s.nextID.key = max(s.nextID.key, k.ID)
	}
	for _, sd := range f.Droplets {
		d := &droplet{
			id: sd.ID, name: sd.Name, region: sd.Region, size: sd.Size, image: sd.Image,
			userData: sd.UserData, sshKeys: sd.SSHKeys, tags: sd.Tags, created: sd.Created,
			status: sd.Status, ipv4: sd.IPv4, privateIPv4: sd.PrivateIPv4, createAction: sd.CreateAction,
			snapshotID: sd.SnapshotID,
			monitoring: sd.Monitoring, ipv6: sd.IPv6, backups: sd.Backups, vpc: sd.VPCUUID,
		}
		s.droplets[d.id] = d
		s.nextID.droplet = max(s.nextID.droplet, d.id)
		s.ensureTags(d)
	}
	for _, sa := range f.Actions {
		a := &action{
			id: sa.ID, typ: sa.Type, status: sa.Status, started: sa.Started, completed: sa.Completed,
			resourceID: sa.ResourceID, resourceType: sa.ResourceType, region: sa.Region,
			locks: sa.Locks, reservedIP: sa.ReservedIP,
		}
		s.actions[a.id] = a
		s.nextID.action = max(s.nextID.action, a.id)
		if a.status == statusInProgress {
			for _, id := range a.locks {
				if d := s.droplets[id]; d != nil {
					d.pending++
				}
			}
		}
	}
	for _, sr := range f.ReservedIPs {
		rip := &reservedIP{ip: sr.IP, region: sr.Region, dropletID: sr.DropletID, pending: sr.Pending, created: sr.Created}
		if rip.dropletID != 0 && s.droplets[rip.dropletID] == nil {
			s.logf("localcloud: state: reserved IP %s was assigned to unknown droplet %d; unassigning it", rip.ip, rip.dropletID)
			rip.dropletID = 0
		}
		if a := s.actions[rip.pending]; rip.pending != 0 && (a == nil || a.status != statusInProgress) {
			rip.pending = 0
		}
		s.rips[rip.ip] = rip
	}
	for _, si := range f.Images {
		s.images[si.ID] = &image{
			id: si.ID, name: si.Name, distribution: si.Distribution, description: si.Description,
			regions: si.Regions, created: si.Created, minDisk: si.MinDisk, sizeGB: si.SizeGB,
			dropletID: si.DropletID, status: si.Status, action: si.Action,
		}
	}
}

// ensureTags creates the tags d carries that do not exist. s.mu must be
// held (or the server not yet shared).
func (s *Server) ensureTags(d *droplet) {
	for _, t := range d.tags {
		if s.tags[t] == nil {
			s.tagSeq++
			s.tags[t] = &tag{name: t, seq: s.tagSeq}
		}
	}
}

// reconcile makes the droplets match the backend's machines, logging every
// correction, and returns the reserved IPs it unassigned. A droplet still
// booting may not have its machine yet: it is kept and booted again.
func (s *Server) reconcile(machines []Machine) (unrouted []string) {
	byID := map[int]Machine{}
	for _, m := range machines {
		if _, dup := byID[m.ID]; dup || m.ID <= 0 {
			s.logf("localcloud: state: ignoring backend machine %d %q: invalid or repeated id", m.ID, m.Name)
			continue
		}
		byID[m.ID] = m
	}
	for _, d := range s.sortedDroplets(func(*droplet) bool { return true }) {
		m, ok := byID[d.id]
		if !ok {
			if a := s.actions[d.createAction]; d.status == "new" && a != nil && a.status == statusInProgress {
				continue
			}
			s.logf("localcloud: state: droplet %d %q has no machine in the backend; removing it", d.id, d.name)
			unrouted = append(unrouted, s.removeDroplet(d)...)
			continue
		}
		if st := m.Status; (st == "off" || st == "active") && d.status != "new" && d.status != st {
			s.logf("localcloud: state: droplet %d %q is %s in the backend, not %s; taking the backend's", d.id, d.name, st, d.status)
			d.status = st
		}
		if m.PublicIPv4 != "" && m.PublicIPv4 != d.ipv4 && net.ParseIP(m.PublicIPv4).To4() != nil {
			s.logf("localcloud: state: droplet %d %q has address %s in the backend, not %s; taking the backend's", d.id, d.name, m.PublicIPv4, d.ipv4)
			d.ipv4 = m.PublicIPv4
			d.privateIPv4 = privateIPFor(d.region, d.ipv4)
		}
		if p := s.recordedPrivateIP(m, d.region); p != "" && p != d.privateIPv4 {
			s.logf("localcloud: state: droplet %d %q has private address %s in the backend, not %s; taking the backend's", d.id, d.name, p, d.privateIPv4)
			d.privateIPv4 = p
		}
	}
	ids := make([]int, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		if s.droplets[id] == nil {
			s.adopt(byID[id])
		}
		s.nextID.droplet = max(s.nextID.droplet, id)
	}
	for _, ip := range unrouted {
		s.logf("localcloud: state: reserved IP %s is unassigned (its droplet is gone)", ip)
	}
	return unrouted
}

// adopt makes a droplet of a machine the state did not know.
func (s *Server) adopt(m Machine) {
	d := &droplet{
		id: m.ID, name: m.Name, region: m.Region, size: m.Size, userData: m.UserData,
		sshKeys: slices.Clone(m.SSHKeys), created: time.Now(), status: "active", ipv4: m.PublicIPv4,
	}
	if d.name == "" {
		d.name = "droplet-" + strconv.Itoa(m.ID)
	}
	if _, ok := findRegion(d.region); !ok {
		d.region = regionNames[0].slug
	}
	if _, ok := findSize(d.size); !ok {
		d.size = sizeTable[0].slug
	}
	image := m.Image
	if image == "" {
		image = "unknown"
	}
	d.image = imageFor(image)
	if n, err := strconv.Atoi(image); err == nil && n > 0 {
		if im := s.images[n]; im != nil {
			d.image, d.snapshotID = im.json(), n
		} else if _, dist := findDistImage(image); !dist {
			d.image.ID, d.image.Slug, d.image.Name = n, nil, "image-"+image
		}
	}
	for _, t := range m.Tags {
		if validTag(t) && !slices.Contains(d.tags, t) {
			d.tags = append(d.tags, t)
		}
	}
	if net.ParseIP(d.ipv4).To4() == nil {
		d.ipv4 = s.allocDropletIP()
		s.logf("localcloud: state: backend machine %d %q has no address; giving it %s", m.ID, d.name, d.ipv4)
	}
	for _, o := range s.droplets {
		if o.ipv4 == d.ipv4 {
			s.logf("localcloud: state: backend machine %d %q has address %s, which droplet %d also has", m.ID, d.name, d.ipv4, o.id)
		}
	}
	d.privateIPv4 = cmp.Or(s.recordedPrivateIP(m, d.region), privateIPFor(d.region, d.ipv4))
	s.droplets[d.id] = d
	s.ensureTags(d)
	if m.Status == "off" {
		d.status = "off"
	} else if !m.Booted {
		d.status = "new"
		a := s.newAction("create", "droplet", d.id, d.region, d.id)
		d.createAction = a.id
	}
	s.logf("localcloud: state: adopted backend machine %d %q (%s, %s) as a droplet", d.id, d.name, d.ipv4, d.status)
}

// privateIPFor is the private address that goes with public address ip
// in region's default VPC: the VPC's prefix and ip's last octet. Public
// droplet addresses are unique on the engine, so private ones are unique in
// their VPC.
func privateIPFor(region, ip string) string {
	return vpcPrefix(region) + ".0." + ip[strings.LastIndexByte(ip, '.')+1:]
}

// recordedPrivateIP is m's PrivateIPv4 if it is a host of region's VPC
// range; otherwise "" (and a log line if m had one).
func (s *Server) recordedPrivateIP(m Machine, region string) string {
	if m.PrivateIPv4 == "" {
		return ""
	}
	if err := checkPrivateIP(region, m.PrivateIPv4); err != nil {
		s.logf("localcloud: state: backend machine %d %q: ignoring its private address: %v", m.ID, m.Name, err)
		return ""
	}
	return m.PrivateIPv4
}

func (s *Server) sortedReservedIPs() []*reservedIP {
	list := make([]*reservedIP, 0, len(s.rips))
	for _, rip := range s.rips {
		list = append(list, rip)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].created < list[j].created })
	return list
}

// resumeReservedIPActions completes the reserved IP assign/unassign
// actions that were in progress, re-applying their Route, and returns the
// reserved IPs it routed.
func (s *Server) resumeReservedIPActions() map[string]bool {
	routed := map[string]bool{}
	var pending []*action
	for _, a := range s.actions {
		if a.status == statusInProgress && a.resourceType == "reserved_ip" {
			pending = append(pending, a)
		}
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i].id < pending[j].id })
	for _, a := range pending {
		// startAssign locks [current droplet, target]: an assign's target
		// is its last lock.
		target := 0
		if a.typ == "assign_ip" && len(a.locks) > 0 {
			target = a.locks[len(a.locks)-1]
		}
		rip := s.rips[a.reservedIP]
		dst := ""
		if d := s.droplets[target]; d != nil {
			dst = d.ipv4
		}
		if rip == nil || (a.typ != "assign_ip" && a.typ != "unassign_ip") || (a.typ == "assign_ip" && dst == "") {
			s.logf("localcloud: state: %s action %d on %s cannot complete (its reserved IP or droplet is gone); errored", a.typ, a.id, a.reservedIP)
			s.finishAction(a, false)
			continue
		}
		if err := s.backend.Route(s.ctx, rip.ip, dst); err != nil {
			s.logf("localcloud: state: %s action %d on %s: route: %v; errored", a.typ, a.id, rip.ip, err)
			s.finishAction(a, false)
			continue
		}
		routed[rip.ip] = true
		rip.dropletID = target
		s.finishAction(a, true)
		s.logf("localcloud: state: %s action %d on %s was in progress; completed", a.typ, a.id, rip.ip)
	}
	return routed
}
