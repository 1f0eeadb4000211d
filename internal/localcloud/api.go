package localcloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	maxBody     = 1 << 20
	maxUserData = 64 << 10
	msgNotFound = "The resource you were accessing could not be found."
)

var (
	tagPattern         = regexp.MustCompile(`^[a-zA-Z0-9_\-:]+$`)
	dropletNamePattern = regexp.MustCompile(`^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$`)
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v2/account", s.getAccount)
	m.HandleFunc("GET /v2/regions", s.listRegions)
	m.HandleFunc("GET /v2/sizes", s.listSizes)
	m.HandleFunc("GET /v2/vpcs", s.listVPCs)
	m.HandleFunc("GET /v2/vpcs/{id}", s.getVPC)

	m.HandleFunc("GET /v2/account/keys", s.listKeys)
	m.HandleFunc("POST /v2/account/keys", s.createKey)
	m.HandleFunc("GET /v2/account/keys/{key}", s.getKey)
	m.HandleFunc("PUT /v2/account/keys/{key}", s.updateKey)
	m.HandleFunc("DELETE /v2/account/keys/{key}", s.deleteKey)

	m.HandleFunc("POST /v2/droplets", s.createDroplets)
	m.HandleFunc("GET /v2/droplets", s.listDroplets)
	m.HandleFunc("DELETE /v2/droplets", s.deleteDropletsByTag)
	m.HandleFunc("GET /v2/droplets/{id}", s.getDroplet)
	m.HandleFunc("DELETE /v2/droplets/{id}", s.deleteDroplet)
	m.HandleFunc("GET /v2/droplets/{id}/actions", s.listDropletActions)
	m.HandleFunc("POST /v2/droplets/{id}/actions", s.postDropletAction)
	m.HandleFunc("GET /v2/droplets/{id}/actions/{action}", s.getDropletAction)
	m.HandleFunc("GET /v2/droplets/{id}/snapshots", s.listDropletSnapshots)

	m.HandleFunc("GET /v2/images", s.listImages)
	m.HandleFunc("GET /v2/images/{id}", s.getImage)
	m.HandleFunc("PUT /v2/images/{id}", s.updateImage)
	m.HandleFunc("DELETE /v2/images/{id}", s.deleteImage)
	m.HandleFunc("GET /v2/snapshots", s.listSnapshots)
	m.HandleFunc("GET /v2/snapshots/{id}", s.getSnapshot)
	m.HandleFunc("DELETE /v2/snapshots/{id}", s.deleteSnapshot)

	m.HandleFunc("GET /v2/actions", s.listActions)
	m.HandleFunc("GET /v2/actions/{id}", s.getAction)

	m.HandleFunc("GET /v2/reserved_ips", s.listReservedIPs)
	m.HandleFunc("POST /v2/reserved_ips", s.createReservedIP)
	m.HandleFunc("GET /v2/reserved_ips/{ip}", s.getReservedIP)
	m.HandleFunc("DELETE /v2/reserved_ips/{ip}", s.deleteReservedIP)
	m.HandleFunc("GET /v2/reserved_ips/{ip}/actions", s.listReservedIPActions)
	m.HandleFunc("POST /v2/reserved_ips/{ip}/actions", s.postReservedIPAction)
	m.HandleFunc("GET /v2/reserved_ips/{ip}/actions/{action}", s.getReservedIPAction)

	m.HandleFunc("GET /v2/tags", s.listTags)
	m.HandleFunc("POST /v2/tags", s.createTag)
	m.HandleFunc("GET /v2/tags/{tag}", s.getTag)
	m.HandleFunc("DELETE /v2/tags/{tag}", s.deleteTag)
	m.HandleFunc("POST /v2/tags/{tag}/resources", s.tagResources)
	m.HandleFunc("DELETE /v2/tags/{tag}/resources", s.untagResources)
}

