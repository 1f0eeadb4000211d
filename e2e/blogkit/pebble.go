//go:build e2e

package blogkit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// PebbleOptions configures LaunchPebble / StartPebble.
type PebbleOptions struct {
	// Dir holds Pebble's config, its listener certificate and both logs.
	// StartPebble defaults it to t.TempDir(); LaunchPebble requires it.
	Dir string
	// ListenIP is where the ACME API listens (default: Gateway, so the
	// certbot container inside a droplet reaches it). Its certificate
	// names this address, 127.0.0.1 and localhost.
	ListenIP string
	// Port of the ACME API on ListenIP (0: a free port).
	Port int
	// Names are resolved to ResolveTo by Pebble's DNS (pebble-challtestsrv):
	// the site's name(s), e.g. blog.test -> 127.0.0.200 (the reserved IP).
	// More can be added later with AddA. Every other name gets no answer.
	Names     []string
	ResolveTo string
	// HTTPPort and TLSPort are where Pebble's VA connects for HTTP-01 and
	// TLS-ALPN-01 (default 80 and 443).
	HTTPPort, TLSPort int
	// AuthzReuse is PEBBLE_AUTHZREUSE: the percentage of new orders that
	// reuse a valid authorization instead of validating again. Default 0:
	// every order is validated over HTTP-01 (what a fresh droplet must
	// pass); set -1 for Pebble's own default (50).
	AuthzReuse int
	// Validity of issued certificates (0: Pebble's default, 5 years).
	// certbot renews a certificate whose remaining life is under 30 days,
	// so 20*24h makes every `certbot renew` renew.
	Validity time.Duration
	// CA signs the ACME listener's certificate (default: a new CA in
	// Dir/ca).
	CA *CA
}

// Pebble is a running Pebble ACME server with its DNS server
// (pebble-challtestsrv), both started by this package.
type Pebble struct {
	// DirectoryURL is the ACME directory: https://<ListenIP>:<port>/dir.
	DirectoryURL string
	// ListenerCAPEM is the test CA that signed the ACME listener's
	// certificate: what an ACME client (certbot) must trust to talk to
	// Pebble. The blog stack takes it base64'd in ACME_CA_BUNDLE_B64
	// (ACMECABundleB64).
	ListenerCAPEM []byte
	// CA is that test CA.
	CA *CA
	// LogFile is Pebble's log; ChallLogFile pebble-challtestsrv's.
	LogFile, ChallLogFile string
	// DNSAddr is the DNS server Pebble resolves names with (127.0.0.1:port,
	// TCP and UDP).
	DNSAddr string

	mgmtURL      string // Pebble's management API, https://127.0.0.1:port
	challMgmtURL string // pebble-challtestsrv's, http://127.0.0.1:port
	client       *http.Client
	pebble       *process
	chall        *process
	rootMu       sync.Mutex
	root         []byte
}

