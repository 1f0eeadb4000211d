// Package localcloud is fleet's DigitalOcean-compatible API server: the
// subset of https://api.digitalocean.com/v2 that fleet (through godo) uses,
// with DigitalOcean's shapes and semantics, over a pluggable Backend (an
// in-memory one by default).
//
// Served: account, regions, sizes, SSH keys, droplets (create, get, list by
// tag, delete by id or tag), droplet actions (power_off, shutdown,
// power_on, reboot, rename, snapshot; actions.go) and actions, images (a
// catalogue of distribution slugs and the account's snapshots; images.go),
// snapshots, reserved IPs and their assign/unassign actions, and tags with
// tag resources. Every /v2/
// request needs "Authorization: Bearer <Options.Token>" (the scheme is
// case-insensitive); every /v2/ response carries ratelimit-limit,
// ratelimit-remaining, ratelimit-reset and x-request-id; errors are
// {"id","message","request_id"}. Rate limits are DigitalOcean's: 5,000
// requests an hour (429 without Retry-After) and 250 a minute (429 with
// Retry-After), both lowerable for tests (Options.RateLimit, BurstLimit).
//
// Hostile input is bounded: a URI longer than 16 KiB is a 414, a body
// larger than 1 MiB a 413, page and per_page are validated as DigitalOcean
// does (see pageParams), and the request log behind Stats is a ring of
// Options.StatsSize entries. Serve it with NewHTTPServer, which also bounds
// headers and slow clients.
//
// Droplets are "new" until Backend.Boot returns, then "active", and only
// then list their public address in networks.v4 (and a private one). An
// assigned reserved IP is listed there too, as a public network, first for
// droplets with an even ID and after the droplet's own address otherwise:
// DigitalOcean documents no order. A reserved IP belongs to a region and
// is assigned only to droplets of that region (422 otherwise); one
// created onto a droplet takes the droplet's region.
// Reserved IP assign/unassign actions are asynchronous: they stay
// "in-progress" for Options.ActionDelay and take effect when they complete
// (Backend.Route is called then). A droplet is "locked" while an action on
// it is in progress, and assigning to or unassigning from such a droplet is
// a 422 "Droplet already has a pending event."
//
// Test hooks, outside the DigitalOcean API and behind the same token:
//
//	POST   /_fleet/faults  add faults: JSON (one Fault or a list) or ParseFaults text
//	GET    /_fleet/faults  list the faults
//	DELETE /_fleet/faults  remove all faults
//	GET    /_fleet/stats   Stats as JSON
package localcloud

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// Token is the bearer token every request must carry. Required.
	Token string
	// BootDelay is how long the memory backend takes to boot a droplet
	// (it stays "new" that long). Ignored when Backend is set.
	BootDelay time.Duration
	// ActionDelay is how long a reserved IP assign/unassign action stays
	// "in-progress". 0 completes it right after the response is written.
	ActionDelay time.Duration
	// RateLimit is the number of requests per RateWindow per token; 0
	// means DigitalOcean's 5000. RateWindow defaults to an hour. Each
	// request counts for a window after it was made; over the limit the
	// 429 has no Retry-After and ratelimit-reset says when the oldest
	// request expires (see ratelimit.go).
	RateLimit  int
	RateWindow time.Duration
	// BurstLimit is the number of requests per BurstWindow per token; 0
	// means DigitalOcean's 250 a minute. Its 429 carries Retry-After.
	BurstLimit  int
	BurstWindow time.Duration
	// Faults are injected from the start; see Fault and ParseFaults.
	Faults []Fault
	// Backend runs the machines; nil means MemoryBackend{BootDelay, SSH}.
	Backend Backend
	// SSH gives the memory backend's droplets an sshd (nil: none).
	SSH *MemorySSH
	// Logf, if set, gets one line per request.
	Logf func(format string, args ...any)
	// StatePath, if set, is the JSON file the state is kept in across
	// restarts (see state.go); "" keeps it in memory only.
	StatePath string
	// StatsSize is how many requests Stats keeps (the newest); 0 means
	// 4096.
	StatsSize int
}

const (
	defaultStatsSize = 4096
	// maxStatsPath bounds the URI kept per request in Stats.
	maxStatsPath = 256
	// maxURI is the longest request URI answered (Cloudflare, in front of
	// DigitalOcean's API, answers 414 past 16 KB).
	maxURI = 16 << 10
	// maxHeaderBytes bounds the request line and headers (net/http adds
	// 4 KiB of slack).
	maxHeaderBytes = 64 << 10
)

