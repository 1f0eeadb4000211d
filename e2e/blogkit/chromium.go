//go:build e2e

package blogkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ChromiumOptions configures NewChromium / PrepareChromium.
type ChromiumOptions struct {
	// Dir holds the browser's HOME (with its NSS database) and the
	// per-visit profiles. NewChromium defaults it to t.TempDir().
	Dir string
	// TrustPEM are CA certificates (PEM, one or more each) the browser
	// trusts for TLS servers, e.g. Pebble.RootCAPEM: imported into an NSS
	// database at $HOME/.pki/nssdb with `certutil -A -t C,,`, where
	// Chromium on Linux reads locally trusted roots. Nothing else is
	// trusted but the system roots Chromium ships with.
	TrustPEM [][]byte
	// HostMap maps host names to IP addresses
	// (--host-resolver-rules="MAP name ip, ..."), e.g. blog.test ->
	// 127.0.0.200; names not mapped resolve as usual.
	HostMap map[string]string
	// Bin is the browser (default: chromium on PATH, Debian's
	// /usr/bin/chromium).
	Bin string
	// WindowSize for screenshots (default "1280,900").
	WindowSize string
}

// Chromium runs Debian's headless Chromium, one process per visit, with
// a HOME whose NSS database trusts the given CAs. It never passes
// --ignore-certificate-errors: a page over HTTPS renders only if its
// certificate verifies.
//
// Flags: --headless --no-sandbox (as root there is no sandbox)
// --disable-gpu --disable-quic --no-first-run --disable-background-networking
// --disable-component-update --disable-sync --disable-default-apps
// --user-data-dir=<a new dir per visit>, plus --host-resolver-rules.
type Chromium struct {
	Bin  string
	Home string // HOME of the browser: $HOME/.pki/nssdb is its NSS database
	dir  string
	opts ChromiumOptions
	rule string
}