// StartPebble launches Pebble (LaunchPebble) and stops it when t's test
// ends; it fails t if Pebble does not start. Pebble keeps its accounts,
// orders and issuing CA in memory only, so share one instance per suite:
// call it from the top-level test and pass the *Pebble to subtests, or
// call LaunchPebble from TestMain.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := LaunchPebble(ctx, opts)
	if err != nil {
		t.Fatalf("pebble: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// LaunchPebble builds (once, see EnsureBinary) and starts
// pebble-challtestsrv and Pebble, and returns once Pebble serves its
// directory and its issuing root is known. The caller must Close it.
//
// pebble-challtestsrv serves only DNS (127.0.0.1, a free port, TCP and
// UDP) and its management API (127.0.0.1); its HTTP-01, HTTPS-01,
// TLS-ALPN-01 and DoH listeners are off, and names not added answer
// nothing (no default A or AAAA). Pebble runs with PEBBLE_VA_NOSLEEP=1,
// PEBBLE_WFE_NONCEREJECT=0, PEBBLE_AUTHZREUSE from opts, `-dnsserver` set
// to challtestsrv, its management API on 127.0.0.1 and ECDSA keys.
func LaunchPebble(ctx context.Context, opts PebbleOptions) (_ *Pebble, err error) {
	if opts.Dir == "" {
		return nil, errors.New("pebble: no Dir")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if opts.ListenIP == "" {
		if opts.ListenIP, err = Gateway(ctx); err != nil {
			return nil, err
		}
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 80
	}
	if opts.TLSPort == 0 {
		opts.TLSPort = 443
	}
	if len(opts.Names) > 0 && net.ParseIP(opts.ResolveTo) == nil {
		return nil, fmt.Errorf("pebble: ResolveTo %q is not an IP address", opts.ResolveTo)
	}
	pebbleBin, err := EnsureBinary(ctx, PebbleTool)
	if err != nil {
		return nil, err
	}
	challBin, err := EnsureBinary(ctx, ChallTestSrvTool)
	if err != nil {
		return nil, err
	}
	if opts.CA == nil {
		if opts.CA, err = NewCA(filepath.Join(opts.Dir, "ca")); err != nil {
			return nil, err
		}
	}
	leaf, err := opts.CA.Issue(uniqueName("pebble-listener"), opts.ListenIP, "127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	p := &Pebble{
		CA:            opts.CA,
		ListenerCAPEM: opts.CA.CertPEM,
		LogFile:       filepath.Join(opts.Dir, "pebble.log"),
		ChallLogFile:  filepath.Join(opts.Dir, "pebble-challtestsrv.log"),
		client:        tlsClient(opts.CA),
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	// DNS first: Pebble only needs its address.
	dnsPort, err := freeTCPUDPPort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	challPort, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	p.DNSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	p.challMgmtURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(challPort))
	p.chall, err = startProcess("pebble-challtestsrv", challBin, []string{
		"-dnsserver", p.DNSAddr,
		"-management", net.JoinHostPort("127.0.0.1", strconv.Itoa(challPort)),
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-defaultIPv4", "", "-defaultIPv6", "",
	}, nil, opts.Dir, p.ChallLogFile)
	if err != nil {
		return nil, err
	}
	// The management API answers 404 on /; any answer means it is up.
	if err := p.chall.waitReady(ctx, 30*time.Second, dialCheck(strings.TrimPrefix(p.challMgmtURL, "http://"))); err != nil {
		return nil, err
	}
	if err := p.chall.waitReady(ctx, 30*time.Second, dialCheck(p.DNSAddr)); err != nil {
		return nil, err
	}
	for _, n := range opts.Names {
		if err := p.AddA(ctx, n, opts.ResolveTo); err != nil {
			return nil, err
		}
	}

	port := opts.Port
	if port == 0 {
		if port, err = FreePort(opts.ListenIP); err != nil {
			return nil, fmt.Errorf("pebble: a free port on %s: %w", opts.ListenIP, err)
		}
	}
	mgmtPort, err := FreePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort(opts.ListenIP, strconv.Itoa(port))
	p.DirectoryURL = "https://" + listen + "/dir"
	p.mgmtURL = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort))
	type profile struct {
		Description    string `json:"description"`
		ValidityPeriod uint64 `json:"validityPeriod"`
	}
	cfg := map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort)),
		"certificate":                    leaf.CertFile,
		"privateKey":                     leaf.KeyFile,
		"httpPort":                       opts.HTTPPort,
		"tlsPort":                        opts.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"keyAlgorithm":                   "ecdsa",
	}
	if opts.Validity > 0 {
		cfg["profiles"] = map[string]profile{
			"default": {Description: "fleet e2e", ValidityPeriod: uint64(opts.Validity / time.Second)},
		}
	}
	cfgJSON, err := json.MarshalIndent(map[string]any{"pebble": cfg}, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(opts.Dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, cfgJSON, 0o644); err != nil {
		return nil, err
	}
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}
	if opts.AuthzReuse >= 0 {
		env = append(env, "PEBBLE_AUTHZREUSE="+strconv.Itoa(opts.AuthzReuse))
	}
	p.pebble, err = startProcess("pebble", pebbleBin,
		[]string{"-config", cfgFile, "-dnsserver", p.DNSAddr}, env, opts.Dir, p.LogFile)
	if err != nil {
		return nil, err
	}
	if err := p.pebble.waitReady(ctx, 60*time.Second, httpCheck(p.client, p.DirectoryURL)); err != nil {
		return nil, err
	}
	if err := p.pebble.waitReady(ctx, 30*time.Second, httpCheck(p.client, p.mgmtURL+"/roots/0")); err != nil {
		return nil, err
	}
	if _, err := p.RootCAPEM(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops Pebble and pebble-challtestsrv.
func (p *Pebble) Close() {
	if p.pebble != nil {
		p.pebble.Stop()
	}
	if p.chall != nil {
		p.chall.Stop()
	}
}

// ACMECABundleB64 is ListenerCAPEM base64'd: the blog stack's
// ACME_CA_BUNDLE_B64.
func (p *Pebble) ACMECABundleB64() string {
	return base64.StdEncoding.EncodeToString(p.ListenerCAPEM)
}

// AddA makes Pebble's DNS answer A queries for host with ips (added to
// any it has). host may end in a dot or not.
func (p *Pebble) AddA(ctx context.Context, host string, ips ...string) error {
	for _, ip := range ips {
		if a := net.ParseIP(ip); a == nil || a.To4() == nil {
			return fmt.Errorf("pebble DNS: %q is not an IPv4 address", ip)
		}
	}
	return p.challPost(ctx, "/add-a", map[string]any{"host": host, "addresses": ips})
}

// SetA replaces the A records of host with ips.
func (p *Pebble) SetA(ctx context.Context, host string, ips ...string) error {
	if err := p.challPost(ctx, "/clear-a", map[string]any{"host": host}); err != nil {
		return err
	}
	return p.AddA(ctx, host, ips...)
}

func (p *Pebble) challPost(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.challMgmtURL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("pebble-challtestsrv %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pebble-challtestsrv %s: %s %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// RootCAPEM is Pebble's issuing root (management API /roots/0): what a
// client must trust to verify the certificates Pebble issues (a browser,
// curl --cacert). Pebble makes a new one at every start; it is fetched
// once and remembered.
func (p *Pebble) RootCAPEM(ctx context.Context) ([]byte, error) {
	p.rootMu.Lock()
	defer p.rootMu.Unlock()
	if p.root != nil {
		return p.root, nil
	}
	b, err := p.mgmtGet(ctx, "/roots/0")
	if err != nil {
		return nil, err
	}
	if _, err := ParseCertsPEM(b); err != nil {
		return nil, fmt.Errorf("pebble /roots/0: %w", err)
	}
	p.root = b
	return b, nil
}

// IntermediateCAPEM is Pebble's issuing intermediate (/intermediates/0).
func (p *Pebble) IntermediateCAPEM(ctx context.Context) ([]byte, error) {
	return p.mgmtGet(ctx, "/intermediates/0")
}

// RootPool is a certificate pool of RootCAPEM.
func (p *Pebble) RootPool(ctx context.Context) (*x509.CertPool, error) {
	b, err := p.RootCAPEM(ctx)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("pebble root: no certificate")
	}
	return pool, nil
}

func (p *Pebble) mgmtGet(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.mgmtURL+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pebble management %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("pebble management %s: %s", path, resp.Status)
	}
	return b, nil
}

// CertStatus asks Pebble's management API about the certificate with the
// serial number serialHex (as IssuedSerials gives it): "Valid" or
// "Revoked"; an error if Pebble does not know it.
func (p *Pebble) CertStatus(ctx context.Context, serialHex string) (string, error) {
	b, err := p.mgmtGet(ctx, "/cert-status-by-serial/"+serialHex)
	if err != nil {
		return "", err
	}
	var st struct{ Status string }
	if err := json.Unmarshal(b, &st); err != nil {
		return "", fmt.Errorf("pebble cert status: %w", err)
	}
	return st.Status, nil
}

// issuedPrefix starts the line Pebble's CA logs for every certificate it
// issues ("Issued certificate serial <hex> for order <id>"), written
// before the order turns valid, so a client that has its certificate
// finds the line in the log.
const issuedPrefix = "Issued certificate serial "

// Issuances is the number of certificates Pebble has issued since it
// started. Pebble's management API has no count (only a status by
// serial), so it counts Pebble's own log lines "Issued certificate serial
// …", which its CA writes (unbuffered) before the order becomes valid.
func (p *Pebble) Issuances() int { return len(p.IssuedSerials()) }

// IssuedSerials are the serial numbers (hex, as Pebble logs them and
// CertStatus takes them) of the certificates issued so far, oldest first.
func (p *Pebble) IssuedSerials() []string {
	f, err := os.Open(p.LogFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var serials []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.Index(line, issuedPrefix)
		if i < 0 {
			continue
		}
		if f := strings.Fields(line[i+len(issuedPrefix):]); len(f) > 0 {
			serials = append(serials, f[0])
		}
	}
	return serials
}
