package contract

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadT(t *testing.T) *Validator {
	t.Helper()
	p, err := DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const account = `{"account":{"droplet_limit":25,"floating_ip_limit":3,"email":"a@b.c","uuid":"u","email_verified":true,"status":"active","status_message":""}}`

func rateHeaders(w http.ResponseWriter) {
	w.Header().Set("ratelimit-limit", "5000")
	w.Header().Set("ratelimit-remaining", "4999")
	w.Header().Set("ratelimit-reset", "1700000000")
}

// canned answers every request with the given status, headers and body.
func canned(status int, body string, headers bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headers {
			rateHeaders(w)
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

func TestMiddleware(t *testing.T) {
	v := loadT(t)
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		handler http.Handler
		want    string // substring of the single violation; "" = clean
	}{
		{"valid account", "GET", "/v2/account", "", canned(200, account, true), ""},
		{"missing required field", "GET", "/v2/account",
			"", canned(200, strings.Replace(account, `"uuid":"u",`, "", 1), true), `property "uuid" is missing`},
		{"wrong type", "GET", "/v2/account",
			"", canned(200, strings.Replace(account, `"droplet_limit":25`, `"droplet_limit":"25"`, 1), true), "droplet_limit"},
		{"missing rate limit headers", "GET", "/v2/account", "", canned(200, account, false), "missing response header ratelimit-limit"},
		{"error body without message", "GET", "/v2/droplets/7", "", canned(404, `{"id":"not_found"}`, true), `property "message" is missing`},
		{"valid error body", "GET", "/v2/droplets/7", "", canned(404, `{"id":"not_found","message":"nope"}`, true), ""},
		{"bad request body", "POST", "/v2/tags", `{"name":"bad tag!"}`,
			canned(201, `{"tag":{"name":"x"}}`, true), "request:"},
		{"bad path parameter", "GET", "/v2/droplets/abc", "", canned(404, `{"id":"not_found","message":"nope"}`, true), "droplet_id"},
		{"unknown route", "GET", "/v2/nowhere", "", canned(404, `{"id":"not_found","message":"nope"}`, true), "no such operation"},
		{"bad ipv4 in response", "GET", "/v2/reserved_ips/127.0.0.200", "",
			canned(200, `{"reserved_ip":{"ip":"not-an-ip","locked":false}}`, true), "ipv4"},
		{"admin path skipped", "GET", "/_fleet/stats", "", canned(200, `{"x":1}`, false), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.Reset()
			var gotBody string
			inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotBody = string(b)
				tt.handler.ServeHTTP(w, r)
			})
			srv := httptest.NewServer(v.Middleware(inner))
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if gotBody != tt.body {
				t.Errorf("handler saw body %q, want %q", gotBody, tt.body)
			}
			// The client sees exactly what the handler wrote.
			rr := httptest.NewRecorder()
			tt.handler.ServeHTTP(rr, httptest.NewRequest(tt.method, tt.path, nil))
			if resp.StatusCode != rr.Code || string(b) != rr.Body.String() {
				t.Errorf("client saw %d %q, handler wrote %d %q", resp.StatusCode, b, rr.Code, rr.Body.String())
			}
			got := v.Violations()
			t.Logf("violations: %q", got)
			if tt.want == "" {
				if len(got) != 0 {
					t.Errorf("want no violations, got %q", got)
				}
				return
			}
			if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tt.want) {
				t.Errorf("want a violation containing %q, got %q", tt.want, got)
			}
		})
	}
}

func TestTransport(t *testing.T) {
	v := loadT(t)
	srv := httptest.NewServer(canned(201, `{"tag":{"name":"ok"}}`, true))
	defer srv.Close()
	client := &http.Client{Transport: v.Transport(nil)}
	tests := []struct {
		body string
		want string
	}{
		{`{"name":"good-tag"}`, ""},
		{`{"name":"bad tag!"}`, "POST /v2/tags request:"},
	}
	for _, tt := range tests {
		v.Reset()
		resp, err := client.Post(srv.URL+"/v2/tags", "application/json", strings.NewReader(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := strings.Join(v.Violations(), "\n")
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("body %s: violations %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	real, err := DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPath, real)
	if p, err := DefaultPath(); err != nil || p != real {
		t.Errorf("with %s: %q, %v", EnvPath, p, err)
	}
	t.Setenv(EnvPath, filepath.Join(t.TempDir(), "missing.yaml"))
	if _, err := DefaultPath(); err == nil {
		t.Error("missing $FLEET_OPENAPI file: want an error")
	}
	t.Setenv(EnvPath, "")
	t.Chdir(t.TempDir())
	_, err = DefaultPath()
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("outside the tree: want a not-found error, got %v", err)
	}
	os.Unsetenv(EnvPath)
}
