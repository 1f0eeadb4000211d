package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rig is a gate in front of a recording app, with its flags in a temp dir.
type rig struct {
	t     *testing.T
	g     *Gate
	front *httptest.Server // what nginx would call
	flags string
	cert  string

	mu   sync.Mutex
	seen []string // "METHOD path body" in the order the app got them
}

func newRig(t *testing.T) *rig {
	t.Helper()
	return newRigPoll(t, 2*time.Millisecond)
}

// newRigPoll is newRig whose gate reads the flags every poll.
func newRigPoll(t *testing.T, poll time.Duration) *rig {
	t.Helper()
	r := &rig{t: t, flags: t.TempDir()}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.record(w, req, "app")
	}))
	t.Cleanup(app.Close)
	u, _ := url.Parse(app.URL)
	r.cert = filepath.Join(t.TempDir(), "fullchain.pem")
	r.g = New(r.flags, u, r.cert)
	r.g.Poll = poll
	r.g.Logf = t.Logf
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.g.Start(ctx)
	r.front = httptest.NewServer(r.g)
	t.Cleanup(r.front.Close)
	return r
}

func (r *rig) record(w http.ResponseWriter, req *http.Request, who string) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.seen = append(r.seen, fmt.Sprintf("%s %s %s %s", who, req.Method, req.URL.Path, b))
	r.mu.Unlock()
	w.Header().Set("X-Host", req.Host)
	w.Header().Set("X-Hop", req.Header.Get(HopHeader))
	w.WriteHeader(http.StatusCreated)
}

func (r *rig) flag(name, content string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.flags, name), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) unflag(names ...string) {
	for _, n := range names {
		os.Remove(filepath.Join(r.flags, n))
	}
}

// waitMode waits until the gate has read the flags.
func (r *rig) waitMode(m mode) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.g.mu.Lock()
		got := r.g.st.mode
		r.g.mu.Unlock()
		if got == m {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("gate mode %s, want %s", got, m)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) waitQueued(n int) {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.g.mu.Lock()
		got := len(r.g.queue)
		r.g.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d requests queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

type answer struct {
	code  int
	hdr   http.Header
	err   error
	waits time.Duration
}

// send posts body and returns a channel with the answer.
func (r *rig) send(method, path, body string, hdr ...string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		start := time.Now()
		req, _ := http.NewRequest(method, r.front.URL+path, strings.NewReader(body))
		req.Host = "blog.example"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- answer{code: resp.StatusCode, hdr: resp.Header, waits: time.Since(start)}
	}()
	return ch
}

func get(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatal(a.err)
		}
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no answer in 10 s")
	}
	return answer{}
}