func unprocessable(w http.ResponseWriter, r *http.Request, format string, args ...any) {
	writeError(w, r, http.StatusUnprocessableEntity, "unprocessable_entity", fmt.Sprintf(format, args...))
}

func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusNotFound, "not_found", msgNotFound)
}

// decode reads a JSON request body into v; on failure it answers 400.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		bodyError(w, r, err)
		return false
	}
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", "The request body is not valid JSON: "+err.Error())
		return false
	}
	return true
}

// bodyError answers a failure to read the request body: 413 past maxBody.
func bodyError(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, r, http.StatusRequestEntityTooLarge, errorID(http.StatusRequestEntityTooLarge),
			fmt.Sprintf("The request body is larger than %d bytes.", tooLarge.Limit))
		return
	}
	writeError(w, r, http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
}

func pathID(r *http.Request, name string) (int, bool) {
	id, err := strconv.Atoi(r.PathValue(name))
	return id, err == nil && id > 0
}

// ---- account, regions, sizes ----

func (s *Server) getAccount(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"account": map[string]any{
		"droplet_limit":     dropletLimit,
		"floating_ip_limit": reservedIPLimit,
		"reserved_ip_limit": reservedIPLimit,
		"volume_limit":      100,
		"email":             "fleet@localcloud.invalid",
		"name":              "fleet localcloud",
		"uuid":              s.accountID,
		"email_verified":    true,
		"status":            "active",
		"status_message":    "",
		"team":              map[string]string{"uuid": s.projectID, "name": "My Team"},
	}})
}

func listBody(key string, items any, p page) map[string]any {
	return map[string]any{key: items, "links": p.links, "meta": p.meta}
}

func (s *Server) listRegions(w http.ResponseWriter, r *http.Request) {
	all := allRegions()
	p, ok := paginate(w, r, len(all))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, listBody("regions", all[p.lo:p.hi], p))
}

func (s *Server) listSizes(w http.ResponseWriter, r *http.Request) {
	all := allSizes()
	p, ok := paginate(w, r, len(all))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, listBody("sizes", all[p.lo:p.hi], p))
}

// ---- SSH keys ----

func keyJSONOf(k *sshKey) keyJSON {
	return keyJSON{ID: k.id, Fingerprint: k.fingerprint, PublicKey: k.publicKey, Name: k.name}
}

// findKey finds a key by id or fingerprint. s.mu must be held.
func (s *Server) findKey(idOrFingerprint string) (int, *sshKey) {
	for i, k := range s.keys {
		if strconv.Itoa(k.id) == idOrFingerprint || k.fingerprint == idOrFingerprint {
			return i, k
		}
	}
	return -1, nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := paginate(w, r, len(s.keys))
	if !ok {
		return
	}
	out := []keyJSON{}
	for _, k := range s.keys[p.lo:p.hi] {
		out = append(out, keyJSONOf(k))
	}
	writeJSON(w, http.StatusOK, listBody("ssh_keys", out, p))
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	if !decode(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		unprocessable(w, r, "Name can't be blank")
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		unprocessable(w, r, "Key invalid, key should be of the format `type key [comment]`")
		return
	}
	fp := ssh.FingerprintLegacyMD5(pub)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, k := s.findKey(fp); k != nil {
		unprocessable(w, r, "SSH Key is already in use on your account")
		return
	}
	s.nextID.key++
	k := &sshKey{id: s.nextID.key, name: req.Name, publicKey: strings.TrimSpace(req.PublicKey), fingerprint: fp}
	s.keys = append(s.keys, k)
	s.save()
	writeJSON(w, http.StatusCreated, map[string]any{"ssh_key": keyJSONOf(k)})
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, k := s.findKey(r.PathValue("key"))
	if k == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ssh_key": keyJSONOf(k)})
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name *string `json:"name"` // optional in DO's schema
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, k := s.findKey(r.PathValue("key"))
	if k == nil {
		notFound(w, r)
		return
	}
	if req.Name != nil {
		if strings.TrimSpace(*req.Name) == "" {
			unprocessable(w, r, "Name can't be blank")
			return
		}
		k.name = *req.Name
		s.save()
	}
	writeJSON(w, http.StatusOK, map[string]any{"ssh_key": keyJSONOf(k)})
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, k := s.findKey(r.PathValue("key"))
	if k == nil {
		notFound(w, r)
		return
	}
	s.keys = slices.Delete(s.keys, i, i+1)
	s.save()
	writeNoContent(w)
}

