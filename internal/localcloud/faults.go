package localcloud

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FaultKind says what a Fault does.
type FaultKind string

// The fault kinds.
const (
	// FaultFail answers the Nth request matching Method and Path with Status.
	FaultFail FaultKind = "fail"
	// FaultLatency delays every request matching Method and Path by Delay.
	FaultLatency FaultKind = "latency"
	// FaultStuckNew keeps droplets whose name matches the glob Name "new"
	// forever: Boot is never called and the create action stays in progress.
	FaultStuckNew FaultKind = "stuck-new"
	// FaultErrored makes actions of type Action end "errored" instead of
	// "completed" (the change they describe does not happen).
	FaultErrored FaultKind = "errored"
	// FaultHold makes Unit ("cloud-init" or "sshd") of droplets whose name
	// matches the glob Name wait Delay before it starts (Machine.Holds;
	// the Docker backend writes a systemd drop-in). "cloud-init" holds its
	// config stage, so sshd answers while cloud-init is still running.
	FaultHold FaultKind = "hold"
	// FaultVendorFail makes the vendor-data of droplets whose name matches
	// the glob Name fail (Machine.VendorFail): `cloud-init status` reports
	// an error in module scripts-vendor, as when the install of
	// DigitalOcean's metrics agent fails. Only droplets created with
	// monitoring have that install, so only they fail.
	FaultVendorFail FaultKind = "vendor-fail"
)

// The units a FaultHold can hold.
const (
	HoldCloudInit = "cloud-init"
	HoldSSHD      = "sshd"
)

// maxHold bounds a FaultHold's Delay.
const maxHold = time.Hour

// Fault is one injected failure. Faults are set with Options.Faults,
// Server.AddFault, ParseFaults (the --faults flag and FLEET_FAULTS) or
// POST /_fleet/faults.
//
// In JSON (POST /_fleet/faults takes one object or a list; a body that is
// not JSON is read with ParseFaults syntax):
//
//	{"kind":"fail","method":"POST","path":"/v2/droplets","nth":1,"status":500,"after":true}
//	{"kind":"latency","method":"GET","path":"/v2/droplets","delay":"200ms"}
//	{"kind":"stuck-new","name":"blog-*"}
//	{"kind":"errored","action":"assign"}
//	{"kind":"hold","unit":"cloud-init","name":"blog-*","delay":"20s"}
//	{"kind":"vendor-fail","name":"blog-*"}
type Fault struct {
	Kind FaultKind
	// Method ("" or "*" = any) and Path (a prefix of the request path,
	// optionally followed by "?" and query parameters the request must
	// have) select the requests of FaultFail and FaultLatency.
	Method string
	Path   string
	// Nth (1-based; 0 means 1) is the matching request that fails; it
	// fails once. Status is the status it gets. With After the request is
	// handled first (its effect takes place) and then answered with Status.
	// A 429 carries Retry-After: 1.
	Nth    int
	Status int
	After  bool
	// Delay is the latency FaultLatency adds, or how long FaultHold holds.
	Delay time.Duration
	// Name is the path.Match glob of FaultStuckNew, FaultHold and
	// FaultVendorFail.
	Name string
	// Unit is what FaultHold holds: HoldCloudInit or HoldSSHD.
	Unit string
	// Action is the action type of FaultErrored: "create", "assign",
	// "unassign" ("assign" also matches DigitalOcean's "assign_ip").
	Action string
}

type faultJSON struct {
	Kind   FaultKind `json:"kind"`
	Method string    `json:"method,omitempty"`
	Path   string    `json:"path,omitempty"`
	Nth    int       `json:"nth,omitempty"`
	Status int       `json:"status,omitempty"`
	After  bool      `json:"after,omitempty"`
	Delay  string    `json:"delay,omitempty"`
	Name   string    `json:"name,omitempty"`
	Action string    `json:"action,omitempty"`
	Unit   string    `json:"unit,omitempty"`
}

// MarshalJSON writes Delay as a duration string ("200ms").
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Kind: f.Kind, Method: f.Method, Path: f.Path, Nth: f.Nth, Status: f.Status, After: f.After, Name: f.Name, Action: f.Action, Unit: f.Unit}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes and validates it.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault{Kind: j.Kind, Method: j.Method, Path: j.Path, Nth: j.Nth, Status: j.Status, After: j.After, Name: j.Name, Action: j.Action, Unit: j.Unit}
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			return fmt.Errorf("delay: %w", err)
		}
		f.Delay = d
	}
	return f.validate()
}

