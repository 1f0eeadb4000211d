package localcloud

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// fuzzRoutes are the GET endpoints whose query the fuzzer varies; %d is a
// droplet id, %s a reserved IP, both of the seeded server.
var fuzzRoutes = []string{
	"/v2/droplets", "/v2/droplets/%d", "/v2/droplets/%d/actions", "/v2/actions", "/v2/regions",
	"/v2/sizes", "/v2/account", "/v2/account/keys", "/v2/tags", "/v2/tags/fleet:a", "/v2/reserved_ips",
	"/v2/reserved_ips/%s/actions", "/v2/nope", "/_fleet/stats", "/_fleet/faults",
}

// FuzzAPIQuery sends GET <route>?<query> with Authorization: <auth> ("" =
// the right bearer token) through the real handler. Whatever the query,
// the answer is a 2xx or 4xx with a JSON body, DO's error shape on 4xx.
func FuzzAPIQuery(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzAPIQuery.
	f.Add(uint8(0), "page=2&per_page=1", "")
	const token = "dop_v1_fuzz"
	srv, err := NewServer(Options{Token: token, RateLimit: 1 << 40, StatsSize: 64})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(srv.Close)
	h := srv.Handler()
	call := func(method, uri, auth, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, uri, nil)
		if body != "" {
			req = httptest.NewRequest(method, uri, strings.NewReader(body))
		}
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	bearer := "Bearer " + token
	var dropletID int
	for i := range 3 {
		rec := call("POST", "/v2/droplets", bearer, fmt.Sprintf(`{"name":"web-%d","size":"s-1vcpu-1gb","image":"debian-13-x64","tags":["fleet:a"]}`, i))
		var out struct{ Droplet struct{ ID int } }
		if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			f.Fatalf("seeding: %d %s", rec.Code, rec.Body)
		}
		dropletID = out.Droplet.ID
	}
	rec := call("POST", "/v2/reserved_ips", bearer, `{"region":"nyc3"}`)
	var rip struct {
		ReservedIP struct{ IP string } `json:"reserved_ip"`
	}
	if rec.Code != 202 || json.Unmarshal(rec.Body.Bytes(), &rip) != nil {
		f.Fatalf("seeding: %d %s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, route uint8, query, auth string) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		switch {
		case strings.Contains(path, "%d"):
			path = fmt.Sprintf(path, dropletID)
		case strings.Contains(path, "%s"):
			path = fmt.Sprintf(path, rip.ReservedIP.IP)
		}
		if auth == "" {
			auth = bearer
		}
		// Built by hand: httptest.NewRequest panics on what a raw client
		// can still send.
		req := &http.Request{
			Method: "GET", URL: &url.URL{Path: path, RawQuery: query}, Host: "localcloud.test",
			RequestURI: path + "?" + query, Header: http.Header{"Authorization": {auth}},
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody,
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code >= 500 || (rec.Code >= 300 && rec.Code < 400) {
			t.Fatalf("GET %s?%q: status %d: %s", path, query, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("GET %s?%q: %d, not JSON: %q", path, query, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var e struct{ ID, Message string }
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.ID == "" || e.Message == "" {
				t.Fatalf("GET %s?%q: %d without DO's error shape: %s", path, query, rec.Code, rec.Body)
			}
		}
	})
}