func (r *rig) seenList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// TestHoldReleasesInOrder: writes held during the freeze reach the app, in
// arrival order, once the site is writable again (unfreeze).
func TestHoldReleasesInOrder(t *testing.T) {
	r := newRig(t)
	r.flag(flagHold, "5000")
	r.flag(flagReadonly, "")
	r.waitMode(modeHold)
	var chs []<-chan answer
	var want []string
	for i := 0; i < 20; i++ {
		chs = append(chs, r.send("POST", "/c", fmt.Sprint("w", i)))
		want = append(want, fmt.Sprintf("app POST /c w%d", i))
		r.waitQueued(i + 1)
	}
	time.Sleep(20 * time.Millisecond)
	if s := r.seenList(); len(s) != 0 {
		t.Fatalf("the app got %v while the site was held", s)
	}
	r.unflag(flagReadonly, flagHold) // unfreeze
	for _, ch := range chs {
		if a := get(t, ch); a.code != http.StatusCreated {
			t.Fatalf("released write: %d, want 201", a.code)
		}
	}
	if got := r.seenList(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("order at the app:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f := r.g.Figures(); !strings.Contains(f, "held=20") {
		t.Fatalf("figures %q, want held=20", f)
	}
}

// TestHoldDeadline: a write held past its budget gets today's 503.
func TestHoldDeadline(t *testing.T) {
	r := newRig(t)
	r.flag(flagHold, "150")
	r.flag(flagReadonly, "")
	r.waitMode(modeHold)
	a := get(t, r.send("POST", "/c", "late"))
	if a.code != http.StatusServiceUnavailable || a.hdr.Get("Retry-After") == "" || a.waits < 140*time.Millisecond {
		t.Fatalf("held past the deadline: %d Retry-After %q after %v; want 503 with Retry-After after 150ms", a.code, a.hdr.Get("Retry-After"), a.waits)
	}
	r.unflag(flagReadonly, flagHold)
	r.waitMode(modeOpen)
	time.Sleep(20 * time.Millisecond)
	if s := r.seenList(); len(s) != 0 {
		t.Fatalf("an expired write still reached the app: %v", s)
	}
	// The queue moves on past the expired one.
	if a := get(t, r.send("POST", "/c", "next")); a.code != http.StatusCreated {
		t.Fatalf("write after the freeze: %d", a.code)
	}
}

func TestStates(t *testing.T) {
	tests := []struct {
		name  string
		flags map[string]string
		want  state
		err   string
	}{
		{"open", nil, state{mode: modeOpen}, ""},
		{"frozen", map[string]string{flagReadonly: ""}, state{mode: modeFrozen}, ""},
		{"hold without readonly", map[string]string{flagHold: "100"}, state{mode: modeOpen}, ""},
		{"hold", map[string]string{flagReadonly: "", flagHold: "100\n"}, state{mode: modeHold, holdMS: 100}, ""},
		{"hold default", map[string]string{flagReadonly: "", flagHold: ""}, state{mode: modeHold, holdMS: defaultHoldMS}, ""},
		{"hold junk", map[string]string{flagReadonly: "", flagHold: "soon"}, state{}, "not milliseconds"},
		{"hold huge", map[string]string{flagReadonly: "", flagHold: "99999999"}, state{}, "not milliseconds"},
		{"forward", map[string]string{flagReadonly: "", flagForward: "10.1.2.3:443\n"}, state{mode: modeForward, target: "10.1.2.3:443"}, ""},
		{"forward name", map[string]string{flagForward: "example.com:443"}, state{}, "not an IP"},
		{"forward port", map[string]string{flagForward: "10.1.2.3:99999"}, state{}, "not a port"},
		{"forward long", map[string]string{flagForward: strings.Repeat("1", 300)}, state{}, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, c := range tt.flags {
				os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
			}
			got, err := readState(dir)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v %v, want %+v", got, err, tt.want)
			}
		})
	}
}

// TestFrozenWithoutHold: a stack that freezes without hold refuses at once.
func TestFrozenWithoutHold(t *testing.T) {
	r := newRig(t)
	r.flag(flagReadonly, "")
	r.waitMode(modeFrozen)
	if a := get(t, r.send("POST", "/c", "x")); a.code != http.StatusServiceUnavailable || a.waits > time.Second {
		t.Fatalf("write while frozen: %d after %v, want 503 at once", a.code, a.waits)
	}
	if a := get(t, r.send("GET", "/", "")); a.code != http.StatusCreated {
		t.Fatalf("read while frozen: %d, want the app's answer", a.code)
	}
}

// TestHopLoop: a request a gate forwarded is never forwarded again.
func TestHopLoop(t *testing.T) {
	r := newRig(t)
	a := get(t, r.send("POST", "/c", "x", HopHeader, "1"))
	if a.code != http.StatusServiceUnavailable {
		t.Fatalf("forwarded request at a gate: %d, want 503", a.code)
	}
	if s := r.seenList(); len(s) != 0 {
		t.Fatalf("the app got %v", s)
	}
}

// selfSigned returns a certificate PEM and a tls.Certificate for a server.
func selfSigned(t *testing.T) ([]byte, *ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "blog.example"},
		DNSNames: []string{"blog.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key, c
}

// candidate is a TLS server standing in for the candidate's nginx, with
// the site's certificate.
func (r *rig) candidate(t *testing.T) (*httptest.Server, []byte) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/healthz" {
			w.WriteHeader(http.StatusOK)
			return
		}
		r.record(w, req, "cand")
	}))
	t.Cleanup(srv.Close)
	der := srv.TLS.Certificates[0].Certificate[0]
	return srv, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestForward: held writes go to the candidate in order, with the site's