// NewHTTPServer returns an http.Server for h (a Server's Handler) with the
// limits a public API needs, so that no client can hold memory or a
// connection for long: headers in 10 s and at most 64 KiB, the whole
// request in a minute, idle connections closed after two.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
	}
}

// Request is one request as recorded in Stats.
type Request struct {
	Method string `json:"method"`
	// Path is the path with the query, if any, cut to its first 256 bytes
	// (then Truncated is set).
	Path      string        `json:"path"`
	Truncated bool          `json:"truncated,omitempty"`
	Time      time.Time     `json:"time"`
	Status    int           `json:"status"`
	Duration  time.Duration `json:"duration"`
}

// Stats is the log of the authenticated /v2/ requests a Server answered,
// oldest first: the newest Options.StatsSize of them.
type Stats struct {
	Requests []Request `json:"requests"`
	// Dropped is how many older requests fell out of Requests.
	Dropped int `json:"dropped"`
	// Unauthenticated counts the requests answered 401 (not in Requests).
	Unauthenticated int `json:"unauthenticated"`
}

// Count returns how many recorded requests have the method ("" = any) and
// a path (with query) starting with prefix.
func (st Stats) Count(method, prefix string) int {
	n := 0
	for _, r := range st.Requests {
		if (method == "" || r.Method == method) && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

// Server is an in-process DigitalOcean API. It is safe for concurrent use.
type Server struct {
	opts    Options
	backend Backend
	mux     *http.ServeMux
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	faults    []*faultState
	stats     requestLog
	rate      map[string]*rateState
	projectID string
	vpcID     string
	accountID string
	nextID    struct{ droplet, action, key int }
	droplets  map[int]*droplet
	actions   map[int]*action
	keys      []*sshKey
	tags      map[string]*tag
	tagSeq    int
	rips      map[string]*reservedIP
	images    map[int]*image // snapshot images (images.go)
	state     *stateStore    // nil without Options.StatePath

	imageRefresh sync.Mutex // serializes reading the backend's images
	imagesRead   time.Time  // when they were last read; guarded by mu
}

// NewServer returns a Server; call Close to stop its goroutines.
func NewServer(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("localcloud: Options.Token is required")
	}
	if opts.RateLimit < 0 || opts.RateWindow < 0 || opts.BurstLimit < 0 || opts.BurstWindow < 0 ||
		opts.BootDelay < 0 || opts.ActionDelay < 0 || opts.StatsSize < 0 {
		return nil, errors.New("localcloud: negative RateLimit, RateWindow, BurstLimit, BurstWindow, BootDelay, ActionDelay or StatsSize")
	}
	if opts.StatsSize == 0 {
		opts.StatsSize = defaultStatsSize
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = defaultRateLimit
	}
	if opts.RateWindow == 0 {
		opts.RateWindow = time.Hour
	}
	if opts.BurstLimit == 0 {
		opts.BurstLimit = defaultBurstLimit
	}
	if opts.BurstWindow == 0 {
		opts.BurstWindow = defaultBurstWindow
	}
	s := &Server{
		opts:      opts,
		backend:   opts.Backend,
		rate:      map[string]*rateState{},
		projectID: newUUID(),
		vpcID:     newUUID(),
		accountID: newUUID(),
		droplets:  map[int]*droplet{},
		actions:   map[int]*action{},
		tags:      map[string]*tag{},
		rips:      map[string]*reservedIP{},
		images:    map[int]*image{},
		stats:     requestLog{size: opts.StatsSize},
	}
	if s.backend == nil {
		s.backend = MemoryBackend{BootDelay: opts.BootDelay, SSH: opts.SSH}
		if opts.SSH != nil && opts.SSH.Dir != "" {
			s.backend = DiskMemoryBackend{MemoryBackend{BootDelay: opts.BootDelay, SSH: opts.SSH}}
		}
	}
	s.nextID.droplet, s.nextID.action, s.nextID.key = 500000000, 1900000000, 41000000
	for _, f := range opts.Faults {
		if err := f.validate(); err != nil {
			return nil, fmt.Errorf("localcloud: fault %s: %v", f, err)
		}
		s.faults = append(s.faults, &faultState{Fault: f})
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.restore(); err != nil {
		s.cancel()
		return nil, err
	}
	s.mux = http.NewServeMux()
	s.routes()
	return s, nil
}

// AddFault injects f from now on. An invalid fault is ignored and logged;
// use ParseFaults or the admin endpoint to get errors.
func (s *Server) AddFault(f Fault) {
	if err := f.validate(); err != nil {
		s.logf("localcloud: ignoring fault %s: %v", f, err)
		return
	}
	s.mu.Lock()
	s.faults = append(s.faults, &faultState{Fault: f})
	s.mu.Unlock()
}

// Stats returns a copy of the request log.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.snapshot()
}

// requestLog is a ring of the newest size requests.
type requestLog struct {
	buf     []Request // grows to size; once full, head is the oldest
	head    int
	size    int
	dropped int
	unauth  int
}

func (l *requestLog) add(r Request) {
	if len(l.buf) < l.size {
		l.buf = append(l.buf, r)
		return
	}
	l.buf[l.head] = r
	l.head = (l.head + 1) % l.size
	l.dropped++
}

func (l *requestLog) snapshot() Stats {
	out := make([]Request, 0, len(l.buf))
	out = append(append(out, l.buf[l.head:]...), l.buf[:l.head]...)
	return Stats{Requests: out, Dropped: l.dropped, Unauthenticated: l.unauth}
}

// shortURI returns the first max bytes of r's request URI, copied: a
// substring would keep the whole request line alive.
func shortURI(r *http.Request, max int) (uri string, cut bool) {
	uri = r.RequestURI
	if uri == "" || uri[0] != '/' { // in-process, or absolute-form
		uri = r.URL.RequestURI()
	}
	if len(uri) > max {
		return strings.Clone(uri[:max]), true
	}
	return strings.Clone(uri), false
}

// uriLen is the length of r's request URI, without building it.
func uriLen(r *http.Request) int {
	if r.RequestURI != "" {
		return len(r.RequestURI)
	}
	return len(r.URL.Path) + 1 + len(r.URL.RawQuery)
}

// methodName is r.Method, copied for the same reason as in shortURI.
func methodName(m string) string {
	for _, k := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPatch, http.MethodOptions} {
		if m == k {
			return k
		}
	}
	return strings.Clone(m[:min(len(m), 16)])
}

