package localcloud

// Droplet actions: power_off, shutdown, power_on, reboot, rename and
// snapshot at POST /v2/droplets/{id}/actions, as DigitalOcean runs them:
// the answer is a 201 with the action "in-progress"; the droplet is locked
// until it completes (another action, or a reserved IP assign, is a 422
// "Droplet already has a pending event."). The action waits
// Options.ActionDelay, then the backend does the work (Powerer, Renamer,
// Snapshotter); the change (status, name, a snapshot image) shows when the
// action completes. A backend error, the droplet's deletion or an
// "errored" fault ends it "errored" with nothing changed.
//
// Choices where DigitalOcean's documents say nothing:
//   - power_off and shutdown of an "off" droplet complete at once (DO's
//     Terraform provider relies on shutdown not failing there); power_on of
//     an "active" droplet is a 422; reboot of an "off" droplet powers it on.
//   - snapshot of a running droplet is allowed (DigitalOcean takes live
//     snapshots; power off first for a consistent one); without a name it
//     is named <droplet>-<unix milliseconds>, like DigitalOcean's.
//   - A snapshot image's created_at is its action's started_at (to the
//     second), which DigitalOcean's Terraform provider uses to find it.
//
// A droplet action still in progress when the server stopped ends errored
// on the next start (the status the backend reports, if it is a Lister,
// stays the truth); an interrupted snapshot's image is deleted from the
// backend, so no half image is ever listed.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// dropletActionTypes are the droplet actions served.
var dropletActionTypes = []string{"power_off", "shutdown", "power_on", "reboot", "rename", "snapshot"}

func (s *Server) postDropletAction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type string  `json:"type"`
		Name *string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.droplets[id]
	if !ok || d == nil {
		notFound(w, r)
		return
	}
	switch {
	case req.Type == "":
		unprocessable(w, r, "Action type is required.")
		return
	case !slices.Contains(dropletActionTypes, req.Type):
		unprocessable(w, r, "Action type %q is not supported by this local cloud (it serves %s).",
			cut(req.Type, 64), strings.Join(dropletActionTypes, ", "))
		return
	case d.pending > 0:
		unprocessable(w, r, "Droplet already has a pending event.")
		return
	}
	var name string
	switch req.Type {
	case "power_on":
		if d.status == "active" {
			unprocessable(w, r, "Droplet is already powered on.")
			return
		}
	case "rename":
		if req.Name == nil || *req.Name == "" {
			unprocessable(w, r, "Name is required to rename a Droplet.")
			return
		}
		name = *req.Name
		if len(name) > 255 || !dropletNamePattern.MatchString(name) {
			unprocessable(w, r, "Name %q is invalid: only letters, numbers, periods and dashes are allowed.", cut(name, 64))
			return
		}
	case "snapshot":
		if req.Name != nil {
			name = strings.TrimSpace(*req.Name)
		}
		if len(name) > maxImageName {
			unprocessable(w, r, "Snapshot name is limited to %d characters.", maxImageName)
			return
		}
	}
	a := s.newAction(req.Type, "droplet", d.id, d.region, d.id)
	if req.Type == "snapshot" {
		if name == "" {
			name = fmt.Sprintf("%s-%d", d.name, a.started.UnixMilli())
		}
		size, _ := findSize(d.size)
		im := &image{
			id: s.newImageID(), name: name, distribution: d.image.Distribution,
			regions: []string{d.region}, created: a.started, minDisk: size.Disk,
			sizeGB: 1.0, dropletID: d.id, status: imagePending, action: a.id,
		}
		if !validDistribution(im.distribution) {
			im.distribution = "Unknown"
		}
		s.images[im.id] = im
	}
	s.runDropletAction(d, a, name)
	s.save()
	writeJSON(w, http.StatusCreated, map[string]any{"action": s.actionJSON(a)})
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// pendingImage is the snapshot image action a makes. s.mu must be held.
func (s *Server) pendingImage(a *action) *image {
	for _, im := range s.images {
		if im.action == a.id && im.status == imagePending {
			return im
		}
	}
	return nil
}

// machineOf is the Machine of droplet d. s.mu must be held.
func (s *Server) machineOf(d *droplet) Machine {
	m := Machine{
		ID: d.id, Name: d.name, Region: d.region, Size: d.size, UserData: d.userData,
		SSHKeys: slices.Clone(d.sshKeys), PublicIPv4: d.ipv4, PrivateIPv4: d.privateIPv4, Tags: slices.Clone(d.tags),
		SnapshotID: d.snapshotID, Status: d.status, Monitoring: d.monitoring,
	}
	// Faults hold or fail the guest's boot, a power on's or reboot's too.
	m.Holds, m.VendorFail = s.bootFaults(d.name)
	if d.image.Slug != nil {
		m.Image = *d.image.Slug
	} else {
		m.Image = strconv.Itoa(d.image.ID)
	}
	return m
}

