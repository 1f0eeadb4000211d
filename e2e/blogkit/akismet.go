//go:build e2e

package blogkit

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Akismet's fixed test values (https://akismet.com/developers/).
const (
	// AkismetSpamAuthor as comment_author is always spam.
	AkismetSpamAuthor = "akismet-guaranteed-spam"
	// AkismetHamRole as user_role is always ham.
	AkismetHamRole = "administrator"
	// AkismetTestKey is the key the fake accepts unless Key is changed.
	AkismetTestKey = "fleet-e2e-akismet-key"
	// AkismetSpamMarker in comment_content makes a comment spam unless
	// SpamMarker is changed.
	AkismetSpamMarker = "[e2e-spam]"
)

// Akismet is a fake of Akismet's REST API (1.1), enough for the blog's
// anti-spam worker:
//
//   - POST /1.1/verify-key (form: api_key or key, blog): "valid", or
//     "invalid" with an X-akismet-debug-help header;
//   - POST /1.1/comment-check (form: api_key or key, blog, user_ip, and
//     the comment_* fields): "true" (spam) or "false" (ham); "invalid" and
//     X-akismet-debug-help for a bad key; for a missing blog or user_ip
//     (required by Akismet) the body "Missing required field: <name>." and
//     X-akismet-debug-help, as Akismet answers. The verdict: comment_author
//     akismet-guaranteed-spam is spam; user_role administrator is ham;
//     otherwise spam exactly when comment_content contains SpamMarker.
//     A spam answer carries no X-akismet-pro-tip.
//   - POST /1.1/submit-spam and /1.1/submit-ham: "Thanks for making the
//     web a better place." (a bad key: "invalid").
//
// Every answer has X-akismet-guid. GET and other methods get 405. Every
// request to an /1.1/ path is recorded (Calls).
type Akismet struct {
	URL string // http://<addr>: the blog's AKISMET_URL

	mu         sync.Mutex
	key        string
	spamMarker string
	calls      []Call
	srv        *http.Server
	ln         net.Listener
}

// Call is one request the fake Akismet received.
type Call struct {
	Time   time.Time
	Method string
	Path   string     // e.g. /1.1/comment-check
	Form   url.Values // the POST form (and query)
	Status int
	Result string // the body answered: "true", "false", "valid", "invalid", ...
}

// Key is the api_key/key the call carried.
func (c Call) Key() string {
	if k := c.Form.Get("api_key"); k != "" {
		return k
	}
	return c.Form.Get("key")
}

// StartAkismet starts the fake on listenAddr (host:port, port 0 for a
// free one; bind it to the Docker bridge gateway so a droplet's worker
// reaches it), accepting AkismetTestKey and with AkismetSpamMarker; it
// stops when t's test ends.
func StartAkismet(t testing.TB, listenAddr string) *Akismet {
	t.Helper()
	a, err := NewAkismet(listenAddr)
	if err != nil {
		t.Fatalf("akismet: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// NewAkismet is StartAkismet for callers without a testing.TB (TestMain);
// they must Close it.
func NewAkismet(listenAddr string) (*Akismet, error) {
	host, _, err := net.SplitHostPort(listenAddr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("akismet: listen on a specific IP address, not %q", host)
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	a := &Akismet{URL: "http://" + ln.Addr().String(), key: AkismetTestKey, spamMarker: AkismetSpamMarker, ln: ln}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

// Close stops the server.
func (a *Akismet) Close() { a.srv.Close() }

// SetKey changes the key the fake accepts.
func (a *Akismet) SetKey(k string) { a.mu.Lock(); a.key = k; a.mu.Unlock() }

// Key is the key the fake accepts.
func (a *Akismet) Key() string { a.mu.Lock(); defer a.mu.Unlock(); return a.key }

// SetSpamMarker changes the content marker that makes a comment spam
// ("" : no content is spam by content).
func (a *Akismet) SetSpamMarker(m string) { a.mu.Lock(); a.spamMarker = m; a.mu.Unlock() }

// Calls are the requests received so far, oldest first.
func (a *Akismet) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Call(nil), a.calls...)
}

// CommentChecks are the comment-check calls received so far.
func (a *Akismet) CommentChecks() []Call {
	var cs []Call
	for _, c := range a.Calls() {
		if c.Path == "/1.1/comment-check" {
			cs = append(cs, c)
		}
	}
	return cs
}

// Reset forgets the recorded calls.
func (a *Akismet) Reset() { a.mu.Lock(); a.calls = nil; a.mu.Unlock() }

const akismetDebugBadKey = "We were unable to authenticate your API key. Check that the key is correct and that it is being sent as the api_key parameter."

func (a *Akismet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	guid := make([]byte, 16)
	rand.Read(guid)
	w.Header().Set("X-akismet-guid", hex.EncodeToString(guid))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !strings.HasPrefix(r.URL.Path, "/1.1/") {
		http.NotFound(w, r)
		return
	}
	_ = r.ParseForm()
	a.mu.Lock()
	key, marker := a.key, a.spamMarker
	a.mu.Unlock()
	status, debug, result := http.StatusOK, "", ""
	call := Call{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Form: r.Form}
	keyOK := call.Key() != "" && call.Key() == key
	switch {
	case r.Method != http.MethodPost:
		status, result = http.StatusMethodNotAllowed, "Method Not Allowed"
	case r.URL.Path == "/1.1/verify-key":
		if keyOK {
			result = "valid"
		} else {
			result, debug = "invalid", akismetDebugBadKey
		}
	case r.URL.Path == "/1.1/comment-check":
		switch {
		case !keyOK:
			result, debug = "invalid", akismetDebugBadKey
		case r.Form.Get("blog") == "":
			result, debug = "Missing required field: blog.", "Empty \"blog\" value"
		case r.Form.Get("user_ip") == "":
			result, debug = "Missing required field: user_ip.", "Empty \"user_ip\" value"
		case r.Form.Get("comment_author") == AkismetSpamAuthor:
			result = "true"
		case r.Form.Get("user_role") == AkismetHamRole:
			result = "false"
		case marker != "" && strings.Contains(r.Form.Get("comment_content"), marker):
			result = "true"
		default:
			result = "false"
		}
	case r.URL.Path == "/1.1/submit-spam", r.URL.Path == "/1.1/submit-ham":
		if keyOK {
			result = "Thanks for making the web a better place."
		} else {
			result, debug = "invalid", akismetDebugBadKey
		}
	default:
		status, result = http.StatusNotFound, "Not Found"
	}
	call.Status, call.Result = status, result
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.mu.Unlock()
	if debug != "" {
		w.Header().Set("X-akismet-debug-help", debug)
	}
	w.WriteHeader(status)
	fmt.Fprint(w, result)
}
