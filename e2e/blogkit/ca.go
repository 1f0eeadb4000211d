//go:build e2e

package blogkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"
)

// CA is a throwaway certificate authority for the test servers' own TLS
// listeners (Pebble's ACME API, mailpit's STARTTLS, a test's HTTPS page).
// It is not Pebble's issuing CA: Pebble makes its own (Pebble.RootCAPEM).
type CA struct {
	Dir     string // where NewCA wrote ca.pem and ca-key.pem, and Issue writes leaves
	CertPEM []byte // the CA certificate, PEM
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	mu      sync.Mutex
}

// NewCA makes a new CA (ECDSA P-256, valid from an hour ago for 30 days)
// and writes dir/ca.pem (certificate) and dir/ca-key.pem (key, 0600).
func NewCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "fleet e2e test CA", Organization: []string{"fleet e2e"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir, cert: cert, key: key, CertPEM: pemBlock("CERTIFICATE", der)}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(ca.CertFile(), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca-key.pem"), pemBlock("PRIVATE KEY", kder), 0o600); err != nil {
		return nil, err
	}
	return ca, nil
}

// CertFile is the path of the CA certificate (PEM).
func (ca *CA) CertFile() string { return filepath.Join(ca.Dir, "ca.pem") }

// Pool is a certificate pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func (ca *CA) tlsConfig() *tls.Config { return &tls.Config{RootCAs: ca.Pool()} }

// Leaf is a certificate the CA issued, with its key.
type Leaf struct {
	CertFile, KeyFile string // PEM files: the leaf then the CA (chain), and its PKCS#8 key
	CertPEM, KeyPEM   []byte
	TLS               tls.Certificate
}

var leafNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Issue signs a server (and client) leaf certificate for hosts (DNS names
// or IP addresses), valid from an hour ago for 7 days, and writes
// <Dir>/<name>.pem (leaf + CA) and <Dir>/<name>-key.pem (0600).
func (ca *CA) Issue(name string, hosts ...string) (*Leaf, error) {
	if !leafNameRE.MatchString(name) {
		return nil, fmt.Errorf("test CA: leaf name %q: use letters, digits, '_', '.', '-'", name)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("test CA: leaf %s: no host names", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	ca.mu.Lock()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	ca.mu.Unlock()
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	l := &Leaf{
		CertFile: filepath.Join(ca.Dir, name+".pem"),
		KeyFile:  filepath.Join(ca.Dir, name+"-key.pem"),
		CertPEM:  append(pemBlock("CERTIFICATE", der), ca.CertPEM...),
		KeyPEM:   pemBlock("PRIVATE KEY", kder),
	}
	if l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l.CertFile, l.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(l.KeyFile, l.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return l, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// ParseCertsPEM parses every CERTIFICATE block of b (at least one).
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate in PEM")
	}
	return certs, nil
}

// uniqueName is prefix-<8 random hex digits>: leaf file names that do not
// collide when servers share a CA.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-%x", prefix, b)
}
