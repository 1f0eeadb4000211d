//go:build e2e

package blogkit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
)

// http01Server serves HTTP-01 challenge responses on addr (as nginx on a
// droplet serves certbot's webroot) until the test ends.
type http01Server struct {
	mu   sync.Mutex
	resp map[string]string // path -> body
	hits atomic.Int32
}

func startHTTP01(t *testing.T, addr string) *http01Server {
	t.Helper()
	s := &http01Server{resp: map[string]string{}}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("HTTP-01 server on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, ok := s.resp[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.hits.Add(1)
		fmt.Fprint(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *http01Server) set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp[path] = body
}

// issue drives ACME minimally: account, order, HTTP-01 for each authz,
// finalize; it returns the chain (leaf first).
func issue(ctx context.Context, t *testing.T, c *acme.Client, ch *http01Server, names ...string) []*x509.Certificate {
	t.Helper()
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(names...))
	if err != nil {
		t.Fatalf("new order: %v", err)
	}
	for _, u := range order.AuthzURLs {
		z, err := c.GetAuthorization(ctx, u)
		if err != nil {
			t.Fatalf("authz: %v", err)
		}
		if z.Status == acme.StatusValid {
			continue
		}
		var chal *acme.Challenge
		for _, cc := range z.Challenges {
			if cc.Type == "http-01" {
				chal = cc
			}
		}
		if chal == nil {
			t.Fatalf("no http-01 challenge in %+v", z)
		}
		body, err := c.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			t.Fatal(err)
		}
		ch.set(c.HTTP01ChallengePath(chal.Token), body)
		if _, err := c.Accept(ctx, chal); err != nil {
			t.Fatalf("accept: %v", err)
		}
		if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
			t.Fatalf("authorization: %v", err)
		}
	}
	order, err = c.WaitOrder(ctx, order.URI)
	if err != nil {
		t.Fatalf("order: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	ders, _, err := c.CreateCertFromOrder(ctx, order, csr, true)
	if err != nil {
		t.Fatalf("finalize: %v", err)
	}
	var chain []*x509.Certificate
	for _, d := range ders {
		cert, err := x509.ParseCertificate(d)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	return chain
}

func TestPebbleIssues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	gw, err := Gateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const name, ip = "pebble-selftest.test", "127.0.0.250"
	start := time.Now()
	p := StartPebble(t, PebbleOptions{ListenIP: gw, Names: []string{name}, ResolveTo: ip})
	t.Logf("pebble started in %v: %s (log %s)", time.Since(start).Round(time.Millisecond), p.DirectoryURL, p.LogFile)
	if !strings.HasPrefix(p.DirectoryURL, "https://"+gw+":") {
		t.Errorf("DirectoryURL %s does not listen on the gateway %s", p.DirectoryURL, gw)
	}
	ch := startHTTP01(t, ip+":80")

	if n := p.Issuances(); n != 0 {
		t.Fatalf("Issuances before any order = %d", n)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := &acme.Client{Key: key, DirectoryURL: p.DirectoryURL, HTTPClient: tlsClient(p.CA)}
	if _, err := c.Register(ctx, &acme.Account{Contact: []string{"mailto:admin@" + name}}, acme.AcceptTOS); err != nil {
		t.Fatalf("register: %v", err)
	}
	start = time.Now()
	chain := issue(ctx, t, c, ch, name)
	t.Logf("issued in %v", time.Since(start).Round(time.Millisecond))
	if ch.hits.Load() == 0 {
		t.Errorf("Pebble never fetched the HTTP-01 response from %s:80", ip)
	}
	if n := p.Issuances(); n != 1 {
		t.Errorf("Issuances after one certificate = %d, want 1", n)
	}
	roots, err := p.RootPool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
		t.Errorf("issued certificate does not verify against RootCAPEM: %v", err)
	}
	// The listener's CA is not the issuing CA.
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: p.CA.Pool(), Intermediates: inter}); err == nil {
		t.Errorf("issued certificate verifies against the listener CA too")
	}
	serials := p.IssuedSerials()
	if len(serials) != 1 || !strings.EqualFold(strings.TrimLeft(serials[0], "0"), chain[0].SerialNumber.Text(16)) {
		t.Errorf("IssuedSerials = %v, certificate serial %x", serials, chain[0].SerialNumber)
	} else if st, err := p.CertStatus(ctx, serials[0]); err != nil || st != "Valid" {
		t.Errorf("CertStatus(%s) = %q, %v", serials[0], st, err)
	}

	// AuthzReuse 0: a new order validates again. Pebble reuses when
	// rand.Intn(100) > percent is false, so even at 0 one order in 100
	// reuses: allow three tries (one in a million fails).
	issued := 1
	validated := false
	for try := 0; try < 3 && !validated; try++ {
		hits := ch.hits.Load()
		issue(ctx, t, c, ch, name)
		issued++
		validated = ch.hits.Load() > hits
	}
	if !validated {
		t.Errorf("three new orders were not validated over HTTP-01 (AuthzReuse 0)")
	}
	if n := p.Issuances(); n != issued {
		t.Errorf("Issuances after %d certificates = %d", issued, n)
	}

	// A name Pebble's DNS does not know fails validation.
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs("unknown.test"))
	if err != nil {
		t.Fatalf("order for unknown.test: %v", err)
	}
	z, err := c.GetAuthorization(ctx, order.AuthzURLs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range z.Challenges {
		if cc.Type == "http-01" {
			if _, err := c.Accept(ctx, cc); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.WaitAuthorization(ctx, z.URI); err == nil {
		t.Errorf("unknown.test (not in Pebble's DNS) was validated")
	} else {
		t.Logf("unknown.test: %v", err)
	}
	// The failed order issued nothing: the count is still the loop's.
	if n := p.Issuances(); n != issued {
		t.Errorf("Issuances after the failed order = %d, want %d", n, issued)
	}
}
