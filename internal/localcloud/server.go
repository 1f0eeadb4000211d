// Package localcloud is fleet's DigitalOcean-compatible API server: the
// subset of https://api.digitalocean.com/v2 that fleet (through godo) uses,
// with DigitalOcean's shapes and semantics, over a pluggable Backend (an
// in-memory one by default).
//
// Served: account, regions, sizes, SSH keys, droplets (create, get, list by
// tag, delete by id or tag), droplet actions and actions, reserved IPs and
// their assign/unassign actions, and tags with tag resources. Every /v2/
// request needs "Authorization: Bearer <Options.Token>"; every /v2/
// response carries ratelimit-limit, ratelimit-remaining, ratelimit-reset
// and x-request-id; errors are {"id","message","request_id"}.
//
// Droplets are "new" until Backend.Boot returns, then "active", and only
// then list their public address in networks.v4 (and a private one).
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
	// means DigitalOcean's 5000. RateWindow defaults to an hour.
	RateLimit  int
	RateWindow time.Duration
	// Faults are injected from the start; see Fault and ParseFaults.
	Faults []Fault
	// Backend runs the machines; nil means MemoryBackend{BootDelay}.
	Backend Backend
	// Logf, if set, gets one line per request.
	Logf func(format string, args ...any)
	// StatePath, if set, is the JSON file the state is kept in across
	// restarts (see state.go); "" keeps it in memory only.
	StatePath string
}

// Request is one request as recorded in Stats.
type Request struct {
	Method   string        `json:"method"`
	Path     string        `json:"path"` // with the query, if any
	Time     time.Time     `json:"time"`
	Status   int           `json:"status"`
	Duration time.Duration `json:"duration"`
}

// Stats is the log of the /v2/ requests a Server answered, oldest first.
type Stats struct {
	Requests []Request `json:"requests"`
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
	stats     []Request
	rate      map[string]*rateBucket
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
	state     *stateStore // nil without Options.StatePath
}

type rateBucket struct {
	start time.Time
	count int
}

// NewServer returns a Server; call Close to stop its goroutines.
func NewServer(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("localcloud: Options.Token is required")
	}
	if opts.RateLimit < 0 || opts.RateWindow < 0 || opts.BootDelay < 0 || opts.ActionDelay < 0 {
		return nil, errors.New("localcloud: negative RateLimit, RateWindow, BootDelay or ActionDelay")
	}
	if opts.RateLimit == 0 {
		opts.RateLimit = 5000
	}
	if opts.RateWindow == 0 {
		opts.RateWindow = time.Hour
	}
	s := &Server{
		opts:      opts,
		backend:   opts.Backend,
		rate:      map[string]*rateBucket{},
		projectID: newUUID(),
		vpcID:     newUUID(),
		accountID: newUUID(),
		droplets:  map[int]*droplet{},
		actions:   map[int]*action{},
		tags:      map[string]*tag{},
		rips:      map[string]*reservedIP{},
	}
	if s.backend == nil {
		s.backend = MemoryBackend{BootDelay: opts.BootDelay}
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
	return Stats{Requests: append([]Request{}, s.stats...)}
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
	defer func() {
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		s.logf("%s %s -> %d (%s)", r.Method, r.URL.RequestURI(), sw.status, d.Round(time.Microsecond))
		if strings.HasPrefix(r.URL.Path, "/_fleet/") {
			return
		}
		s.mu.Lock()
		s.stats = append(s.stats, Request{Method: r.Method, Path: r.URL.RequestURI(), Time: start, Status: sw.status, Duration: d})
		s.mu.Unlock()
	}()

	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	authed := token == s.opts.Token
	if strings.HasPrefix(r.URL.Path, "/_fleet/") {
		if !authed {
			writeError(sw, r, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
			return
		}
		s.admin(sw, r)
		return
	}
	if !authed {
		s.setRateHeaders(sw, token, false)
		writeError(sw, r, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		return
	}
	if retry, ok := s.setRateHeaders(sw, token, true); !ok {
		sw.Header().Set("Retry-After", strconv.Itoa(retry))
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

// setRateHeaders sets the ratelimit-* headers for token, counting the
// request if count is set. It returns false and the seconds to wait if the
// limit is exhausted.
func (s *Server) setRateHeaders(w http.ResponseWriter, token string, count bool) (retryAfter int, ok bool) {
	now := time.Now()
	s.mu.Lock()
	b := s.rate[token]
	if b == nil || now.Sub(b.start) >= s.opts.RateWindow {
		b = &rateBucket{start: now}
		if count {
			s.rate[token] = b
		}
	}
	ok = b.count < s.opts.RateLimit
	if ok && count {
		b.count++
	}
	remaining := s.opts.RateLimit - b.count
	reset := b.start.Add(s.opts.RateWindow)
	s.mu.Unlock()

	h := w.Header()
	h.Set("ratelimit-limit", strconv.Itoa(s.opts.RateLimit))
	h.Set("ratelimit-remaining", strconv.Itoa(remaining))
	h.Set("ratelimit-reset", strconv.FormatInt(reset.Unix(), 10))
	if !ok {
		retryAfter = int((reset.Sub(now) + time.Second - 1) / time.Second)
		if retryAfter < 1 {
			retryAfter = 1
		}
	}
	return retryAfter, ok
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
		if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
			writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
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
