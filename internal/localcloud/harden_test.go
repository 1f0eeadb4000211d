package localcloud

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests talk to the handler directly, without the contract
// validator: hostile requests are contract violations by design.

// direct is a Server with some content, reached through its handler.
type direct struct {
	t   testing.TB
	srv *Server
}

func newDirect(t testing.TB, opts Options) *direct {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &direct{t: t, srv: srv}
}

// do sends a request with header Authorization: auth ("" = none) and
// returns the status and body.
func (d *direct) do(method, uri, auth, body string) (int, string) {
	d.t.Helper()
	req := &http.Request{
		Method: method, URL: mustURL(d.t, uri), RequestURI: uri, Host: "localcloud.test",
		Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, ContentLength: int64(len(body)),
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	d.srv.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func mustURL(t testing.TB, uri string) *url.URL {
	t.Helper()
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (d *direct) get(uri string) (int, string) {
	return d.do("GET", uri, "Bearer "+testToken, "")
}

// errorShape checks body is DO's error JSON with the given id.
func errorShape(t testing.TB, body, wantID string) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, body)
	}
	id, _ := e["id"].(string)
	msg, _ := e["message"].(string)
	if id != wantID || msg == "" {
		t.Errorf("error body %s: want id %q and a message", body, wantID)
	}
}

func TestPaginationBounds(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{})
	for i := range 3 {
		if st, body := d.do("POST", "/v2/droplets", "Bearer "+testToken,
			fmt.Sprintf(`{"name":"p-%d","size":"s-1vcpu-1gb","image":"debian-13-x64","tags":["t"]}`, i)); st != 202 {
			t.Fatalf("create: %d %s", st, body)
		}
	}
	tests := []struct {
		query  string
		status int
		items  int // for 200
		errID  string
	}{
		{"", 200, 3, ""},
		{"page=", 200, 3, ""},
		{"page=1&per_page=2", 200, 2, ""},
		{"page=2&per_page=2", 200, 1, ""},
		{"page=3&per_page=2", 200, 0, ""},
		{"page=9223372036854775807", 200, 0, ""},
		{"page=9223372036854775807&per_page=200", 200, 0, ""},
		{"page=99999999999999999999999", 200, 0, ""},
		{"per_page=201", 200, 3, ""},                     // DO caps at 200
		{"per_page=99999999999999999999999", 200, 3, ""}, // likewise
		{"per_page=200", 200, 3, ""},
		{"per_page=1&page=3", 200, 1, ""},
		{"page=0", 400, 0, "bad_request"},
		{"page=-1", 400, 0, "bad_request"},
		{"page=-9223372036854775808", 400, 0, "bad_request"},
		{"page=abc", 400, 0, "bad_request"},
		{"page=1.5", 400, 0, "bad_request"},
		{"page=%20", 400, 0, "bad_request"},
		{"per_page=0", 400, 0, "bad_request"},
		{"per_page=-5", 400, 0, "bad_request"},
		{"per_page=x", 400, 0, "bad_request"},
		{"per_page=2e1", 400, 0, "bad_request"},
	}
	paths := []string{"/v2/droplets", "/v2/droplets?tag_name=t", "/v2/actions", "/v2/regions", "/v2/sizes", "/v2/account/keys", "/v2/tags", "/v2/reserved_ips"}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			for _, p := range paths {
				sep := "?"
				if strings.Contains(p, "?") {
					sep = "&"
				}
				st, body := d.get(p + sep + tt.query)
				if st != tt.status {
					t.Fatalf("%s: status %d, want %d: %.300s", p, st, tt.status, body)
				}
				if st != 200 {
					errorShape(t, body, tt.errID)
					continue
				}
				if !strings.HasPrefix(p, "/v2/droplets") {
					continue
				}
				var lb struct {
					Droplets []json.RawMessage
					Meta     struct{ Total int }
				}
				if err := json.Unmarshal([]byte(body), &lb); err != nil {
					t.Fatal(err)
				}
				if len(lb.Droplets) != tt.items || lb.Meta.Total != 3 {
					t.Errorf("%s: %d droplets of %d, want %d of 3", p, len(lb.Droplets), lb.Meta.Total, tt.items)
				}
			}
		})
	}
}

func TestBearerScheme(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{})
	tests := []struct {
		auth   string
		status int
	}{
		{"Bearer " + testToken, 200},
		{"bearer " + testToken, 200}, // RFC 7235: the scheme is case-insensitive
		{"BEARER " + testToken, 200},
		{"Bearer   " + testToken, 200}, // 1*SP
		{testToken, 401},
		{"Basic " + testToken, 401},
		{"Bearer", 401},
		{"Bearer ", 401},
		{"Bearer" + testToken, 401},
		{"Bearer " + testToken + " x", 401},
		{"Bearer " + testToken + "x", 401},
		{"Bearer " + testToken[:len(testToken)-1], 401},
		{"Token " + testToken, 401},
		{"", 401},
	}
	for _, tt := range tests {
		for _, p := range []string{"/v2/account", "/_fleet/stats"} {
			st, body := d.do("GET", p, tt.auth, "")
			if st != tt.status {
				t.Errorf("%s with %q: %d, want %d", p, tt.auth, st, tt.status)
			}
			if st == 401 {
				errorShape(t, body, "unauthorized")
			}
		}
	}
}

