package localcloud

// Images and snapshots: the distribution catalogue (catalog.go) and the
// account's snapshot images, served at /v2/images, /v2/snapshots and
// /v2/droplets/{id}/snapshots in DigitalOcean's shapes.
//
// A snapshot is made by a droplet's snapshot action (actions.go). It is
// "pending" (listed nowhere, not bootable) until the backend's Snapshot
// returns, then "available". The server keeps its images in its state;
// with a backend whose images outlive it (a Lister and Snapshotter:
// Docker), the backend is the truth, as for droplets: its images (those of
// every local cloud on the engine) are merged in, re-read at most every
// imageRefreshEvery on requests that read images, and an available image
// the backend no longer holds is dropped.

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	imagePending   = "pending"
	imageAvailable = "available"

	// imageRefreshEvery bounds how often the backend's images are re-read.
	imageRefreshEvery = 2 * time.Second
	// imageListTimeout bounds one read of the backend's images.
	imageListTimeout = 20 * time.Second
	// maxImageName bounds snapshot and image names.
	maxImageName = 255
)

type image struct {
	id           int
	name         string
	distribution string
	description  string
	regions      []string
	created      time.Time
	minDisk      int
	sizeGB       float64
	dropletID    int    // the droplet it was taken from
	status       string // imagePending or imageAvailable
	action       int    // the snapshot action that makes it
	seen         time.Time
}

type snapshotJSON struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	CreatedAt     string   `json:"created_at"`
	Regions       []string `json:"regions"`
	MinDiskSize   int      `json:"min_disk_size"`
	SizeGigabytes float64  `json:"size_gigabytes"`
	ResourceID    string   `json:"resource_id"`
	ResourceType  string   `json:"resource_type"`
	Tags          []string `json:"tags"`
}

type dropletSnapshotJSON struct {
	ID            int      `json:"id"`
	Name          string   `json:"name"`
	CreatedAt     string   `json:"created_at"`
	Regions       []string `json:"regions"`
	MinDiskSize   int      `json:"min_disk_size"`
	SizeGigabytes float64  `json:"size_gigabytes"`
	Type          string   `json:"type"`
}

func (im *image) json() imageJSON {
	return imageJSON{
		ID: im.id, Name: im.name, Type: "snapshot", Distribution: im.distribution,
		Public: false, Regions: slices.Clone(im.regions), CreatedAt: timestamp(im.created),
		MinDiskSize: im.minDisk, SizeGigabytes: im.sizeGB, Description: im.description,
		Tags: []string{}, Status: imageAvailable,
	}
}

func (im *image) snapshotJSON() snapshotJSON {
	return snapshotJSON{
		ID: strconv.Itoa(im.id), Name: im.name, CreatedAt: timestamp(im.created),
		Regions: slices.Clone(im.regions), MinDiskSize: im.minDisk, SizeGigabytes: im.sizeGB,
		ResourceID: strconv.Itoa(im.dropletID), ResourceType: "droplet", Tags: []string{},
	}
}

func (im *image) dropletSnapshotJSON() dropletSnapshotJSON {
	return dropletSnapshotJSON{
		ID: im.id, Name: im.name, CreatedAt: timestamp(im.created), Regions: slices.Clone(im.regions),
		MinDiskSize: im.minDisk, SizeGigabytes: im.sizeGB, Type: "snapshot",
	}
}

func (im *image) backendImage() Image {
	return Image{
		ID: im.id, Name: im.name, Distribution: im.distribution, Regions: slices.Clone(im.regions),
		Created: im.created, MinDiskSize: im.minDisk, SizeGigabytes: im.sizeGB, DropletID: im.dropletID,
	}
}

// snapshots returns the available snapshot images that keep says, oldest
// first. s.mu must be held.
func (s *Server) snapshots(keep func(*image) bool) []*image {
	var out []*image
	for _, im := range s.images {
		if im.status == imageAvailable && keep(im) {
			out = append(out, im)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].created.Equal(out[j].created) {
			return out[i].created.Before(out[j].created)
		}
		return out[i].id < out[j].id
	})
	return out
}

// newImageID returns a random 9-digit id no image has. s.mu must be held.
func (s *Server) newImageID() int {
	for {
		id := 100000000 + rand.IntN(900000000)
		if _, dist := findDistImage(strconv.Itoa(id)); s.images[id] == nil && !dist {
			return id
		}
	}
}

// sharedImages is the backend as a keeper of images that outlive the
// server, if it is one.
func (s *Server) sharedImages() (Snapshotter, bool) {
	sn, ok := s.backend.(Snapshotter)
	_, lister := s.backend.(Lister)
	return sn, ok && lister
}

