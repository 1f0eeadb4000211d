package contract

import (
	"context"
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
	v, err := LoadDefault()
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

// tinyDoc is an OpenAPI document with one operation, GET /v2/only.
const tinyDoc = `openapi: 3.0.0
info: {title: tiny, version: "1"}
paths:
  /v2/only:
    get:
      responses:
        "200": {description: ok}
`

// LoadDefault reads $FLEET_OPENAPI when set and otherwise the copy embedded
// in the repository: no shared/ folder around the tree is looked at.
func TestLoadDefault(t *testing.T) {
	// A decoy where the old lookup searched: shared/... in a parent directory.
	root := t.TempDir()
	decoy := filepath.Join(root, "shared", "digitalocean-openapi", "DigitalOcean-public.v2.bundled.yaml")
	if err := os.MkdirAll(filepath.Dir(decoy), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(decoy, []byte("not: [an openapi document"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd := filepath.Join(root, "clone", "internal", "pkg")
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	tiny := filepath.Join(root, "tiny.yaml")
	if err := os.WriteFile(tiny, []byte(tinyDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     string // "" = unset
		wantErr string
		known   string // a path the loaded document routes
		unknown string // a path it does not
	}{
		{name: "embedded, decoy in a parent shared/", known: "/v2/account", unknown: "/v2/only"},
		{name: "override", env: tiny, known: "/v2/only", unknown: "/v2/account"},
		{name: "override missing", env: filepath.Join(root, "missing.yaml"), wantErr: EnvPath + "="},
		{name: "override is not a document", env: decoy, wantErr: EnvPath + "="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env == "" {
				t.Setenv(EnvPath, "")
				os.Unsetenv(EnvPath)
			} else {
				t.Setenv(EnvPath, tt.env)
			}
			t.Chdir(wd)
			v, err := LoadDefault()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for path, want := range map[string]bool{tt.known: true, tt.unknown: false} {
				v.Reset()
				v.checkRequest(context.Background(), httptest.NewRequest("GET", path, nil), nil)
				if got := len(v.Violations()) == 0; got != want {
					t.Errorf("GET %s routed = %v, want %v (violations %q)", path, got, want, v.Violations())
				}
			}
		})
	}
}