// bearerToken returns the credentials of "Authorization: Bearer <token>";
// the scheme is case-insensitive and may be followed by several spaces
// (RFC 7235 section 2.1). Anything else, or several Authorization headers,
// is no token.
func bearerToken(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Close stops the background goroutines (boots and pending actions stay as
// they are), waits for them, and writes the state if Options.StatePath is
// set. Requests after Close still get answers.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.closeState()
}

// goBackground runs f in a goroutine that Close waits for; false if closed.
// Must be called with s.mu held.
func (s *Server) goBackground(f func()) bool {
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Handler returns the HTTP handler of the API and the /_fleet/ endpoints.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serve) }

// discardWriter records the status of a response it throws away.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newUUID()
	w.Header().Set("x-request-id", rid)
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, rid))
	sw := &statusWriter{ResponseWriter: w}
	token, ok := bearerToken(r)
	authed := ok && subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.Token)) == 1
	defer func() {
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		uri, cut := shortURI(r, maxStatsPath)
		if cut {
			s.logf("%s %s... (%d bytes) -> %d (%s)", methodName(r.Method), uri, uriLen(r), sw.status, d.Round(time.Microsecond))
		} else {
			s.logf("%s %s -> %d (%s)", methodName(r.Method), uri, sw.status, d.Round(time.Microsecond))
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case !authed:
			s.stats.unauth++ // counted only: anyone can send these
		case !strings.HasPrefix(r.URL.Path, "/_fleet/"):
			s.stats.add(Request{Method: methodName(r.Method), Path: uri, Truncated: cut, Time: start, Status: sw.status, Duration: d})
		}
	}()

	if !authed {
		if !strings.HasPrefix(r.URL.Path, "/_fleet/") {
			s.setRateHeaders(sw, "", false)
		}
		writeError(sw, r, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		return
	}
	if uriLen(r) > maxURI {
		writeError(sw, r, http.StatusRequestURITooLong, errorID(http.StatusRequestURITooLong),
			fmt.Sprintf("The request URI is longer than %d bytes.", maxURI))
		return
	}
	if strings.HasPrefix(r.URL.Path, "/_fleet/") {
		s.admin(sw, r)
		return
	}
	if retry, ok := s.setRateHeaders(sw, token, true); !ok {
		if retry > 0 { // the burst limit's; the hourly one has none
			sw.Header().Set("Retry-After", strconv.Itoa(retry))
		}
		writeError(sw, r, http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded.")
		return
	}

	delay, fail := s.matchFaults(r)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
		t.Stop()
	}
	if fail != nil {
		if fail.After {
			rec := &discardWriter{header: http.Header{}}
			s.routeDurably(rec, r)
			s.logf("localcloud: fault %s: handled (%d), answering %d", fail.Fault, rec.status, fail.Status)
		}
		if fail.Status == http.StatusTooManyRequests {
			sw.Header().Set("Retry-After", "1")
		}
		msg := "injected fault: " + fail.Fault.String()
		if fail.Status == http.StatusUnprocessableEntity {
			// The 422 a deploy meets in practice: DO's pending-event refusal.
			msg = "Droplet already has a pending event. (" + msg + ")"
		}
		writeError(sw, r, fail.Status, errorID(fail.Status), msg)
		return
	}
	s.routeDurably(sw, r)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		writeError(w, r, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// matchFaults returns the total latency to add and the fail fault that
// fires for r, if any; it advances the fail faults' counters.
func (s *Server) matchFaults(r *http.Request) (time.Duration, *faultState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var delay time.Duration
	var fire *faultState
	for _, f := range s.faults {
		if (f.Kind != FaultFail && f.Kind != FaultLatency) || !f.matches(r) {
			continue
		}
		if f.Kind == FaultLatency {
			delay += f.Delay
			continue
		}
		if f.fired {
			continue
		}
		f.seen++
		nth := f.Nth
		if nth < 1 {
			nth = 1
		}
		if f.seen == nth && fire == nil {
			f.fired = true
			fire = f
		}
	}
	return delay, fire
}

// stuckNew reports whether a droplet name matches a stuck-new fault.
// Must be called with s.mu held.
func (s *Server) stuckNew(name string) bool {
	for _, f := range s.faults {
		if f.Kind == FaultStuckNew {
			if ok, _ := pathMatch(f.Name, name); ok {
				return true
			}
		}
	}
	return false
}

// erroredAction reports whether actions of type typ must end errored.
// Must be called with s.mu held.
func (s *Server) erroredAction(typ string) bool {
	for _, f := range s.faults {
		if f.Kind == FaultErrored && actionTypeMatches(f.Action, typ) {
			return true
		}
	}
	return false
}

func (s *Server) admin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_fleet/stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats())
	case r.URL.Path == "/_fleet/faults" && r.Method == http.MethodGet:
		s.mu.Lock()
		list := make([]Fault, len(s.faults))
		for i, f := range s.faults {
			list[i] = f.Fault
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, list)
	case r.URL.Path == "/_fleet/faults" && r.Method == http.MethodDelete:
		s.mu.Lock()
		s.faults = nil
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/_fleet/faults" && r.Method == http.MethodPost:
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
			bodyError(w, r, err)
			return
		}
		faults, err := decodeFaults(buf.Bytes())
		if err != nil {
			writeError(w, r, http.StatusUnprocessableEntity, "unprocessable_entity", err.Error())
			return
		}
		for _, f := range faults {
			s.AddFault(f)
		}
		writeJSON(w, http.StatusCreated, faults)
	default:
		writeError(w, r, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
	}
}

