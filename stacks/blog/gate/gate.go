// fleet-gate holds the writes nginx sends it while the site is frozen for a
// promote, and releases them in arrival order: to the candidate droplet once
// it is writable (forward), or to the local app if the freeze is undone
// (unfreeze). While forwarding it also passes on everything else that still
// reaches this droplet. Its state is the flag files in the flags volume:
//
//	readonly + hold   hold writes (hold holds the budget in ms)
//	forward           forward every request to the "ip:port" it holds
//	none              release what is held to the local app
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Flag file names in the flags directory.
const (
	flagReadonly = "readonly"
	flagHold     = "hold"
	flagForward  = "forward"
)

// HopHeader marks a request a gate forwarded: a gate never forwards one
// again (two droplets forwarding to each other would loop).
const HopHeader = "X-Fleet-Hop"

// Limits.
const (
	maxQueue       = 1024             // held requests; more get 503 at once
	maxFlagBytes   = 256              // a flag file's content
	maxCertBytes   = 1 << 20          // the site's certificate chain
	defaultHoldMS  = 7000             // budget 5 s + 2 s margin
	maxHoldMS      = 120000           // nginx's proxy_read_timeout is above this
	probeTimeout   = 5 * time.Second  // the forward probe
	upstreamHeader = 60 * time.Second // an upstream's response headers
)

type mode int

const (
	modeOpen    mode = iota // release to the local app
	modeFrozen              // readonly without hold: writes get 503 (today's answer)
	modeHold                // hold writes
	modeForward             // forward everything to target
)

func (m mode) String() string {
	return [...]string{"open", "frozen", "hold", "forward"}[m]
}

// state is what the flag files say.
type state struct {
	mode   mode
	holdMS int
	target string // modeForward: "ip:port"
}

// waiter is one held request.
type waiter struct {
	arrived time.Time
	ready   chan struct{} // closed when it may go; via says where
	via     state
	expired bool // under Gate.mu: it gave up (deadline or client gone)
}

// Gate is the HTTP handler nginx proxies held and forwarded requests to.
type Gate struct {
	Flags    string        // the flags directory
	App      *url.URL      // the local app
	CertFile string        // the site's certificate chain (its leaf's key is the pin)
	Poll     time.Duration // how often the flag files are read
	// Client-facing transport to the local app; tests may replace it.
	AppTransport http.RoundTripper
	Logf         func(format string, args ...any)

	mu       sync.Mutex
	st       state
	queue    []*waiter
	running  bool // a held request was released and waits for its response headers
	wake     chan struct{}
	pin      []byte // sha256 of the leaf's SubjectPublicKeyInfo, set by Forward
	fwd      http.RoundTripper
	held     int           // held since the hold began
	longest  time.Duration // longest wait of a held request
	passed   int           // forwarded since forwarding began
	holdFrom time.Time
}

// New returns a gate reading flags; call Start to follow them.
func New(flags string, app *url.URL, certFile string) *Gate {
	return &Gate{
		Flags: flags, App: app, CertFile: certFile, Poll: 10 * time.Millisecond,
		AppTransport: &http.Transport{ResponseHeaderTimeout: upstreamHeader, MaxIdleConnsPerHost: 16},
		Logf:         log.Printf,
		wake:         make(chan struct{}, 1),
	}
}

// readState reads the flag files.
func readState(dir string) (state, error) {
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	if b, err := readSmall(filepath.Join(dir, flagForward)); err == nil {
		t := strings.TrimSpace(string(b))
		if err := checkTarget(t); err != nil {
			return state{}, fmt.Errorf("%s: %w", flagForward, err)
		}
		return state{mode: modeForward, target: t}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return state{}, err
	}
	if !exists(flagReadonly) {
		return state{mode: modeOpen}, nil
	}
	b, err := readSmall(filepath.Join(dir, flagHold))
	if errors.Is(err, os.ErrNotExist) {
		return state{mode: modeFrozen}, nil
	} else if err != nil {
		return state{}, err
	}
	ms := defaultHoldMS
	if s := strings.TrimSpace(string(b)); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxHoldMS {
			return state{}, fmt.Errorf("%s: %q is not milliseconds (1..%d)", flagHold, s, maxHoldMS)
		}
		ms = n
	}
	return state{mode: modeHold, holdMS: ms}, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFlagBytes+1))
	if err == nil && len(b) > maxFlagBytes {
		err = fmt.Errorf("%s: longer than %d bytes", path, maxFlagBytes)
	}
	return b, err
}

// checkTarget accepts "ip:port" only: the candidate's private address.
func checkTarget(t string) error {
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return fmt.Errorf("target %q is not ip:port", t)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("target %q: %q is not an IP address", t, host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("target %q: %q is not a port", t, port)
	}
	return nil
}

// Start follows the flag files until ctx ends.
func (g *Gate) Start(ctx context.Context) {
	g.refresh()
	go func() {
		t := time.NewTicker(g.Poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.refresh()
			}
		}
	}()
	go g.dispatch(ctx)
}