// Host and the hop mark; then everything that still arrives follows them.
func TestForward(t *testing.T) {
	r := newRig(t)
	cand, certPEM := r.candidate(t)
	os.WriteFile(r.cert, certPEM, 0o644)
	r.flag(flagHold, "5000")
	r.flag(flagReadonly, "")
	r.waitMode(modeHold)
	var chs []<-chan answer
	var want []string
	for i := 0; i < 5; i++ {
		chs = append(chs, r.send("POST", "/c", fmt.Sprint("w", i)))
		want = append(want, fmt.Sprintf("cand POST /c w%d", i))
		r.waitQueued(i + 1)
	}
	target := cand.Listener.Addr().String()
	fig, err := r.g.Forward(context.Background(), target, "blog.example")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(fig, "forward held=5 ") {
		t.Fatalf("figures %q", fig)
	}
	if b, _ := os.ReadFile(filepath.Join(r.flags, flagForward)); strings.TrimSpace(string(b)) != target {
		t.Fatalf("forward flag holds %q, want %q", b, target)
	}
	for _, ch := range chs {
		if a := get(t, ch); a.code != http.StatusCreated || a.hdr.Get("X-Host") != "blog.example" || a.hdr.Get("X-Hop") != "1" {
			t.Fatalf("forwarded write: %d Host %q hop %q", a.code, a.hdr.Get("X-Host"), a.hdr.Get("X-Hop"))
		}
	}
	// A read on a kept-alive connection after the forward goes too.
	if a := get(t, r.send("GET", "/p", "")); a.code != http.StatusCreated {
		t.Fatalf("read while forwarding: %d", a.code)
	}
	want = append(want, "cand GET /p ")
	if got := r.seenList(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("at the candidate:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Again to the same target: a no-op that still reports.
	if _, err := r.g.Forward(context.Background(), target, "blog.example"); err != nil {
		t.Fatalf("forward again: %v", err)
	}
}

// TestForwardRefused: a target without the site's key, or no certificate
// to pin, is never forwarded to; the writes stay held.
func TestForwardRefused(t *testing.T) {
	tests := []struct {
		name string
		cert func(t *testing.T) []byte // nil: no certificate file
		want string
	}{
		{"other key", func(t *testing.T) []byte { p, _, _ := selfSigned(t); return p }, "not this site's"},
		{"no certificate", nil, "nothing to pin"},
		{"junk certificate", func(*testing.T) []byte { return []byte("junk") }, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			cand, _ := r.candidate(t)
			if tt.cert != nil {
				os.WriteFile(r.cert, tt.cert(t), 0o644)
			}
			r.flag(flagHold, "5000")
			r.flag(flagReadonly, "")
			r.waitMode(modeHold)
			ch := r.send("POST", "/c", "w")
			r.waitQueued(1)
			_, err := r.g.Forward(context.Background(), cand.Listener.Addr().String(), "blog.example")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("forward: %v, want an error saying %q", err, tt.want)
			}
			var pe *PinError
			if tt.name == "other key" && !errors.As(err, &pe) {
				t.Fatalf("forward: %T, want *PinError", err)
			}
			if _, err := os.Stat(filepath.Join(r.flags, flagForward)); err == nil {
				t.Fatal("a refused forward wrote the forward flag")
			}
			time.Sleep(20 * time.Millisecond)
			if s := r.seenList(); len(s) != 0 {
				t.Fatalf("requests went out: %v", s)
			}
			r.unflag(flagReadonly, flagHold)
			if a := get(t, ch); a.code != http.StatusCreated {
				t.Fatalf("held write after unfreeze: %d", a.code)
			}
		})
	}
}

// TestQueueCap: past maxQueue held requests, more get 503 at once.
func TestQueueCap(t *testing.T) {
	r := newRig(t)
	r.flag(flagHold, "5000")
	r.flag(flagReadonly, "")
	r.waitMode(modeHold)
	r.g.mu.Lock()
	for i := 0; i < maxQueue; i++ {
		r.g.queue = append(r.g.queue, &waiter{arrived: time.Now(), ready: make(chan struct{}), expired: true})
	}
	r.g.mu.Unlock()
	if a := get(t, r.send("POST", "/c", "x")); a.code != http.StatusServiceUnavailable || a.waits > time.Second {
		t.Fatalf("write past the cap: %d after %v, want 503 at once", a.code, a.waits)
	}
}

// TestHoldSeenAtOnce: a write that arrives as the hold begins is held,
// though the poll has not seen the flags yet (nginx has).
func TestHoldSeenAtOnce(t *testing.T) {
	r := newRigPoll(t, time.Hour) // only the request's own read can see the flags
	r.flag(flagHold, "5000")
	r.flag(flagReadonly, "")
	ch := r.send("POST", "/c", "raced")
	r.waitQueued(1)
	if s := r.seenList(); len(s) != 0 {
		t.Fatalf("the app got %v while the site was held", s)
	}
	r.unflag(flagReadonly, flagHold)
	r.g.refresh() // the unfreeze, as the poll would see it
	if a := get(t, ch); a.code != http.StatusCreated {
		t.Fatalf("released write: %d, want 201", a.code)
	}
}
