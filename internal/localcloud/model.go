package localcloud

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"
)

const (
	statusInProgress = "in-progress"
	statusCompleted  = "completed"
	statusErrored    = "errored"

	// Public droplet addresses come from 127.0.0.2-127.0.0.199 (the
	// droplet limit), reserved IPs from 127.0.0.200 upward.
	dropletIPFirst  = 2
	dropletIPLast   = 199
	dropletLimit    = dropletIPLast - dropletIPFirst + 1
	reservedIPFirst = 200
	reservedIPLimit = 50
)

type droplet struct {
	id                int
	name              string
	region, size      string
	image             imageJSON
	userData          string
	sshKeys           []string
	tags              []string
	created           time.Time
	status            string // new, active, off
	ipv4, privateIPv4 string
	pending           int // in-progress actions locking it
	createAction      int
	cancel            context.CancelFunc
	snapshotID        int                // the snapshot image it was made from
	actionCancel      context.CancelFunc // of its running droplet action
	// The create request's options; vpc "" (a droplet of an older
	// state file) is the region's default VPC.
	monitoring, ipv6, backups bool
	vpc                       string
}

type action struct {
	id           int
	typ          string
	status       string
	started      time.Time
	completed    time.Time
	resourceID   int
	resourceType string // droplet, reserved_ip
	region       string
	locks        []int  // droplets locked while in progress
	reservedIP   string // for reserved_ip actions
}

type sshKey struct {
	id          int
	name        string
	publicKey   string
	fingerprint string
}

type tag struct {
	name string
	seq  int
}

type reservedIP struct {
	ip        string
	region    string
	dropletID int // 0 = unassigned
	pending   int // id of the in-progress action, 0 = none
	created   int // order of creation
}

// ---- JSON shapes (DigitalOcean's) ----

type networkV4 struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
	Type      string `json:"type"`
}

type networkV6 struct {
	IPAddress string `json:"ip_address"`
	Netmask   int    `json:"netmask"`
	Gateway   string `json:"gateway"`
	Type      string `json:"type"`
}

type networksJSON struct {
	V4 []networkV4 `json:"v4"`
	V6 []networkV6 `json:"v6"`
}

type dropletJSON struct {
	ID               int          `json:"id"`
	Name             string       `json:"name"`
	Memory           int          `json:"memory"`
	Vcpus            int          `json:"vcpus"`
	Disk             int          `json:"disk"`
	DiskInfo         []diskInfo   `json:"disk_info"`
	Locked           bool         `json:"locked"`
	Status           string       `json:"status"`
	Kernel           *struct{}    `json:"kernel"`
	CreatedAt        string       `json:"created_at"`
	Features         []string     `json:"features"`
	BackupIDs        []int        `json:"backup_ids"`
	NextBackupWindow backupWindow `json:"next_backup_window"`
	SnapshotIDs      []int        `json:"snapshot_ids"`
	Image            imageJSON    `json:"image"`
	VolumeIDs        []string     `json:"volume_ids"`
	Size             sizeJSON     `json:"size"`
	SizeSlug         string       `json:"size_slug"`
	Networks         networksJSON `json:"networks"`
	Region           regionJSON   `json:"region"`
	Tags             []string     `json:"tags"`
	VPCUUID          string       `json:"vpc_uuid"`
}

// backupWindow is always given: DigitalOcean sends null for droplets
// without backups, but the contract's next_backup_window (required, an
// allOf of a nullable object and {}) does not admit null under OAS 3.0 as
// kin-openapi reads it.
type backupWindow struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type actionJSON struct {
	ID           int         `json:"id"`
	Status       string      `json:"status"`
	Type         string      `json:"type"`
	StartedAt    string      `json:"started_at"`
	CompletedAt  *string     `json:"completed_at"`
	ResourceID   int         `json:"resource_id"`
	ResourceType string      `json:"resource_type"`
	Region       *regionJSON `json:"region,omitempty"`
	RegionSlug   *string     `json:"region_slug"`
	ProjectID    string      `json:"project_id,omitempty"`
}