// ---- droplets ----

type createDropletRequest struct {
	Name     string            `json:"name"`
	Names    []string          `json:"names"`
	Region   string            `json:"region"`
	Size     string            `json:"size"`
	Image    json.RawMessage   `json:"image"`
	SSHKeys  []json.RawMessage `json:"ssh_keys"`
	Tags     []string          `json:"tags"`
	UserData string            `json:"user_data"`
	// DigitalOcean's options, all off by default; without vpc_uuid
	// the droplet joins its region's default VPC (private_networking is
	// deprecated and changes nothing).
	Monitoring        bool   `json:"monitoring"`
	IPv6              bool   `json:"ipv6"`
	Backups           bool   `json:"backups"`
	PrivateNetworking bool   `json:"private_networking"`
	VPCUUID           string `json:"vpc_uuid"`
}

func validTag(t string) bool { return len(t) <= 255 && tagPattern.MatchString(t) }

func (s *Server) createDroplets(w http.ResponseWriter, r *http.Request) {
	var req createDropletRequest
	if !decode(w, r, &req) {
		return
	}
	names := req.Names
	multi := len(names) > 0
	switch {
	case req.Name != "" && multi:
		unprocessable(w, r, "Specify either name or names, not both.")
		return
	case req.Name == "" && !multi:
		unprocessable(w, r, "Name is required.")
		return
	case !multi:
		names = []string{req.Name}
	}
	if len(names) > 10 {
		unprocessable(w, r, "A maximum of 10 Droplets can be created at once.")
		return
	}
	for _, n := range names {
		if len(n) > 255 || !dropletNamePattern.MatchString(n) {
			unprocessable(w, r, "Name %q is invalid: only letters, numbers, periods and dashes are allowed.", n)
			return
		}
	}
	if req.Region == "" {
		req.Region = regionNames[0].slug
	}
	if _, ok := findRegion(req.Region); !ok {
		unprocessable(w, r, "You specified an invalid region for Droplet creation.")
		return
	}
	if _, ok := findSize(req.Size); !ok {
		unprocessable(w, r, "You specified an invalid size for Droplet creation.")
		return
	}
	var imageRef string
	var slug string
	var id int
	switch {
	case json.Unmarshal(req.Image, &slug) == nil && slug != "":
		imageRef = slug
	case json.Unmarshal(req.Image, &id) == nil && id > 0:
		imageRef = strconv.Itoa(id)
		s.refreshImages(r.Context(), false) // another local cloud's snapshot?
	default:
		unprocessable(w, r, msgInvalidImage)
		return
	}
	for _, t := range req.Tags {
		if !validTag(t) {
			unprocessable(w, r, "Tag %q is invalid: tags may contain letters, numbers, colons, dashes, and underscores.", t)
			return
		}
	}
	if len(req.UserData) > maxUserData {
		unprocessable(w, r, "user_data is limited to 64 KiB.")
		return
	}

	s.mu.Lock()
	vpc := s.regionVPC(req.Region)
	if req.VPCUUID != "" {
		// DigitalOcean's 422 both for a VPC it does not know and for one
		// of another region.
		v, ok := s.findVPC(req.VPCUUID)
		if !ok || v.Region != req.Region {
			s.mu.Unlock()
			unprocessable(w, r, msgInvalidVPC)
			return
		}
		vpc = v.ID
	}
	image, snapshotID, ok := s.createImage(w, r, imageRef, req.Region, req.Size)
	if !ok {
		s.mu.Unlock()
		return
	}
	var authorized []string
	for _, raw := range req.SSHKeys {
		var ref string
		var kid int
		if json.Unmarshal(raw, &kid) == nil {
			ref = strconv.Itoa(kid)
		} else if json.Unmarshal(raw, &ref) != nil {
			ref = string(raw)
		}
		_, k := s.findKey(ref)
		if k == nil {
			s.mu.Unlock()
			unprocessable(w, r, "SSH key %s was not found on your account.", ref)
			return
		}
		authorized = append(authorized, k.publicKey)
	}
	if len(s.droplets)+len(names) > dropletLimit {
		s.mu.Unlock()
		unprocessable(w, r, "creating this/these droplet(s) will exceed your droplet limit")
		return
	}
	var tags []string
	for _, t := range req.Tags {
		if !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
		if s.tags[t] == nil {
			s.tagSeq++
			s.tags[t] = &tag{name: t, seq: s.tagSeq}
		}
	}
	var out []dropletJSON
	var links []actionLink
	rel := "create"
	if multi {
		rel = "multiple_create"
	}
	for _, name := range names {
		s.nextID.droplet++
		ip := s.allocDropletIP()
		d := &droplet{
			id: s.nextID.droplet, name: name, region: req.Region, size: req.Size, image: image,
			userData: req.UserData, sshKeys: slices.Clone(authorized), tags: slices.Clone(tags),
			created: time.Now(), status: "new", ipv4: ip, snapshotID: snapshotID,
			privateIPv4: privateIPFor(req.Region, ip),
			monitoring:  req.Monitoring, ipv6: req.IPv6, backups: req.Backups, vpc: vpc,
		}
		s.droplets[d.id] = d
		a := s.newAction("create", "droplet", d.id, d.region, d.id)
		d.createAction = a.id
		if s.stuckNew(name) {
			s.logf("localcloud: droplet %d %q is stuck new (fault)", d.id, name)
		} else {
			s.boot(d, a)
		}
		out = append(out, s.dropletJSON(d))
		links = append(links, actionLink{ID: a.id, Rel: rel, HREF: baseURL(r) + "/v2/actions/" + strconv.Itoa(a.id)})
	}
	s.save()
	s.mu.Unlock()
	if multi {
		writeJSON(w, http.StatusAccepted, map[string]any{"droplets": out, "links": map[string]any{"actions": links}})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"droplet": out[0], "links": map[string]any{"actions": links}})
}