func (f Fault) validate() error {
	switch f.Kind {
	case FaultFail, FaultLatency:
		if f.Method != "" && f.Method != "*" && !knownMethod(f.Method) {
			return fmt.Errorf("unknown method %q", f.Method)
		}
		if !strings.HasPrefix(f.Path, "/") {
			return fmt.Errorf("path %q must start with /", f.Path)
		}
		if f.Kind == FaultFail {
			if f.Status < 100 || f.Status > 599 {
				return fmt.Errorf("status %d is not an HTTP status", f.Status)
			}
			if f.Nth < 0 {
				return fmt.Errorf("nth %d must be at least 1", f.Nth)
			}
		} else if f.Delay <= 0 {
			return fmt.Errorf("latency %v must be positive", f.Delay)
		}
	case FaultStuckNew, FaultHold, FaultVendorFail:
		if f.Name == "" {
			return fmt.Errorf("%s needs a name glob", f.Kind)
		}
		if _, err := path.Match(f.Name, ""); err != nil {
			return fmt.Errorf("bad glob %q: %v", f.Name, err)
		}
		if f.Kind != FaultHold {
			break
		}
		if f.Unit != HoldCloudInit && f.Unit != HoldSSHD {
			return fmt.Errorf("hold: unit %q: want %s or %s", f.Unit, HoldCloudInit, HoldSSHD)
		}
		if f.Delay <= 0 || f.Delay > maxHold {
			return fmt.Errorf("hold: delay %v must be positive and at most %v", f.Delay, maxHold)
		}
	case FaultErrored:
		if f.Action == "" {
			return fmt.Errorf("errored needs an action type")
		}
	default:
		return fmt.Errorf("unknown fault kind %q (want fail, latency, stuck-new, errored, hold or vendor-fail)", f.Kind)
	}
	return nil
}

func knownMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return true
	}
	return false
}

// String renders f in ParseFaults syntax.
func (f Fault) String() string {
	method := f.Method
	if method == "" {
		method = "*"
	}
	switch f.Kind {
	case FaultFail:
		s := fmt.Sprintf("%s %s", method, f.Path)
		if f.Nth > 1 {
			s += "#" + strconv.Itoa(f.Nth)
		}
		s += "=" + strconv.Itoa(f.Status)
		if f.After {
			s += "+after"
		}
		return s
	case FaultLatency:
		return fmt.Sprintf("%s %s latency=%s", method, f.Path, f.Delay)
	case FaultStuckNew:
		return "stuck-new=" + f.Name
	case FaultErrored:
		return "errored=" + f.Action
	case FaultHold:
		return "hold=" + f.Unit + ":" + f.Name + ":" + f.Delay.String()
	case FaultVendorFail:
		return "vendor-fail=" + f.Name
	}
	return string(f.Kind)
}

// FaultSyntax is the fault syntax, for help texts.
const FaultSyntax = `  METHOD PATH[#N]=STATUS[+after]  fail the Nth (default first) matching request
                                  once; +after lets it take effect first;
                                  a 422 answers DO's "pending event" refusal
  METHOD PATH latency=DURATION    delay every matching request
  stuck-new=GLOB                  droplets named like GLOB never become active
  errored=TYPE                    actions of TYPE (create, assign, unassign) end errored
  hold=UNIT:GLOB:DURATION         droplets named like GLOB start UNIT (cloud-init: its
                                  config stage; sshd) DURATION late (Docker backend)
  vendor-fail=GLOB                droplets named like GLOB get vendor-data that fails
Separate faults with ";". METHOD "*" matches any method; PATH is a prefix.
`

// ParseFaults reads the fault syntax of the --faults flag and FLEET_FAULTS:
// faults separated by ";" or newlines, each one of
//
//	METHOD PATH[#N]=STATUS[+after]  fail the Nth (default first) request whose
//	                                method is METHOD ("*" = any) and whose path
//	                                starts with PATH, once, with STATUS; with
//	                                +after the request takes effect first
//	METHOD PATH latency=DURATION    delay every matching request (Go duration)
//	stuck-new=GLOB                  droplets named like GLOB never become active
//	errored=TYPE                    actions of TYPE (create, assign, unassign)
//	                                end "errored"
//	hold=UNIT:GLOB:DURATION         droplets named like GLOB start UNIT
//	                                ("cloud-init" or "sshd") DURATION late
//	vendor-fail=GLOB                droplets named like GLOB get vendor-data
//	                                that fails
//
// For example:
//
//	POST /v2/droplets#1=500+after; GET /v2/droplets latency=200ms; stuck-new=blog-*; errored=assign
//
// If PATH contains "?", the request must also carry every query parameter
// given after it (in any order, among others), e.g.
// "GET /v2/droplets?tag_name=fleet:web=500".
// Errors name the fault (1-based) and its text.
func ParseFaults(spec string) ([]Fault, error) {
	var faults []Fault
	entries := strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' })
	n := 0
	for _, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		n++
		f, err := parseFault(entry)
		if err != nil {
			return nil, fmt.Errorf("fault %d %q: %v", n, entry, err)
		}
		faults = append(faults, f)
	}
	return faults, nil
}

