//go:build e2e

package blogkit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChromiumTrust serves a page over HTTPS on 127.0.0.251 with a leaf
// of a test CA: Chromium trusting the CA renders it (DOM and screenshot);
// Chromium not trusting it gets net::ERR_CERT_AUTHORITY_INVALID and no
// page.
func TestChromiumTrust(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ca, err := NewCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("trust", "trust.test")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.251:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><html><head><title>trust</title></head>
<body style="background:#2a6;color:#fff;font:48px sans-serif"><h1 id="ok">trusted page</h1></body></html>`)
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}},
		ErrorLog: log.New(io.Discard, "", 0)} // the untrusting browser's handshake errors
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	url := "https://trust.test:" + port + "/"
	hosts := map[string]string{"trust.test": "127.0.0.251"}

	start := time.Now()
	trusting := NewChromium(t, ChromiumOptions{TrustPEM: [][]byte{ca.CertPEM}, HostMap: hosts})
	t.Logf("NSS database made in %v", time.Since(start).Round(time.Millisecond))
	shot := filepath.Join(dir, "trusted.png")
	start = time.Now()
	dom, err := trusting.Visit(ctx, url, VisitOptions{Screenshot: shot})
	if err != nil {
		t.Fatalf("trusted visit: %v", err)
	}
	t.Logf("visit with screenshot in %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(dom, `<h1 id="ok">trusted page</h1>`) {
		t.Errorf("trusted DOM:\n%s", dom)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1280x900", b)
	}
	// The page's green background, not an error page.
	if r, g, b, _ := img.At(640, 800).RGBA(); !(g > r && g > b) {
		t.Errorf("screenshot pixel (640,800) = %d,%d,%d: not the page's green", r>>8, g>>8, b>>8)
	}

	plain := NewChromium(t, ChromiumOptions{HostMap: hosts})
	dom, err = plain.Visit(ctx, url, VisitOptions{})
	var ple *PageLoadError
	if !errors.As(err, &ple) || ple.Net != "net::ERR_CERT_AUTHORITY_INVALID" {
		t.Errorf("untrusted visit: err = %v, want net::ERR_CERT_AUTHORITY_INVALID", err)
	}
	if strings.Contains(dom, "trusted page") {
		t.Errorf("untrusted visit rendered the page")
	}
	// Trusting the CA does not make a wrong name pass.
	wrong := NewChromium(t, ChromiumOptions{TrustPEM: [][]byte{ca.CertPEM}, HostMap: map[string]string{"other.test": "127.0.0.251"}})
	if _, err := wrong.Visit(ctx, "https://other.test:"+port+"/", VisitOptions{}); !errors.As(err, &ple) || ple.Net != "net::ERR_CERT_COMMON_NAME_INVALID" {
		t.Errorf("wrong name: err = %v, want net::ERR_CERT_COMMON_NAME_INVALID", err)
	}
}