// boot starts Backend.Boot for d in the background and completes (or
// errors) its create action a when it returns. s.mu must be held.
func (s *Server) boot(d *droplet, a *action) {
	ctx, cancel := context.WithCancel(s.ctx)
	d.cancel = cancel
	m := s.machineOf(d)
	m.Status = ""
	id, actionID := d.id, a.id
	started := s.goBackground(func() {
		err := s.backend.Boot(ctx, m)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed && s.ctx.Err() != nil {
			return // shutting down: leave the state as it is
		}
		a := s.actions[actionID]
		d := s.droplets[id]
		switch {
		case d == nil:
			s.finishAction(a, false)
		case err != nil:
			s.logf("localcloud: droplet %d %q: boot failed: %v", id, m.Name, err)
			s.finishAction(a, false)
		case s.erroredAction(a.typ):
			s.logf("localcloud: droplet %d %q: create action errored (fault)", id, m.Name)
			s.finishAction(a, false)
		default:
			d.status = "active"
			s.finishAction(a, true)
		}
	})
	if !started {
		cancel()
	}
}

// msgInvalidImage is DigitalOcean's 422 for an image it does not have.
const msgInvalidImage = "You specified an invalid image for Droplet creation."

// createImage resolves the image of a droplet create request (a slug, or
// an id as a string) in region for size: the image, the snapshot id (0
// for a distribution image), or a 422 answered. s.mu must be held.
func (s *Server) createImage(w http.ResponseWriter, r *http.Request, ref, region, size string) (imageJSON, int, bool) {
	j, im, ok := s.findImage(ref)
	if !ok {
		unprocessable(w, r, msgInvalidImage)
		return imageJSON{}, 0, false
	}
	if im == nil {
		if ic, ok := s.backend.(ImageChecker); ok {
			if err := ic.CheckImage(*j.Slug); err != nil {
				unprocessable(w, r, "%s", err.Error())
				return imageJSON{}, 0, false
			}
		}
		return j, 0, true
	}
	if !slices.Contains(im.regions, region) {
		unprocessable(w, r, "The image %d is not available in region %s (it is in %s).", im.id, region, strings.Join(im.regions, ", "))
		return imageJSON{}, 0, false
	}
	if z, _ := findSize(size); z.Disk < im.minDisk {
		unprocessable(w, r, "The image %d needs a disk of at least %d GB; size %s has %d GB.", im.id, im.minDisk, size, z.Disk)
		return imageJSON{}, 0, false
	}
	return j, im.id, true
}