// refreshImages merges the backend's images in, if it keeps images that
// outlive the server, at most every imageRefreshEvery unless force.
// s.mu must not be held.
func (s *Server) refreshImages(ctx context.Context, force bool) {
	sn, ok := s.sharedImages()
	if !ok {
		return
	}
	s.imageRefresh.Lock()
	defer s.imageRefresh.Unlock()
	s.mu.Lock()
	fresh := !s.imagesRead.IsZero() && time.Since(s.imagesRead) < imageRefreshEvery
	s.mu.Unlock()
	if fresh && !force {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, imageListTimeout)
	defer cancel()
	started := time.Now()
	list, err := sn.Images(ctx)
	if err != nil {
		s.logf("localcloud: reading the backend's images: %v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mergeImages(list, started)
	s.imagesRead = started
}

// mergeImages takes the backend's images as read at started: new ones are
// added, sizes updated, and available images made before started that the
// backend lacks are dropped. s.mu must be held.
func (s *Server) mergeImages(list []Image, started time.Time) {
	have := map[int]bool{}
	changed := false
	for _, bi := range list {
		if bi.ID <= 0 {
			continue
		}
		have[bi.ID] = true
		if im := s.images[bi.ID]; im != nil {
			if im.sizeGB != bi.SizeGigabytes && bi.SizeGigabytes > 0 {
				im.sizeGB, changed = bi.SizeGigabytes, true
			}
			continue
		}
		if _, dist := findDistImage(strconv.Itoa(bi.ID)); dist {
			continue
		}
		im := &image{
			id: bi.ID, name: bi.Name, distribution: bi.Distribution, regions: slices.Clone(bi.Regions),
			created: bi.Created, minDisk: bi.MinDiskSize, sizeGB: bi.SizeGigabytes, dropletID: bi.DropletID,
			status: imageAvailable, seen: started,
		}
		if !validDistribution(im.distribution) {
			im.distribution = "Unknown"
		}
		im.regions = slices.DeleteFunc(im.regions, func(r string) bool { _, ok := findRegion(r); return !ok })
		s.images[im.id] = im
		changed = true
	}
	for id, im := range s.images {
		if im.status == imageAvailable && !have[id] && im.seen.Before(started) {
			s.logf("localcloud: snapshot image %d %q is gone from the backend; forgetting it", id, im.name)
			delete(s.images, id)
			changed = true
		}
	}
	if changed {
		s.save()
	}
}

func validDistribution(d string) bool {
	switch d {
	case "Arch Linux", "CentOS", "CoreOS", "Debian", "Fedora", "Fedora Atomic", "FreeBSD",
		"Gentoo", "openSUSE", "RancherOS", "Rocky Linux", "Ubuntu", "Unknown":
		return true
	}
	return false
}

// ---- handlers ----

func (s *Server) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ, private, tagName := q.Get("type"), q.Get("private"), q.Get("tag_name")
	switch typ {
	case "", "distribution", "application", "snapshot":
	default:
		writeError(w, r, http.StatusBadRequest, "bad_request", "type must be distribution or application.")
		return
	}
	if private != "" && private != "true" && private != "false" {
		writeError(w, r, http.StatusBadRequest, "bad_request", "private must be true or false.")
		return
	}
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []imageJSON{}
	if tagName == "" && private != "true" && (typ == "" || typ == "distribution") {
		for _, d := range distImages {
			out = append(out, d.json())
		}
	}
	// type=snapshot is not in DigitalOcean's OpenAPI file (private=true is
	// the documented way to list an account's snapshots); it is answered
	// as the API does.
	if tagName == "" && (typ == "" || typ == "snapshot") {
		for _, im := range s.snapshots(func(*image) bool { return true }) {
			out = append(out, im.json())
		}
	}
	p, ok := paginate(w, r, len(out))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, listBody("images", out[p.lo:p.hi], p))
}

// findImage finds an available image by id, or a distribution image by
// slug. s.mu must be held.
func (s *Server) findImage(ref string) (imageJSON, *image, bool) {
	if d, ok := findDistImage(ref); ok {
		return d.json(), nil, true
	}
	id, err := strconv.Atoi(ref)
	if im := s.images[id]; err == nil && im != nil && im.status == imageAvailable {
		return im.json(), im, true
	}
	return imageJSON{}, nil, false
}

func (s *Server) getImage(w http.ResponseWriter, r *http.Request) {
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	j, _, ok := s.findImage(r.PathValue("id"))
	if !ok {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"image": j})
}