func TestStatsBounded(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{StatsSize: 50})
	long := "/v2/account?x=" + strings.Repeat("a", 4000)
	for range 30 {
		d.do("GET", "/v2/account", "", "")           // unauthenticated
		d.do("GET", "/v2/account", "Basic nope", "") // likewise
	}
	for i := range 120 {
		if i%2 == 0 {
			d.get(long)
		} else {
			d.get(fmt.Sprintf("/v2/droplets?page=%d", i))
		}
	}
	st := d.srv.Stats()
	if len(st.Requests) != 50 {
		t.Errorf("%d requests kept, want the ring's 50", len(st.Requests))
	}
	if st.Unauthenticated != 60 || st.Dropped != 70 {
		t.Errorf("unauthenticated %d, dropped %d; want 60, 70", st.Unauthenticated, st.Dropped)
	}
	for _, r := range st.Requests {
		if len(r.Path) > maxStatsPath {
			t.Fatalf("path of %d bytes kept", len(r.Path))
		}
		if r.Status == 401 {
			t.Errorf("unauthenticated request kept: %+v", r)
		}
	}
	// Oldest first: the last one kept is the last one sent.
	if last := st.Requests[len(st.Requests)-1]; last.Path != "/v2/droplets?page=119" {
		t.Errorf("last %q", last.Path)
	}
	if first := st.Requests[0]; first.Path != long[:maxStatsPath] || !first.Truncated {
		t.Errorf("first %q (truncated %v)", first.Path, first.Truncated)
	}
	if n := st.Count("GET", "/v2/droplets"); n != 25 {
		t.Errorf("Count = %d, want 25", n)
	}
}

// heapAfter returns the live heap after f, in bytes.
func heapAfter(f func()) uint64 {
	f()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestHugeURIsDoNotGrowMemory: 400 requests of 500 KB URIs, half without
// a token, must not leave the server holding them.
func TestHugeURIsDoNotGrowMemory(t *testing.T) {
	// Not parallel: it measures the heap.
	d := newDirect(t, Options{})
	q := strings.Repeat("a", 500<<10)
	uri := "/v2/droplets?x=" + q
	u := mustURL(t, uri)
	codes := map[int]int{}
	send := func(auth string) {
		req := &http.Request{Method: "GET", URL: u, RequestURI: uri, Header: http.Header{}, Host: "localcloud.test"}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		d.srv.Handler().ServeHTTP(rec, req)
		codes[rec.Code]++
	}
	before := heapAfter(func() {})
	after := heapAfter(func() {
		for range 200 {
			send("")
			send("Bearer " + testToken)
		}
	})
	grew := int64(after) - int64(before)
	t.Logf("heap before %d KB, after 400 requests of 500 KB URIs %d KB (%+d KB)", before>>10, after>>10, grew>>10)
	if grew > 8<<20 {
		t.Errorf("the heap grew by %d MB", grew>>20)
	}
	if codes[401] != 200 || codes[http.StatusRequestURITooLong] != 200 {
		t.Errorf("answers %v, want 200 × 401 and 200 × 414", codes)
	}
	if st := d.srv.Stats(); st.Unauthenticated != 200 || len(st.Requests) != 200 {
		t.Errorf("stats: %d unauthenticated, %d kept", st.Unauthenticated, len(st.Requests))
	}
}

func TestURITooLong(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{})
	st, body := d.get("/v2/droplets?tag_name=" + strings.Repeat("a", maxURI))
	if st != http.StatusRequestURITooLong {
		t.Fatalf("status %d", st)
	}
	errorShape(t, body, "request_uri_too_long")
	if st, _ := d.get("/v2/droplets?tag_name=" + strings.Repeat("a", 255)); st != 200 {
		t.Errorf("a 255-byte tag: %d", st)
	}
}

func TestBodyBounded(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{})
	big := `{"name":"` + strings.Repeat("a", maxBody) + `"}`
	for _, p := range []string{"POST /v2/droplets", "POST /v2/account/keys", "POST /v2/tags", "POST /_fleet/faults"} {
		method, path, _ := strings.Cut(p, " ")
		st, body := d.do(method, path, "Bearer "+testToken, big)
		if st != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d %.200s", p, st, body)
			continue
		}
		errorShape(t, body, "request_entity_too_large")
	}
}