func (s *Server) getDroplet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.droplets[id]
	if !ok || d == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"droplet": s.dropletJSON(d)})
}

func (s *Server) listDroplets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tagName, name := q.Get("tag_name"), q.Get("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.sortedDroplets(func(d *droplet) bool {
		return (tagName == "" || slices.Contains(d.tags, tagName)) && (name == "" || d.name == name)
	})
	p, ok := paginate(w, r, len(list))
	if !ok {
		return
	}
	out := []dropletJSON{}
	for _, d := range list[p.lo:p.hi] {
		out = append(out, s.dropletJSON(d))
	}
	writeJSON(w, http.StatusOK, listBody("droplets", out, p))
}

func (s *Server) deleteDroplet(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	d := s.droplets[id]
	if !ok || d == nil {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	unrouted := s.removeDroplet(d)
	s.save()
	s.mu.Unlock()
	s.destroy([]int{id}, unrouted)
	writeNoContent(w)
}

func (s *Server) deleteDropletsByTag(w http.ResponseWriter, r *http.Request) {
	tagName := r.URL.Query().Get("tag_name")
	if tagName == "" {
		unprocessable(w, r, "tag_name is required to delete Droplets by tag.")
		return
	}
	s.mu.Lock()
	var ids []int
	var unrouted []string
	for _, d := range s.sortedDroplets(func(d *droplet) bool { return slices.Contains(d.tags, tagName) }) {
		ids = append(ids, d.id)
		unrouted = append(unrouted, s.removeDroplet(d)...)
	}
	s.save()
	s.mu.Unlock()
	s.destroy(ids, unrouted)
	writeNoContent(w)
}

// removeDroplet forgets d: stops its boot, errors its pending create
// action, and unassigns the reserved IPs pointing at it (returned, to be
// unrouted). Its address is free again. s.mu must be held.
func (s *Server) removeDroplet(d *droplet) (unrouted []string) {
	if d.cancel != nil {
		d.cancel()
	}
	if d.actionCancel != nil {
		d.actionCancel() // its action ends errored
	}
	if a := s.actions[d.createAction]; a != nil {
		s.finishAction(a, false)
	}
	delete(s.droplets, d.id)
	for _, rip := range s.rips {
		if rip.dropletID == d.id {
			rip.dropletID = 0
			unrouted = append(unrouted, rip.ip)
		}
	}
	return unrouted
}

// destroy tells the backend about deleted droplets and unassigned IPs.
func (s *Server) destroy(ids []int, unrouted []string) {
	for _, ip := range unrouted {
		if err := s.backend.Route(s.ctx, ip, ""); err != nil {
			s.logf("localcloud: unrouting %s: %v", ip, err)
		}
	}
	for _, id := range ids {
		if err := s.backend.Destroy(s.ctx, id); err != nil {
			s.logf("localcloud: destroying droplet %d: %v", id, err)
		}
	}
}

// ---- actions ----

func (s *Server) writeActions(w http.ResponseWriter, r *http.Request, list []*action) {
	p, ok := paginate(w, r, len(list))
	if !ok {
		return
	}
	out := []actionJSON{}
	for _, a := range list[p.lo:p.hi] {
		out = append(out, s.actionJSON(a))
	}
	writeJSON(w, http.StatusOK, listBody("actions", out, p))
}

func (s *Server) listDropletActions(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok || s.droplets[id] == nil {
		notFound(w, r)
		return
	}
	s.writeActions(w, r, s.sortedActions(func(a *action) bool {
		return a.resourceType == "droplet" && a.resourceID == id
	}))
}

func (s *Server) listActions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeActions(w, r, s.sortedActions(func(*action) bool { return true }))
}