// NewChromium prepares a Chromium (PrepareChromium) in t's temp dir; it
// skips t if no chromium is installed (apt-get install chromium
// libnss3-tools).
func NewChromium(t testing.TB, opts ChromiumOptions) *Chromium {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Bin == "" {
		if _, err := exec.LookPath("chromium"); err != nil {
			t.Skip("chromium is not installed (apt-get install chromium libnss3-tools)")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := PrepareChromium(ctx, opts)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return c
}

// PrepareChromium makes the browser's HOME in opts.Dir and its NSS
// database trusting opts.TrustPEM (needs certutil, from libnss3-tools).
func PrepareChromium(ctx context.Context, opts ChromiumOptions) (*Chromium, error) {
	if opts.Dir == "" {
		return nil, errors.New("chromium: no Dir")
	}
	if opts.WindowSize == "" {
		opts.WindowSize = "1280,900"
	}
	c := &Chromium{Bin: opts.Bin, Home: filepath.Join(opts.Dir, "home"), dir: opts.Dir, opts: opts}
	if c.Bin == "" {
		p, err := exec.LookPath("chromium")
		if err != nil {
			return nil, errors.New("chromium is not installed (apt-get install chromium libnss3-tools)")
		}
		c.Bin = p
	}
	nss := filepath.Join(c.Home, ".pki", "nssdb")
	if err := os.MkdirAll(nss, 0o700); err != nil {
		return nil, err
	}
	certutil := func(args ...string) error {
		out, err := exec.CommandContext(ctx, "certutil", append(args, "-d", "sql:"+nss)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("certutil %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if _, err := exec.LookPath("certutil"); err != nil {
		return nil, errors.New("certutil is not installed (apt-get install libnss3-tools)")
	}
	if err := certutil("-N", "--empty-password"); err != nil {
		return nil, err
	}
	for i, p := range opts.TrustPEM {
		certs, err := ParseCertsPEM(p)
		if err != nil {
			return nil, fmt.Errorf("chromium: TrustPEM[%d]: %w", i, err)
		}
		for j, cert := range certs {
			f := filepath.Join(opts.Dir, fmt.Sprintf("trust-%d-%d.pem", i, j))
			if err := os.WriteFile(f, pemBlock("CERTIFICATE", cert.Raw), 0o644); err != nil {
				return nil, err
			}
			if err := certutil("-A", "-n", fmt.Sprintf("fleet-e2e-%d-%d %s", i, j, cert.Subject.CommonName), "-t", "C,,", "-i", f); err != nil {
				return nil, err
			}
		}
	}
	var rules []string
	for name, ip := range opts.HostMap {
		rules = append(rules, "MAP "+name+" "+ip)
	}
	sort.Strings(rules)
	c.rule = strings.Join(rules, ", ")
	return c, nil
}

// VisitOptions tunes one visit.
type VisitOptions struct {
	// Screenshot, if set, is a PNG path: a second run takes a screenshot
	// of the page at the window size.
	Screenshot string
	// VirtualTimeBudget lets the page's scripts and timers run this long
	// (virtual time) before the DOM is dumped (0: none).
	VirtualTimeBudget time.Duration
	// Timeout bounds each browser run (default 60s).
	Timeout time.Duration
	// Args are more Chromium flags.
	Args []string
}

// PageLoadError is a page Chromium could not load: Net is Chromium's
// net error, e.g. net::ERR_CERT_AUTHORITY_INVALID when the certificate
// does not verify, or net::ERR_CONNECTION_REFUSED.
type PageLoadError struct {
	URL    string
	Net    string
	Stderr string // the browser's last stderr lines
}

func (e *PageLoadError) Error() string {
	return fmt.Sprintf("chromium: loading %s failed: %s", e.URL, e.Net)
}

var pageLoadFailedRE = regexp.MustCompile(`Page load failed: (net::[A-Z0-9_]+)`)

// Visit loads url and returns its DOM after load (--dump-dom), and takes
// a screenshot if opts.Screenshot is set. A page that does not load
// (a certificate that does not verify, a refused connection) is a
// *PageLoadError, with an empty DOM.
func (c *Chromium) Visit(ctx context.Context, url string, opts VisitOptions) (string, error) {
	out, err := c.run(ctx, url, opts, "--dump-dom")
	if err != nil {
		return "", err
	}
	if opts.Screenshot != "" {
		if err := c.Screenshot(ctx, url, opts.Screenshot, opts); err != nil {
			return out, err
		}
	}
	return out, nil
}

// Screenshot loads url and writes a PNG of the window to png.
func (c *Chromium) Screenshot(ctx context.Context, url, png string, opts VisitOptions) error {
	abs, err := filepath.Abs(png)
	if err != nil {
		return err
	}
	os.Remove(abs)
	if _, err := c.run(ctx, url, opts, "--screenshot="+abs, "--window-size="+c.opts.WindowSize, "--hide-scrollbars"); err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
		return fmt.Errorf("chromium: no screenshot of %s at %s", url, abs)
	}
	return nil
}

// run runs the browser once on url with a fresh profile and returns its
// stdout. The browser and its helpers are a process group of their own,
// killed as a whole if the run times out.
func (c *Chromium) run(ctx context.Context, url string, opts VisitOptions, mode ...string) (string, error) {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	profile, err := os.MkdirTemp(c.dir, "profile-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(profile)
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-dev-shm-usage",
		"--user-data-dir=" + profile,
	}
	if c.rule != "" {
		args = append(args, "--host-resolver-rules="+c.rule)
	}
	if opts.VirtualTimeBudget > 0 {
		args = append(args, "--virtual-time-budget="+strconv.FormatInt(opts.VirtualTimeBudget.Milliseconds(), 10))
	}
	args = append(args, opts.Args...)
	args = append(args, mode...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.Home,
		"XDG_CONFIG_HOME="+filepath.Join(c.Home, ".config"), "XDG_CACHE_HOME="+filepath.Join(c.Home, ".cache"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	tail := stderrTail(stderr.String())
	if m := pageLoadFailedRE.FindStringSubmatch(stderr.String()); m != nil {
		return "", &PageLoadError{URL: url, Net: m[1], Stderr: tail}
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("chromium: %s: timed out after %v\n%s", url, timeout, tail)
		}
		return "", fmt.Errorf("chromium: %s: %v\n%s", url, err, tail)
	}
	return stdout.String(), nil
}

// stderrTail is the last lines of Chromium's stderr, without its D-Bus
// noise (there is no bus here).
func stderrTail(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l == "" || strings.Contains(l, "dbus") || strings.Contains(l, "unexpected operator") {
			continue
		}
		keep = append(keep, l)
	}
	if len(keep) > 15 {
		keep = keep[len(keep)-15:]
	}
	return strings.Join(keep, "\n")
}
