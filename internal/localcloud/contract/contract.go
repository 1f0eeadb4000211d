// Package contract checks HTTP traffic against DigitalOcean's official
// OpenAPI description (DigitalOcean-public.v2.bundled.yaml).
//
// A Validator wraps a server (Middleware) or a client (Transport) and records
// every request and response that breaks the contract. It never changes what
// either side sees: bodies are buffered and replayed, defaults from the
// schema are not injected, and violations are only recorded, never answered.
//
// What is checked, per exchange under /v2/:
//   - the route exists in the document (method and path; any host);
//   - the request: path, query and header parameters, and the JSON body
//     against its schema (authentication is the server's business, so the
//     bearer security requirement is accepted as is);
//   - the response: the status is declared (or covered by "default"), every
//     header the response object declares is present (DigitalOcean declares
//     ratelimit-limit, ratelimit-remaining and ratelimit-reset everywhere;
//     the document marks them optional, this package requires them), header
//     values match their schemas, and the JSON body matches its schema,
//     including the formats ipv4, ipv6, uuid and uri.
//
// Paths outside /v2/ (fleet's own /_fleet/ admin endpoints) are not checked.
package contract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	doopenapi "github.com/fleetdeploy/fleet/third_party/digitalocean-openapi"
)

// EnvPath names the environment variable that, when set, names an OpenAPI
// file to use instead of the copy embedded from
// third_party/digitalocean-openapi.
const EnvPath = "FLEET_OPENAPI"

// loaded is one parsed document and its router, shared by every Validator
// loaded from the same source.
type loaded struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*loaded{}
)

// embeddedKey is the cache key of the embedded document (paths are absolute).
const embeddedKey = "embedded:" + doopenapi.Name

func load(path string) (*loaded, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("contract: %w", err)
	}
	return loadOnce(abs, func(loader *openapi3.Loader) (*openapi3.T, error) {
		return loader.LoadFromFile(abs)
	})
}

func loadEmbedded() (*loaded, error) {
	return loadOnce(embeddedKey, func(loader *openapi3.Loader) (*openapi3.T, error) {
		b, err := doopenapi.YAML()
		if err != nil {
			return nil, err
		}
		return loader.LoadFromData(b)
	})
}

// loadOnce parses the document named key with read, once per process.
func loadOnce(key string, read func(*openapi3.Loader) (*openapi3.T, error)) (*loaded, error) {
	cacheMu.Lock()
	l := cache[key]
	if l == nil {
		l = &loaded{}
		cache[key] = l
	}
	cacheMu.Unlock()
	l.once.Do(func() {
		doc, err := read(openapi3.NewLoader())
		if err != nil {
			l.err = fmt.Errorf("contract: load %s: %w", key, err)
			return
		}
		// Route on the path alone: DigitalOcean's servers list names
		// api.digitalocean.com, and the servers under test live elsewhere.
		// (doc.Validate is deliberately not called: DigitalOcean's own
		// examples do not pass it.)
		doc.Servers = nil
		for _, item := range doc.Paths.Map() {
			item.Servers = nil
			for _, op := range item.Operations() {
				op.Servers = nil
			}
		}
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			l.err = fmt.Errorf("contract: route %s: %w", key, err)
			return
		}
		l.doc, l.router = doc, router
	})
	if l.err != nil {
		return nil, l.err
	}
	return l, nil
}

// Validator checks exchanges against the document and records violations.
// It is safe for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	opts   openapi3filter.Options

	mu         sync.Mutex
	violations []string
}

// Load returns a Validator for the OpenAPI document at path. The document is
// parsed once per path and process; each Validator has its own violations.
func Load(path string) (*Validator, error) {
	l, err := load(path)
	if err != nil {
		return nil, err
	}
	return newValidator(l), nil
}

// LoadDefault returns a Validator for the file $FLEET_OPENAPI names if it is
// set, else for the copy embedded from third_party/digitalocean-openapi.
func LoadDefault() (*Validator, error) {
	if p := os.Getenv(EnvPath); p != "" {
		v, err := Load(p)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", EnvPath, p, err)
		}
		return v, nil
	}
	l, err := loadEmbedded()
	if err != nil {
		return nil, err
	}
	return newValidator(l), nil
}

func newValidator(l *loaded) *Validator {
	v := &Validator{doc: l.doc, router: l.router}
	v.opts = openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		SkipSettingDefaults:   true, // never rewrite the request the server sees
		IncludeResponseStatus: true,
		MultiError:            false,
		SchemaValidationOptions: []openapi3.SchemaValidationOption{
			openapi3.DisableSchemaErrorDetails(), // keep messages short: reason and JSON pointer
			openapi3.WithStringFormatValidator("ipv4", openapi3.NewIPValidator(true)),
			openapi3.WithStringFormatValidator("ipv6", openapi3.NewIPValidator(false)),
			openapi3.WithStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)),
			openapi3.WithStringFormatValidator("uri", openapi3.NewCallbackValidator(validateURI)),
		},
	}
	return v
}

func validateURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("not an absolute URI: %q", s)
	}
	return nil
}