func (s *Server) getAction(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[id]
	if !ok || a == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": s.actionJSON(a)})
}

// ---- reserved IPs ----

func (s *Server) listReservedIPs(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*reservedIP, 0, len(s.rips))
	for _, rip := range s.rips {
		list = append(list, rip)
	}
	slices.SortFunc(list, func(a, b *reservedIP) int { return a.created - b.created })
	p, ok := paginate(w, r, len(list))
	if !ok {
		return
	}
	out := []reservedIPJSON{}
	for _, rip := range list[p.lo:p.hi] {
		out = append(out, s.reservedIPJSON(rip))
	}
	writeJSON(w, http.StatusOK, listBody("reserved_ips", out, p))
}

func (s *Server) createReservedIP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DropletID int    `json:"droplet_id"`
		Region    string `json:"region"`
	}
	if !decode(w, r, &req) {
		return
	}
	if (req.DropletID == 0) == (req.Region == "") {
		unprocessable(w, r, "Specify either droplet_id or region.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	region := req.Region
	if req.DropletID != 0 {
		d := s.droplets[req.DropletID]
		if d == nil {
			unprocessable(w, r, "Droplet %d was not found.", req.DropletID)
			return
		}
		if d.pending > 0 {
			unprocessable(w, r, "Droplet already has a pending event.")
			return
		}
		region = d.region
	} else if _, ok := findRegion(region); !ok {
		unprocessable(w, r, "You specified an invalid region for the reserved IP.")
		return
	}
	ip := s.allocReservedIP()
	if ip == "" {
		unprocessable(w, r, "You have reached the reserved IP limit of %d.", reservedIPLimit)
		return
	}
	rip := &reservedIP{ip: ip, region: region, created: len(s.rips) + 1}
	for _, o := range s.rips {
		rip.created = max(rip.created, o.created+1)
	}
	s.rips[ip] = rip
	links := map[string]any{}
	if req.DropletID != 0 {
		a := s.startAssign(rip, "assign_ip", req.DropletID)
		links["droplets"] = []actionLink{{ID: req.DropletID, Rel: "droplet", HREF: baseURL(r) + "/v2/droplets/" + strconv.Itoa(req.DropletID)}}
		links["actions"] = []actionLink{{ID: a.id, Rel: "assign_ip", HREF: baseURL(r) + "/v2/actions/" + strconv.Itoa(a.id)}}
	} else {
		a := s.newAction("reserve_ip", "reserved_ip", ipToInt(ip), region)
		a.reservedIP = ip
		s.finishAction(a, true)
		links["actions"] = []actionLink{{ID: a.id, Rel: "reserve_ip", HREF: baseURL(r) + "/v2/actions/" + strconv.Itoa(a.id)}}
	}
	s.save()
	writeJSON(w, http.StatusAccepted, map[string]any{"reserved_ip": s.reservedIPJSON(rip), "links": links})
}

func (s *Server) getReservedIP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rip := s.rips[r.PathValue("ip")]
	if rip == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reserved_ip": s.reservedIPJSON(rip)})
}