// refresh reads the flags and applies them. An unreadable flag keeps the
// state as it was (never releases by mistake).
func (g *Gate) refresh() {
	st, err := readState(g.Flags)
	if err != nil {
		g.Logf("fleet-gate: %v (state kept)", err)
		return
	}
	g.setState(st)
}

func (g *Gate) setState(st state) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st == g.st {
		return
	}
	if st.mode == modeForward && (g.fwd == nil || g.st.target != st.target) {
		// The pin comes with Forward; a forward flag found at start (a
		// restarted gate) loads it from the certificate.
		fwd, pin, err := g.transportFor(st.target)
		if err != nil {
			g.Logf("fleet-gate: cannot forward to %s: %v (state kept)", st.target, err)
			return
		}
		g.fwd, g.pin = fwd, pin
	}
	if st.mode == modeHold && g.st.mode != modeHold && g.st.mode != modeForward {
		g.held, g.longest, g.holdFrom = 0, 0, time.Now()
	}
	g.Logf("fleet-gate: %s -> %s %s", g.st.mode, st.mode, st.target)
	g.st = st
	g.kick()
}

func (g *Gate) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// released reports whether st lets held requests go.
func released(st state) bool { return st.mode == modeOpen || st.mode == modeForward }

// dispatch releases the queue one request at a time, in arrival order:
// each goes once the one before has its response headers.
func (g *Gate) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		}
		for {
			g.mu.Lock()
			if g.running || !released(g.st) || len(g.queue) == 0 {
				g.mu.Unlock()
				break
			}
			w := g.queue[0]
			g.queue = g.queue[1:]
			if w.expired {
				g.mu.Unlock()
				continue
			}
			g.running = true
			w.via = g.st
			if d := time.Since(w.arrived); d > g.longest {
				g.longest = d
			}
			close(w.ready)
			g.mu.Unlock()
		}
	}
}

// ServeHTTP answers a request nginx sent: forward, hold or pass it.
func (g *Gate) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Header.Get(HopHeader) != "" {
		// Forwarded here by a gate: this droplet is not the one to answer.
		unavailable(rw, "forwarding loop: the droplet this request was forwarded to is not serving it")
		return
	}
	arrived := time.Now()
	// The flags as of now, not of the last poll: nginx routed this write
	// here because it saw the hold; passed to the app on a stale "open" it
	// would get the app's 418, which nothing intercepts on this path (2
	// writes of 2,636 answered 418 in a TestBlog rollback).
	g.refresh()
	g.mu.Lock()
	st := g.st
	inOrder := g.running || len(g.queue) > 0
	switch {
	case released(st) && !inOrder, !isWrite(r.Method) && st.mode != modeForward:
		// Nothing held ahead of it: pass it on at once.
		g.mu.Unlock()
		g.pass(rw, r, st, nil)
		return
	case st.mode == modeFrozen:
		g.mu.Unlock()
		unavailable(rw, "This site is read-only for a moment (maintenance). Please try again in a few seconds.")
		return
	case len(g.queue) >= maxQueue:
		g.mu.Unlock()
		unavailable(rw, "too many requests waiting")
		return
	}
	w := &waiter{arrived: arrived, ready: make(chan struct{})}
	g.queue = append(g.queue, w)
	if st.mode == modeHold {
		g.held++
	}
	holdMS := st.holdMS
	if holdMS == 0 {
		holdMS = defaultHoldMS
	}
	g.mu.Unlock()
	g.kick()

	timer := time.NewTimer(time.Until(arrived.Add(time.Duration(holdMS) * time.Millisecond)))
	defer timer.Stop()
	select {
	case <-w.ready:
	case <-timer.C:
		if g.expire(w) {
			unavailable(rw, "This site is read-only for a moment (maintenance). Please try again in a few seconds.")
			return
		}
		<-w.ready // released as the deadline came
	case <-r.Context().Done():
		if g.expire(w) {
			return
		}
		<-w.ready
	}
	g.pass(rw, r, w.via, func() {
		g.mu.Lock()
		g.running = false
		g.mu.Unlock()
		g.kick()
	})
}

// expire takes w out of the queue unless it was released already.
func (g *Gate) expire(w *waiter) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.ready:
		return false
	default:
	}
	w.expired = true
	return true
}