// TestHTTPServerLimits: NewHTTPServer bounds headers and slow clients.
func TestHTTPServerLimits(t *testing.T) {
	t.Parallel()
	d := newDirect(t, Options{})
	hs := NewHTTPServer(d.srv.Handler())
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 || hs.MaxHeaderBytes > 1<<20 {
		t.Fatalf("limits %v %v %v %d", hs.ReadHeaderTimeout, hs.ReadTimeout, hs.IdleTimeout, hs.MaxHeaderBytes)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String()

	req, _ := http.NewRequest("GET", url+"/v2/account", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("X-Big", strings.Repeat("b", 256<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("256 KB header: %d", resp.StatusCode)
	}

	// A client that never finishes its headers is cut off (after a
	// shortened ReadHeaderTimeout).
	hs2 := NewHTTPServer(d.srv.Handler())
	hs2.ReadHeaderTimeout = 200 * time.Millisecond
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs2.Serve(ln2)
	t.Cleanup(func() { hs2.Close() })
	c, err := net.Dial("tcp", ln2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v2/account HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.Copy(io.Discard, c)
	if el := time.Since(start); err != nil || el > 3*time.Second {
		t.Errorf("slow header client held for %v (%v)", el, err)
	}
}

// TestSSHKeyLock: the SSH key API as a compare-and-swap lock. Exactly one
// of many concurrent POSTs of one public key wins; the others get DO's 422.
// The holder renames it (PUT) and releases it (DELETE), by id or by
// fingerprint.
func TestSSHKeyLock(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	line := strings.TrimSpace(e.addKey("probe").PublicKey)
	keys, _, _ := e.do.Keys.List(e.ctx, nil)
	e.do.Keys.DeleteByID(e.ctx, keys[0].ID)

	const n = 16
	var wg sync.WaitGroup
	statuses := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			st, _, body := e.raw("POST", "/v2/account/keys", testToken, fmt.Sprintf(`{"name":"lock-%d","public_key":%q}`, i, line))
			statuses <- fmt.Sprintf("%d %s", st, body)
		})
	}
	wg.Wait()
	close(statuses)
	won, lost := 0, 0
	var id int
	var fp string
	for s := range statuses {
		switch {
		case strings.HasPrefix(s, "201 "):
			won++
			var k struct {
				SSHKey keyJSON `json:"ssh_key"`
			}
			json.Unmarshal([]byte(s[4:]), &k)
			id, fp = k.SSHKey.ID, k.SSHKey.Fingerprint
		case strings.HasPrefix(s, "422 ") && strings.Contains(s, `"SSH Key is already in use on your account"`):
			lost++
		default:
			t.Errorf("unexpected answer %s", s)
		}
	}
	if won != 1 || lost != n-1 {
		t.Fatalf("%d won, %d lost", won, lost)
	}

	for _, ref := range []string{fmt.Sprint(id), fp} {
		st, _, body := e.raw("PUT", "/v2/account/keys/"+ref, testToken, `{"name":"held-by-`+ref+`"}`)
		if st != 200 || !strings.Contains(body, `"name":"held-by-`+ref+`"`) {
			t.Errorf("rename by %s: %d %s", ref, st, body)
		}
		st, _, body = e.raw("GET", "/v2/account/keys/"+ref, testToken, "")
		if st != 200 || !strings.Contains(body, `"name":"held-by-`+ref+`"`) {
			t.Errorf("get by %s: %d %s", ref, st, body)
		}
	}
	// name is optional on PUT (DO's schema): {} leaves it as it is.
	if st, _, body := e.raw("PUT", "/v2/account/keys/"+fp, testToken, `{}`); st != 200 || !strings.Contains(body, `"name":"held-by-`+fp+`"`) {
		t.Errorf("empty PUT: %d %s", st, body)
	}
	if st, _, body := e.raw("PUT", "/v2/account/keys/"+fp, testToken, `{"name":"  "}`); st != 422 || !strings.Contains(body, "blank") {
		t.Errorf("blank name: %d %s", st, body)
	}
	tests := []struct{ method, ref, body string }{
		{"PUT", "41999999", `{"name":"x"}`},
		{"PUT", "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", `{"name":"x"}`},
		{"GET", "41999999", ""},
		{"DELETE", "0", ""},
	}
	for _, tt := range tests {
		if st, _, body := e.raw(tt.method, "/v2/account/keys/"+tt.ref, testToken, tt.body); st != 404 || !strings.Contains(body, `"id":"not_found"`) {
			t.Errorf("%s %s: %d %s", tt.method, tt.ref, st, body)
		}
	}
	// Release by fingerprint; a second release is a 404; then the key can
	// be taken again.
	if st, _, _ := e.raw("DELETE", "/v2/account/keys/"+fp, testToken, ""); st != 204 {
		t.Fatalf("release: %d", st)
	}
	if st, _, _ := e.raw("DELETE", "/v2/account/keys/"+fmt.Sprint(id), testToken, ""); st != 404 {
		t.Errorf("second release: %d", st)
	}
	if st, _, body := e.raw("POST", "/v2/account/keys", testToken, fmt.Sprintf(`{"name":"again","public_key":%q}`, line)); st != 201 {
		t.Errorf("retake: %d %s", st, body)
	}
}