func (s *Server) deleteReservedIP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rip := s.rips[r.PathValue("ip")]
	if rip == nil {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	if rip.pending != 0 {
		s.mu.Unlock()
		unprocessable(w, r, "Reserved IP already has a pending event.")
		return
	}
	delete(s.rips, rip.ip)
	s.save()
	assigned := rip.dropletID != 0
	s.mu.Unlock()
	if assigned {
		s.destroy(nil, []string{rip.ip})
	}
	writeNoContent(w)
}

func (s *Server) listReservedIPActions(w http.ResponseWriter, r *http.Request) {
	ip := r.PathValue("ip")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rips[ip] == nil {
		notFound(w, r)
		return
	}
	s.writeActions(w, r, s.sortedActions(func(a *action) bool { return a.reservedIP == ip }))
}

func (s *Server) getReservedIPAction(w http.ResponseWriter, r *http.Request) {
	ip := r.PathValue("ip")
	id, ok := pathID(r, "action")
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.actions[id]
	if !ok || s.rips[ip] == nil || a == nil || a.reservedIP != ip {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": s.actionJSON(a)})
}

func (s *Server) postReservedIPAction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type      string `json:"type"`
		DropletID int    `json:"droplet_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rip := s.rips[r.PathValue("ip")]
	if rip == nil {
		notFound(w, r)
		return
	}
	var a *action
	switch req.Type {
	case "assign":
		d := s.droplets[req.DropletID]
		if d == nil {
			unprocessable(w, r, "Droplet %d was not found.", req.DropletID)
			return
		}
		if d.region != rip.region {
			// DigitalOcean: a reserved IP is a regional resource, only
			// assignable to a droplet of its own region.
			unprocessable(w, r, "The reserved IP %s is in region %s and the Droplet %d in %s: a reserved IP can only be assigned to a Droplet in its own region.", rip.ip, rip.region, d.id, d.region)
			return
		}
		if !s.checkPending(w, r, rip, d.id) {
			return
		}
		a = s.startAssign(rip, "assign_ip", d.id)
	case "unassign":
		if !s.checkPending(w, r, rip, 0) {
			return
		}
		if rip.dropletID == 0 {
			unprocessable(w, r, "The reserved IP is not assigned to a Droplet.")
			return
		}
		a = s.startAssign(rip, "unassign_ip", 0)
	default:
		unprocessable(w, r, "Action type %q is not supported; use assign or unassign.", req.Type)
		return
	}
	s.save()
	writeJSON(w, http.StatusCreated, map[string]any{"action": s.actionJSON(a)})
}

// checkPending answers 422 if the reserved IP, its current droplet or the
// target droplet has an action in progress. s.mu must be held.
func (s *Server) checkPending(w http.ResponseWriter, r *http.Request, rip *reservedIP, target int) bool {
	if rip.pending != 0 {
		unprocessable(w, r, "Reserved IP already has a pending event.")
		return false
	}
	for _, id := range []int{rip.dropletID, target} {
		if d := s.droplets[id]; d != nil && d.pending > 0 {
			unprocessable(w, r, "Droplet already has a pending event.")
			return false
		}
	}
	return true
}

// startAssign starts an asynchronous assign_ip (target != 0) or unassign_ip
// action on rip. It locks the reserved IP and the droplets involved until it
// completes after Options.ActionDelay; then Backend.Route is called and the
// assignment takes effect. s.mu must be held.
func (s *Server) startAssign(rip *reservedIP, typ string, target int) *action {
	var locks []int
	for _, id := range []int{rip.dropletID, target} {
		if id != 0 && !slices.Contains(locks, id) {
			locks = append(locks, id)
		}
	}
	a := s.newAction(typ, "reserved_ip", ipToInt(rip.ip), rip.region, locks...)
	a.reservedIP = rip.ip
	rip.pending = a.id
	ip, actionID := rip.ip, a.id
	started := s.goBackground(func() {
		if d := s.opts.ActionDelay; d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return
			}
		}
		s.mu.Lock()
		a := s.actions[actionID]
		rip := s.rips[ip]
		dst := ""
		if d := s.droplets[target]; d != nil {
			dst = d.ipv4
		}
		switch {
		case rip == nil || (target != 0 && dst == ""):
			s.finishAction(a, false)
			s.mu.Unlock()
			return
		case s.erroredAction(typ):
			s.logf("localcloud: %s %s errored (fault)", typ, ip)
			s.finishAction(a, false)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		err := s.backend.Route(s.ctx, ip, dst)

		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.logf("localcloud: %s %s: route: %v", typ, ip, err)
			s.finishAction(a, false)
			return
		}
		if target != 0 && s.droplets[target] == nil {
			// The droplet was deleted while routing.
			s.finishAction(a, false)
			if rip := s.rips[ip]; rip != nil {
				rip.dropletID = 0
			}
			s.goBackground(func() { s.destroy(nil, []string{ip}) })
			return
		}
		if rip := s.rips[ip]; rip != nil {
			rip.dropletID = target
		}
		s.finishAction(a, true)
	})
	if !started {
		s.finishAction(a, false)
	}
	return a
}

// ---- tags ----

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*tag, 0, len(s.tags))
	for _, t := range s.tags {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b *tag) int { return a.seq - b.seq })
	p, ok := paginate(w, r, len(list))
	if !ok {
		return
	}
	out := []tagJSON{}
	for _, t := range list[p.lo:p.hi] {
		out = append(out, s.tagJSON(r, t))
	}
	writeJSON(w, http.StatusOK, listBody("tags", out, p))
}

func (s *Server) createTag(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	if !validTag(req.Name) {
		unprocessable(w, r, "Tag %q is invalid: tags may contain letters, numbers, colons, dashes, and underscores (at most 255).", req.Name)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tags[req.Name]
	if t == nil {
		s.tagSeq++
		t = &tag{name: req.Name, seq: s.tagSeq}
		s.tags[t.name] = t
		s.save()
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tag": s.tagJSON(r, t)})
}

func (s *Server) getTag(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tags[r.PathValue("tag")]
	if t == nil {
		notFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tag": s.tagJSON(r, t)})
}

func (s *Server) deleteTag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tag")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tags[name] == nil {
		notFound(w, r)
		return
	}
	delete(s.tags, name)
	for _, d := range s.droplets {
		d.tags = slices.DeleteFunc(d.tags, func(t string) bool { return t == name })
	}
	s.save()
	writeNoContent(w)
}

func (s *Server) tagResources(w http.ResponseWriter, r *http.Request)   { s.retag(w, r, true) }
func (s *Server) untagResources(w http.ResponseWriter, r *http.Request) { s.retag(w, r, false) }

func (s *Server) retag(w http.ResponseWriter, r *http.Request, add bool) {
	var req struct {
		Resources []struct {
			ID   string `json:"resource_id"`
			Type string `json:"resource_type"`
		} `json:"resources"`
	}
	if !decode(w, r, &req) {
		return
	}
	name := r.PathValue("tag")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tags[name] == nil {
		notFound(w, r)
		return
	}
	var targets []*droplet
	for _, res := range req.Resources {
		if res.Type != "droplet" {
			unprocessable(w, r, "Resource type %q is not supported here; only droplet is.", res.Type)
			return
		}
		id, err := strconv.Atoi(res.ID)
		d := s.droplets[id]
		if err != nil || d == nil {
			writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("Droplet %q was not found.", res.ID))
			return
		}
		targets = append(targets, d)
	}
	for _, d := range targets {
		has := slices.Contains(d.tags, name)
		if add && !has {
			d.tags = append(d.tags, name)
		} else if !add && has {
			d.tags = slices.DeleteFunc(d.tags, func(t string) bool { return t == name })
		}
	}
	s.save()
	writeNoContent(w)
}