func isWrite(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// pass sends r to the local app or the forward target; headersDone (may be
// nil) runs once the response headers came back, or the attempt failed.
func (g *Gate) pass(rw http.ResponseWriter, r *http.Request, st state, headersDone func()) {
	var once sync.Once
	done := func() {
		if headersDone != nil {
			once.Do(headersDone)
		}
	}
	defer done()
	g.mu.Lock()
	fwd := g.fwd
	if st.mode == modeForward {
		g.passed++
	}
	g.mu.Unlock()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.Host = pr.In.Host // the site's name, for nginx and the app
			if st.mode == modeForward {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "https", st.target
				pr.Out.Header.Set(HopHeader, "1")
			} else {
				pr.Out.URL.Scheme, pr.Out.URL.Host = g.App.Scheme, g.App.Host
			}
			// nginx set X-Forwarded-*: keep them as they are.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
		},
		Transport: g.AppTransport,
		ModifyResponse: func(*http.Response) error {
			done()
			return nil
		},
		ErrorHandler: func(rw http.ResponseWriter, _ *http.Request, err error) {
			done()
			g.Logf("fleet-gate: %s %s via %s: %v", r.Method, r.URL.Path, st.mode, err)
			// Not sent anywhere that answered: the client may retry.
			unavailableCode(rw, http.StatusBadGateway, "the site is moving to a new server; please retry")
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if st.mode == modeForward {
		rp.Transport = fwd
	}
	rp.ServeHTTP(rw, r)
}

// unavailable is today's answer to a write while frozen: 503, retry soon,
// on a new connection.
func unavailable(rw http.ResponseWriter, msg string) {
	unavailableCode(rw, http.StatusServiceUnavailable, msg)
}

func unavailableCode(rw http.ResponseWriter, code int, msg string) {
	h := rw.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Retry-After", "1")
	h.Set("Cache-Control", "no-store")
	h.Set("Connection", "close")
	rw.WriteHeader(code)
	io.WriteString(rw, msg+"\n")
}

// PinError is a forward target that does not present the site's key.
type PinError struct{ Target, Want, Have string }

func (e *PinError) Error() string {
	return fmt.Sprintf("%s presents key sha256 %s, not this site's %s: it is not a droplet holding this site's certificate", e.Target, e.Have, e.Want)
}

// sitePin is the sha256 of the SubjectPublicKeyInfo of the site's
// certificate (the first in the chain file).
func sitePin(certFile string) ([]byte, error) {
	f, err := os.Open(certFile)
	if err != nil {
		return nil, fmt.Errorf("the site's certificate: %w (before the first certificate there is nothing to pin: no forwarding)", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCertBytes {
		return nil, fmt.Errorf("%s: longer than %d bytes", certFile, maxCertBytes)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return s[:], nil
}

// transportFor is an HTTPS transport to target that accepts only a peer
// whose leaf key is the site's own: the candidate restored this site's
// certificate with the final data, so no CA needs to be trusted, and any
// other server (a reused address, a stale target) is refused.
func (g *Gate) transportFor(target string) (http.RoundTripper, []byte, error) {
	pin, err := sitePin(g.CertFile)
	if err != nil {
		return nil, nil, err
	}
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &PinError{Target: target, Want: fmt.Sprintf("%x", pin), Have: "(none)"}
		}
		have := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
		if !bytes.Equal(have[:], pin) {
			return &PinError{Target: target, Want: fmt.Sprintf("%x", pin[:8]), Have: fmt.Sprintf("%x", have[:8])}
		}
		return nil
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			// The chain is not checked against a CA: the pin is the check.
			InsecureSkipVerify: true, //nolint:gosec // pinned in VerifyConnection
			VerifyConnection:   verify,
		},
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: upstreamHeader,
		MaxIdleConnsPerHost:   32,
		ForceAttemptHTTP2:     false,
	}
	return tr, pin, nil
}

// Forward makes the gate forward to target ("ip:port") once a probe shows
// it answers as this site: a TLS handshake with the site's key and a 2xx
// for GET /healthz. It writes the forward flag (nginx then sends every
// request here) and returns the figures of the hold. Forwarding to the
// same target again is a no-op.
func (g *Gate) Forward(ctx context.Context, target, host string) (string, error) {
	if err := checkTarget(target); err != nil {
		return "", err
	}
	g.mu.Lock()
	same := g.st.mode == modeForward && g.st.target == target
	g.mu.Unlock()
	if !same {
		tr, pin, err := g.transportFor(target)
		if err != nil {
			return "", err
		}
		if err := probe(ctx, tr, target, host); err != nil {
			return "", err
		}
		g.mu.Lock()
		g.fwd, g.pin = tr, pin
		g.mu.Unlock()
		if err := writeFlag(g.Flags, flagForward, target+"\n"); err != nil {
			return "", err
		}
		g.setState(state{mode: modeForward, target: target})
	}
	return g.Figures(), nil
}

// Figures is the hold's account: "forwarding held=N longest_ms=M".
func (g *Gate) Figures() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	longest := g.longest
	for _, w := range g.queue {
		if d := time.Since(w.arrived); !w.expired && d > longest {
			longest = d
		}
	}
	return fmt.Sprintf("%s held=%d longest_ms=%d queued=%d passed=%d", g.st.mode, g.held, longest.Milliseconds(), len(g.queue), g.passed)
}

func probe(ctx context.Context, tr http.RoundTripper, target, host string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+target+"/healthz", nil)
	if err != nil {
		return err
	}
	req.Host = host
	req.Header.Set(HopHeader, "probe")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("probing %s: %w", target, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("probing %s: GET /healthz (Host %s) answered %s", target, host, resp.Status)
	}
	return nil
}

// writeFlag replaces a flag file atomically.
func writeFlag(dir, name, content string) error {
	tmp := filepath.Join(dir, "."+name+".new")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