func (s *Server) updateImage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name         *string `json:"name"`
		Distribution *string `json:"distribution"`
		Description  *string `json:"description"`
	}
	if !decode(w, r, &req) {
		return
	}
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[id]
	if _, dist := findDistImage(strconv.Itoa(id)); dist {
		unprocessable(w, r, "Only snapshots and custom images can be updated.")
		return
	}
	if !ok || im == nil || im.status != imageAvailable {
		notFound(w, r)
		return
	}
	if req.Name != nil {
		if n := strings.TrimSpace(*req.Name); n == "" || len(n) > maxImageName {
			unprocessable(w, r, "Name must be 1 to %d characters.", maxImageName)
			return
		}
	}
	if req.Distribution != nil && !validDistribution(*req.Distribution) {
		unprocessable(w, r, "Distribution %q is not one of DigitalOcean's.", *req.Distribution)
		return
	}
	if req.Description != nil && len(*req.Description) > maxImageName {
		unprocessable(w, r, "Description is limited to %d characters.", maxImageName)
		return
	}
	// Kept by this server only: another local cloud sharing the backend's
	// images still sees the name the snapshot was made with.
	if req.Name != nil {
		im.name = strings.TrimSpace(*req.Name)
	}
	if req.Distribution != nil {
		im.distribution = *req.Distribution
	}
	if req.Description != nil {
		im.description = *req.Description
	}
	s.save()
	writeJSON(w, http.StatusOK, map[string]any{"image": im.json()})
}

func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	if _, dist := findDistImage(strconv.Itoa(id)); ok && dist {
		unprocessable(w, r, "Only snapshots and custom images can be deleted.")
		return
	}
	s.removeImage(w, r, id, ok)
}

// removeImage deletes available snapshot image id (the backend's first)
// and answers 204, or 404.
func (s *Server) removeImage(w http.ResponseWriter, r *http.Request, id int, ok bool) {
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	im := s.images[id]
	if !ok || im == nil || im.status != imageAvailable {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	s.mu.Unlock()
	if sn, ok := s.backend.(Snapshotter); ok {
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		err := sn.DeleteImage(ctx, id)
		cancel()
		if err != nil {
			s.logf("localcloud: deleting snapshot image %d: %v", id, err)
			writeError(w, r, http.StatusInternalServerError, "server_error", "Deleting the image failed; try again.")
			return
		}
	}
	s.mu.Lock()
	delete(s.images, id)
	s.save()
	s.mu.Unlock()
	writeNoContent(w)
}

func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	rt := r.URL.Query().Get("resource_type")
	if rt != "" && rt != "droplet" && rt != "volume" {
		writeError(w, r, http.StatusBadRequest, "bad_request", "resource_type must be droplet or volume.")
		return
	}
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []snapshotJSON{}
	if rt != "volume" {
		for _, im := range s.snapshots(func(*image) bool { return true }) {
			out = append(out, im.snapshotJSON())
		}
	}
	p, ok := paginate(w, r, len(out))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, listBody("snapshots", out[p.lo:p.hi], p))
}

// snapshotRef reads {id} of /v2/snapshots/{id}: a droplet snapshot's
// integer id (ok false: not one). A distribution image's id is answered
// with DigitalOcean's 400 "not a snapshot" (answered true).
func snapshotRef(w http.ResponseWriter, r *http.Request) (id int, ok, answered bool) {
	id, ok = pathID(r, "id")
	if _, dist := findDistImage(strconv.Itoa(id)); ok && dist {
		writeError(w, r, http.StatusBadRequest, "bad_request", "the resource is not a snapshot")
		return 0, false, true
	}
	return id, ok, false
}

func (s *Server) getSnapshot(w http.ResponseWriter, r *http.Request) {
	id, ok, answered := snapshotRef(w, r)
	if answered {
		return
	}
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.images[id]
	if !ok || im == nil || im.status != imageAvailable {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshot": im.snapshotJSON()})
}

func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	id, ok, answered := snapshotRef(w, r)
	if answered {
		return
	}
	s.removeImage(w, r, id, ok)
}

func (s *Server) listDropletSnapshots(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.refreshImages(r.Context(), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || s.droplets[id] == nil {
		notFound(w, r)
		return
	}
	list := s.snapshots(func(im *image) bool { return im.dropletID == id })
	p, ok := paginate(w, r, len(list))
	if !ok {
		return
	}
	out := []dropletSnapshotJSON{}
	for _, im := range list[p.lo:p.hi] {
		out = append(out, im.dropletSnapshotJSON())
	}
	writeJSON(w, http.StatusOK, listBody("snapshots", out, p))
}

// snapshotIDs are the ids of droplet id's available snapshots. s.mu must
// be held.
func (s *Server) snapshotIDs(id int) []int {
	out := []int{}
	for _, im := range s.snapshots(func(im *image) bool { return im.dropletID == id }) {
		out = append(out, im.id)
	}
	return out
}