type actionLink struct {
	ID   int    `json:"id"`
	Rel  string `json:"rel"`
	HREF string `json:"href"`
}

type keyJSON struct {
	ID          int    `json:"id"`
	Fingerprint string `json:"fingerprint"`
	PublicKey   string `json:"public_key"`
	Name        string `json:"name"`
}

type reservedIPJSON struct {
	IP        string       `json:"ip"`
	Region    regionJSON   `json:"region"`
	Droplet   *dropletJSON `json:"droplet"`
	Locked    bool         `json:"locked"`
	ProjectID string       `json:"project_id"`
}

type taggedCount struct {
	Count         int    `json:"count"`
	LastTaggedURI string `json:"last_tagged_uri,omitempty"`
}

type tagResources struct {
	Count           int         `json:"count"`
	LastTaggedURI   string      `json:"last_tagged_uri,omitempty"`
	Droplets        taggedCount `json:"droplets"`
	Images          taggedCount `json:"images"`
	Volumes         taggedCount `json:"volumes"`
	VolumeSnapshots taggedCount `json:"volume_snapshots"`
	Databases       taggedCount `json:"databases"`
}

type tagJSON struct {
	Name      string       `json:"name"`
	Resources tagResources `json:"resources"`
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// baseURL is the scheme and host the client used, for absolute links.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// ---- rendering; all with s.mu held ----

func (s *Server) dropletJSON(d *droplet) dropletJSON {
	size, _ := findSize(d.size)
	region, _ := findRegion(d.region)
	j := dropletJSON{
		ID: d.id, Name: d.name, Memory: size.Memory, Vcpus: size.Vcpus, Disk: size.Disk,
		DiskInfo: size.DiskInfo, Locked: d.pending > 0, Status: d.status,
		CreatedAt: timestamp(d.created), Features: d.features(),
		BackupIDs: []int{}, SnapshotIDs: s.snapshotIDs(d.id), Image: d.image, VolumeIDs: []string{},
		Size: size, SizeSlug: d.size, Region: region, Tags: slices.Clone(d.tags),
		Networks: networksJSON{V4: []networkV4{}, V6: []networkV6{}},
		VPCUUID:  cmp.Or(d.vpc, s.regionVPC(d.region)),
	}
	day := d.created.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	j.NextBackupWindow = backupWindow{Start: timestamp(day), End: timestamp(day.Add(4 * time.Hour))}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if d.status != "new" {
		own := networkV4{IPAddress: d.ipv4, Netmask: "255.0.0.0", Gateway: "127.0.0.1", Type: "public"}
		private := networkV4{IPAddress: d.privateIPv4, Netmask: "255.255.240.0", Gateway: privateGateway(d.privateIPv4), Type: "private"}
		if d.ipv6 {
			// The documentation prefix (RFC 3849): shown, never routed.
			j.Networks.V6 = []networkV6{{IPAddress: fmt.Sprintf("2001:db8:0:%x::%x", d.id>>16&0xffff, d.id&0xffff),
				Netmask: 64, Gateway: fmt.Sprintf("2001:db8:0:%x::1", d.id>>16&0xffff), Type: "public"}}
		}
		// DigitalOcean lists an assigned reserved IP as one more public
		// network, in no documented order: here it comes first for
		// droplets with an even ID, so clients cannot rely on the order.
		var reserved []networkV4
		for _, ip := range s.reservedIPsOf(d.id) {
			reserved = append(reserved, networkV4{IPAddress: ip, Netmask: own.Netmask, Gateway: own.Gateway, Type: "public"})
		}
		if d.id%2 == 0 {
			j.Networks.V4 = append(append(reserved, own), private)
		} else {
			j.Networks.V4 = append(append([]networkV4{own}, reserved...), private)
		}
	}
	return j
}

// features lists what DigitalOcean shows as enabled on d: its agent for
// the web console (installed by default) and its VPC (every droplet has
// one), then the create request's options.
func (d *droplet) features() []string {
	f := []string{"droplet_agent", "private_networking"}
	if d.monitoring {
		f = append(f, "monitoring")
	}
	if d.ipv6 {
		f = append(f, "ipv6")
	}
	if d.backups {
		f = append(f, "backups")
	}
	return f
}

// privateGateway is the first host of the /20 private address ip is in.
func privateGateway(ip string) string {
	a := net.ParseIP(ip).To4()
	if a == nil {
		return "10.116.0.1"
	}
	return fmt.Sprintf("%d.%d.%d.1", a[0], a[1], a[2]&0xf0)
}

// reservedIPsOf lists the reserved IPs assigned to droplet id, sorted.
func (s *Server) reservedIPsOf(id int) []string {
	var ips []string
	for _, rip := range s.rips {
		if rip.dropletID == id {
			ips = append(ips, rip.ip)
		}
	}
	slices.SortFunc(ips, func(a, b string) int { return ipToInt(a) - ipToInt(b) })
	return ips
}

func (s *Server) actionJSON(a *action) actionJSON {
	j := actionJSON{
		ID: a.id, Status: a.status, Type: a.typ, StartedAt: timestamp(a.started),
		ResourceID: a.resourceID, ResourceType: a.resourceType,
	}
	if !a.completed.IsZero() {
		c := timestamp(a.completed)
		j.CompletedAt = &c
	}
	if reg, ok := findRegion(a.region); ok {
		j.Region = &reg
		slug := a.region
		j.RegionSlug = &slug
	}
	if a.resourceType == "reserved_ip" {
		j.ProjectID = s.projectID
	}
	return j
}

func (s *Server) reservedIPJSON(rip *reservedIP) reservedIPJSON {
	region, _ := findRegion(rip.region)
	j := reservedIPJSON{IP: rip.ip, Region: region, Locked: rip.pending != 0, ProjectID: s.projectID}
	if d := s.droplets[rip.dropletID]; d != nil {
		dj := s.dropletJSON(d)
		j.Droplet = &dj
	}
	return j
}

func (s *Server) tagJSON(r *http.Request, t *tag) tagJSON {
	n, last := 0, 0
	for _, d := range s.droplets {
		if slices.Contains(d.tags, t.name) {
			n++
			last = max(last, d.id)
		}
	}
	res := tagResources{Count: n, Droplets: taggedCount{Count: n}}
	if n > 0 {
		uri := baseURL(r) + "/v2/droplets/" + strconv.Itoa(last)
		res.LastTaggedURI, res.Droplets.LastTaggedURI = uri, uri
	}
	return tagJSON{Name: t.name, Resources: res}
}

// ---- state helpers; all with s.mu held ----

func (s *Server) newAction(typ, resourceType string, resourceID int, region string, locks ...int) *action {
	s.nextID.action++
	a := &action{
		id: s.nextID.action, typ: typ, status: statusInProgress, started: time.Now(),
		resourceID: resourceID, resourceType: resourceType, region: region, locks: locks,
	}
	s.actions[a.id] = a
	for _, id := range locks {
		if d := s.droplets[id]; d != nil {
			d.pending++
		}
	}
	return a
}

// finishAction ends an in-progress action and unlocks its droplets.
func (s *Server) finishAction(a *action, ok bool) {
	if a == nil || a.status != statusInProgress {
		return
	}
	a.status = statusCompleted
	if !ok {
		a.status = statusErrored
	}
	a.completed = time.Now()
	for _, id := range a.locks {
		if d := s.droplets[id]; d != nil && d.pending > 0 {
			d.pending--
		}
	}
	if rip := s.rips[a.reservedIP]; rip != nil && rip.pending == a.id {
		rip.pending = 0
	}
	s.save()
}

func ipv4(n uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return net.IP(b[:]).String()
}

func ipToInt(ip string) int {
	p := net.ParseIP(ip).To4()
	if p == nil {
		return 0
	}
	return int(binary.BigEndian.Uint32(p))
}

// addressTaken asks the backend whether something outside this server
// holds ip (another local cloud on the same machine, say).
func (s *Server) addressTaken(ip string) bool {
	ac, ok := s.opts.Backend.(AddressChecker)
	return ok && ac.AddressTaken(ip)
}

// allocDropletIP returns the lowest free public droplet address, or "".
func (s *Server) allocDropletIP() string {
	used := map[string]bool{}
	for _, d := range s.droplets {
		used[d.ipv4] = true
	}
	for i := dropletIPFirst; i <= dropletIPLast; i++ {
		ip := ipv4(0x7f000000 | uint32(i))
		if !used[ip] && !s.addressTaken(ip) {
			return ip
		}
	}
	return ""
}

// allocReservedIP returns the lowest free reserved IP, or "".
func (s *Server) allocReservedIP() string {
	if len(s.rips) >= reservedIPLimit {
		return ""
	}
	for i := uint32(reservedIPFirst); ; i++ {
		ip := ipv4(0x7f000000 | i)
		if s.rips[ip] == nil && !s.addressTaken(ip) {
			return ip
		}
	}
}

func (s *Server) sortedDroplets(keep func(*droplet) bool) []*droplet {
	var out []*droplet
	for _, d := range s.droplets {
		if keep(d) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// sortedActions returns matching actions, newest first (as DigitalOcean).
func (s *Server) sortedActions(keep func(*action) bool) []*action {
	var out []*action
	for _, a := range s.actions {
		if keep(a) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id > out[j].id })
	return out
}

// ---- pagination ----

type page struct {
	lo, hi int
	links  map[string]any
	meta   map[string]int
}

// pageParams reads ?page= and ?per_page= as DigitalOcean's OpenAPI file
// gives them: integers, page at least 1 (default 1), per_page 1 to 200
// (default 20). As DigitalOcean, a larger per_page is 200; a page past
// the end (however large) is an empty page.
func pageParams(q url.Values) (n, per int, err error) {
	if per, err = positiveParam(q, "per_page", 20, 200); err != nil {
		return 0, 0, err
	}
	if n, err = positiveParam(q, "page", 1, math.MaxInt); err != nil {
		return 0, 0, err
	}
	return n, per, nil
}

// positiveParam reads the integer query parameter key: def if absent,
// limit if above it.
func positiveParam(q url.Values, key string, def, limit int) (int, error) {
	v := q.Get(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if errors.Is(err, strconv.ErrRange) && v[0] != '-' {
		return limit, nil
	}
	if err != nil || n < 1 {
		if len(v) > 32 {
			v = v[:32] + "..."
		}
		return 0, fmt.Errorf("%s must be an integer of at least 1, not %q", key, v)
	}
	return min(n, limit), nil
}

// paginate applies ?page= and ?per_page= to a list of total items and
// builds DigitalOcean's links.pages and meta; on a bad parameter it
// answers 400 and returns false.
func paginate(w http.ResponseWriter, r *http.Request, total int) (page, bool) {
	q := r.URL.Query()
	n, per, err := pageParams(q)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
		return page{}, false
	}
	last := max(1, (total+per-1)/per)
	p := page{lo: total, links: map[string]any{}, meta: map[string]int{"total": total}}
	if n-1 < last { // (n-1)*per cannot overflow
		p.lo = min(total, (n-1)*per)
	}
	p.hi = min(total, p.lo+per)
	link := func(k int) string {
		u := url.URL{Path: r.URL.Path}
		v := url.Values{}
		for key, vals := range q {
			v[key] = vals
		}
		v.Set("page", strconv.Itoa(k))
		v.Set("per_page", strconv.Itoa(per))
		u.RawQuery = v.Encode()
		return baseURL(r) + u.String()
	}
	pages := map[string]string{}
	if n > 1 {
		pages["first"] = link(1)
		pages["prev"] = link(min(n-1, last))
	}
	if n < last {
		pages["next"] = link(n + 1)
		pages["last"] = link(last)
	}
	if len(pages) > 0 {
		p.links["pages"] = pages
	}
	return p, true
}