// decodeFaults reads a JSON fault or list of faults, or ParseFaults text.
func decodeFaults(b []byte) ([]Fault, error) {
	t := bytes.TrimSpace(b)
	switch {
	case len(t) == 0:
		return nil, errors.New("no faults given")
	case t[0] == '[':
		var list []Fault
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("faults: %v", err)
		}
		return list, nil
	case t[0] == '{':
		var f Fault
		if err := json.Unmarshal(t, &f); err != nil {
			return nil, fmt.Errorf("fault: %v", err)
		}
		return []Fault{f}, nil
	default:
		return ParseFaults(string(t))
	}
}

type requestIDKey struct{}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

type errorBody struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func errorID(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusUnprocessableEntity:
		return "unprocessable_entity"
	case http.StatusTooManyRequests:
		return "too_many_requests"
	case http.StatusServiceUnavailable:
		return "service_unavailable"
	}
	if status >= 500 {
		return "server_error"
	}
	return strings.ReplaceAll(strings.ToLower(http.StatusText(status)), " ", "_")
}

func writeError(w http.ResponseWriter, r *http.Request, status int, id, msg string) {
	writeJSON(w, status, errorBody{ID: id, Message: msg, RequestID: requestID(r)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"id":"server_error","message":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeNoContent(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusNoContent)
}