// runDropletAction runs action a on droplet d in the background (name is
// a rename's new name). s.mu must be held.
func (s *Server) runDropletAction(d *droplet, a *action, name string) {
	ctx, cancel := context.WithCancel(s.ctx)
	d.actionCancel = cancel
	id, actionID, typ := d.id, a.id, a.typ
	started := s.goBackground(func() {
		defer cancel()
		if delay := s.opts.ActionDelay; delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		s.mu.Lock()
		a, d := s.actions[actionID], s.droplets[id]
		if s.closed && s.ctx.Err() != nil {
			s.mu.Unlock()
			return // shutting down: the next start ends it
		}
		if d == nil || ctx.Err() != nil || s.erroredAction(typ) {
			if d != nil && ctx.Err() == nil {
				s.logf("localcloud: %s action %d on droplet %d errored (fault)", typ, actionID, id)
			}
			s.failDropletAction(a)
			s.mu.Unlock()
			return
		}
		m := s.machineOf(d)
		var img Image
		if im := s.pendingImage(a); im != nil {
			img = im.backendImage()
		}
		s.mu.Unlock()

		err := s.doDropletAction(ctx, typ, m, name, img)
		if err == nil && typ == "snapshot" {
			s.refreshImages(ctx, true) // its real size
		}

		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed && s.ctx.Err() != nil {
			return
		}
		d = s.droplets[id]
		switch {
		case d == nil || err != nil:
			if err != nil {
				s.logf("localcloud: %s action %d on droplet %d: %v", typ, actionID, id, err)
			}
			s.failDropletAction(a)
			return
		case typ == "power_off" || typ == "shutdown":
			d.status = "off"
		case typ == "power_on" || typ == "reboot":
			d.status = "active"
		case typ == "rename":
			d.name = name
		case typ == "snapshot":
			if im := s.pendingImage(a); im != nil {
				im.status, im.seen = imageAvailable, time.Now()
			}
		}
		s.finishAction(a, true)
	})
	if !started {
		cancel()
		s.failDropletAction(a)
	}
}

// failDropletAction ends a errored; a snapshot's image is forgotten and
// deleted from the backend in the background. s.mu must be held.
func (s *Server) failDropletAction(a *action) {
	if a == nil {
		return
	}
	if im := s.pendingImage(a); im != nil {
		delete(s.images, im.id)
		s.deleteBackendImage(im.id)
	}
	s.finishAction(a, false)
}

// deleteBackendImage removes what a failed snapshot left in the backend,
// in the background (bounded). s.mu must be held.
func (s *Server) deleteBackendImage(imageID int) {
	sn, ok := s.backend.(Snapshotter)
	if !ok {
		return
	}
	del := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), time.Minute)
		defer cancel()
		if err := sn.DeleteImage(ctx, imageID); err != nil {
			s.logf("localcloud: removing what the failed snapshot %d left: %v", imageID, err)
		}
	}
	if !s.goBackground(del) {
		del() // closing: Close waits for nothing more, so do it now
	}
}

// doDropletAction asks the backend to do what action typ does.
func (s *Server) doDropletAction(ctx context.Context, typ string, m Machine, name string, img Image) error {
	pw, powers := s.backend.(Powerer)
	switch typ {
	case "power_off", "shutdown":
		if m.Status == "off" {
			return nil
		}
		if !powers {
			return errNoSupport(typ)
		}
		return pw.PowerOff(ctx, m.ID, typ == "shutdown")
	case "power_on", "reboot":
		if !powers {
			return errNoSupport(typ)
		}
		if m.Status == "off" {
			return pw.PowerOn(ctx, m)
		}
		return pw.Reboot(ctx, m)
	case "rename":
		if rn, ok := s.backend.(Renamer); ok {
			return rn.Rename(ctx, m.ID, name)
		}
		return nil
	case "snapshot":
		sn, ok := s.backend.(Snapshotter)
		if !ok {
			return errNoSupport(typ)
		}
		return sn.Snapshot(ctx, m.ID, img)
	}
	return errNoSupport(typ)
}

func errNoSupport(typ string) error {
	return fmt.Errorf("the backend cannot %s droplets", strings.ReplaceAll(typ, "_", " "))
}

func (s *Server) getDropletAction(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	aid, aok := pathID(r, "action")
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[aid]
	if !ok || !aok || s.droplets[id] == nil || a == nil || a.resourceType != "droplet" || a.resourceID != id {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": s.actionJSON(a)})
}

// endDropletActions ends the droplet actions (other than create) that a
// stopped server left in progress: errored, and an interrupted snapshot's
// image deleted from the backend. Pending images without an action in
// progress are forgotten. NewServer calls it before the server is shared.
func (s *Server) endDropletActions() {
	for _, a := range s.sortedActions(func(a *action) bool {
		return a.status == statusInProgress && a.resourceType == "droplet" && a.typ != "create"
	}) {
		s.logf("localcloud: state: %s action %d on droplet %d was in progress when the server stopped; errored", a.typ, a.id, a.resourceID)
		if im := s.pendingImage(a); im != nil {
			delete(s.images, im.id)
			if sn, ok := s.backend.(Snapshotter); ok {
				ctx, cancel := context.WithTimeout(s.ctx, time.Minute)
				if err := sn.DeleteImage(ctx, im.id); err != nil {
					s.logf("localcloud: state: removing the interrupted snapshot %d: %v", im.id, err)
				}
				cancel()
			}
		}
		s.finishAction(a, false)
	}
	for id, im := range s.images {
		if a := s.actions[im.action]; im.status == imagePending && (a == nil || a.status != statusInProgress) {
			delete(s.images, id)
		}
	}
}