// Violations returns the violations recorded so far, oldest first. Each is
// "METHOD /path?query -> STATUS: reason" for responses and
// "METHOD /path?query request: reason" for requests.
func (v *Validator) Violations() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.violations...)
}

// Reset forgets the recorded violations.
func (v *Validator) Reset() {
	v.mu.Lock()
	v.violations = nil
	v.mu.Unlock()
}

func (v *Validator) record(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	v.mu.Lock()
	v.violations = append(v.violations, msg)
	v.mu.Unlock()
}

// checked reports whether a request path is under the contract.
func checked(path string) bool { return strings.HasPrefix(path, "/v2/") }

func target(r *http.Request) string {
	if r.URL.RawQuery != "" {
		return r.URL.Path + "?" + r.URL.RawQuery
	}
	return r.URL.Path
}

// checkRequest validates r, whose body is body (r.Body is not read). It
// returns the matched route input for response validation, or nil if the
// route is unknown.
func (v *Validator) checkRequest(ctx context.Context, r *http.Request, body []byte) *openapi3filter.RequestValidationInput {
	rc := r.Clone(ctx)
	rc.Body = io.NopCloser(bytes.NewReader(body))
	rc.ContentLength = int64(len(body))
	route, params, err := v.router.FindRoute(rc)
	if err != nil {
		v.record("%s %s request: no such operation in the contract: %v", r.Method, target(r), err)
		return nil
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    rc,
		PathParams: params,
		Route:      route,
		Options:    &v.opts,
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
		v.record("%s %s request: %s", r.Method, target(r), describe(err))
	}
	return in
}

func (v *Validator) checkResponse(ctx context.Context, in *openapi3filter.RequestValidationInput, status int, header http.Header, body []byte) {
	r := in.Request
	fail := func(reason string) {
		v.record("%s %s -> %d: %s", r.Method, target(r), status, reason)
	}
	if resp := responseFor(in.Route.Operation, status); resp != nil {
		names := make([]string, 0, len(resp.Headers))
		for name := range resp.Headers {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if header.Get(name) == "" {
				fail("missing response header " + name)
			}
		}
	}
	err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &v.opts,
	})
	if err != nil {
		fail(describe(err))
	}
}

func responseFor(op *openapi3.Operation, status int) *openapi3.Response {
	if op == nil || op.Responses == nil {
		return nil
	}
	ref := op.Responses.Status(status)
	if ref == nil {
		ref = op.Responses.Default()
	}
	if ref == nil {
		return nil
	}
	return ref.Value
}

var spaces = regexp.MustCompile(`\s+`)

// describe flattens a kin-openapi error into one line.
func describe(err error) string {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		parts := make([]string, len(me))
		for i, e := range me {
			parts[i] = describe(e)
		}
		return strings.Join(parts, "; ")
	}
	return strings.TrimSpace(spaces.ReplaceAllString(err.Error(), " "))
}

// Middleware validates every request to and response from next under /v2/
// and records violations. The client sees exactly what next produces.
func (v *Validator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !checked(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		var body []byte
		if r.Body != nil {
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				v.record("%s %s request: reading body: %v", r.Method, target(r), err)
			}
			body = b
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		in := v.checkRequest(r.Context(), r, body)

		rec := &recorder{w: w}
		next.ServeHTTP(rec, r)
		if in == nil {
			return
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		header := rec.header
		if header == nil {
			header = w.Header().Clone()
		}
		v.checkResponse(r.Context(), in, status, header, rec.body.Bytes())
	})
}

// recorder passes everything through to w and keeps a copy of the status,
// the headers as sent, and the body.
type recorder struct {
	w      http.ResponseWriter
	status int
	header http.Header
	body   bytes.Buffer
}

func (rc *recorder) Header() http.Header { return rc.w.Header() }

func (rc *recorder) WriteHeader(status int) {
	if rc.status == 0 && status >= 200 {
		rc.status = status
		rc.header = rc.w.Header().Clone()
	}
	rc.w.WriteHeader(status)
}

func (rc *recorder) Write(b []byte) (int, error) {
	if rc.status == 0 {
		rc.WriteHeader(http.StatusOK)
	}
	rc.body.Write(b)
	return rc.w.Write(b)
}

func (rc *recorder) Flush() {
	if f, ok := rc.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (rc *recorder) Unwrap() http.ResponseWriter { return rc.w }

// Transport returns a RoundTripper that validates each request under /v2/
// against the contract before sending it through base (nil means
// http.DefaultTransport), recording violations like Middleware does.
// Responses are not checked here; wrap the server with Middleware for that.
func (v *Validator) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{v: v, base: base}
}

type transport struct {
	v    *Validator
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || !checked(req.URL.Path) {
		return t.base.RoundTrip(req)
	}
	var body []byte
	switch {
	case req.Body == nil || req.Body == http.NoBody:
	case req.GetBody != nil:
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		body, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	default:
		// Read the body once and send a copy of the request with it.
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	t.v.checkRequest(req.Context(), req, body)
	return t.base.RoundTrip(req)
}