func parseFault(entry string) (Fault, error) {
	if glob, ok := strings.CutPrefix(entry, "stuck-new="); ok {
		f := Fault{Kind: FaultStuckNew, Name: strings.TrimSpace(glob)}
		return f, f.validate()
	}
	if typ, ok := strings.CutPrefix(entry, "errored="); ok {
		f := Fault{Kind: FaultErrored, Action: strings.TrimSpace(typ)}
		return f, f.validate()
	}
	if glob, ok := strings.CutPrefix(entry, "vendor-fail="); ok {
		f := Fault{Kind: FaultVendorFail, Name: strings.TrimSpace(glob)}
		return f, f.validate()
	}
	if spec, ok := strings.CutPrefix(entry, "hold="); ok {
		parts := strings.Split(strings.TrimSpace(spec), ":")
		if len(parts) != 3 {
			return Fault{}, fmt.Errorf("want hold=UNIT:GLOB:DURATION")
		}
		d, err := time.ParseDuration(parts[2])
		if err != nil {
			return Fault{}, fmt.Errorf("hold delay %q: %v", parts[2], err)
		}
		f := Fault{Kind: FaultHold, Unit: parts[0], Name: parts[1], Delay: d}
		return f, f.validate()
	}
	fields := strings.Fields(entry)
	if len(fields) < 2 || len(fields) > 3 {
		return Fault{}, fmt.Errorf(`want "METHOD PATH[#N]=STATUS[+after]", "METHOD PATH latency=DURATION", "stuck-new=GLOB", "errored=TYPE", "hold=UNIT:GLOB:DURATION" or "vendor-fail=GLOB"`)
	}
	method := strings.ToUpper(fields[0])
	if method != "*" && !knownMethod(method) {
		return Fault{}, fmt.Errorf("unknown method %q", fields[0])
	}
	if len(fields) == 3 {
		d, ok := strings.CutPrefix(fields[2], "latency=")
		if !ok {
			return Fault{}, fmt.Errorf("%q: want latency=DURATION", fields[2])
		}
		delay, err := time.ParseDuration(d)
		if err != nil {
			return Fault{}, fmt.Errorf("latency %q: %v", d, err)
		}
		f := Fault{Kind: FaultLatency, Method: method, Path: fields[1], Delay: delay}
		return f, f.validate()
	}
	target := fields[1]
	eq := strings.LastIndex(target, "=")
	if eq < 0 {
		return Fault{}, fmt.Errorf("%q: want PATH[#N]=STATUS[+after]", target)
	}
	p, result := target[:eq], target[eq+1:]
	f := Fault{Kind: FaultFail, Method: method, Path: p, Nth: 1}
	if hash := strings.LastIndex(p, "#"); hash >= 0 {
		nth, err := strconv.Atoi(p[hash+1:])
		if err != nil || nth < 1 {
			return Fault{}, fmt.Errorf("#%s: N must be a positive integer", p[hash+1:])
		}
		f.Path, f.Nth = p[:hash], nth
	}
	if s, ok := strings.CutSuffix(result, "+after"); ok {
		result, f.After = s, true
	}
	status, err := strconv.Atoi(result)
	if err != nil {
		return Fault{}, fmt.Errorf("status %q is not a number", result)
	}
	f.Status = status
	return f, f.validate()
}

var pathMatch = path.Match

// faultState is a Fault with its request counter.
type faultState struct {
	Fault
	seen  int
	fired bool
}

func (f *faultState) matches(r *http.Request) bool {
	if f.Method != "" && f.Method != "*" && f.Method != r.Method {
		return false
	}
	p, query, hasQuery := strings.Cut(f.Path, "?")
	if !strings.HasPrefix(r.URL.Path, p) {
		return false
	}
	if !hasQuery {
		return true
	}
	want, err := url.ParseQuery(query)
	if err != nil {
		return false
	}
	got := r.URL.Query()
	for k, vals := range want {
		for _, v := range vals {
			if !slices.Contains(got[k], v) {
				return false
			}
		}
	}
	return true
}

// actionTypeMatches reports whether an errored fault for want applies to an
// action of type typ ("assign" matches "assign_ip").
func actionTypeMatches(want, typ string) bool {
	return want == typ || want+"_ip" == typ
}

// bootFaults are the hold and vendor-fail faults for a droplet named name:
// the longest hold of each unit, and whether its vendor-data fails. Must be
// called with s.mu held.
func (s *Server) bootFaults(name string) (holds map[string]time.Duration, vendorFail bool) {
	for _, f := range s.faults {
		if f.Kind != FaultHold && f.Kind != FaultVendorFail {
			continue
		}
		if ok, _ := pathMatch(f.Name, name); !ok {
			continue
		}
		if f.Kind == FaultVendorFail {
			vendorFail = true
			continue
		}
		if holds == nil {
			holds = map[string]time.Duration{}
		}
		holds[f.Unit] = max(holds[f.Unit], f.Delay)
	}
	return holds, vendorFail
}
