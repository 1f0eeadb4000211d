package remote

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestHostKeyID(t *testing.T) {
	k := newSigner(t).PublicKey()
	id := HostKeyID(k)
	if !regexp.MustCompile(`^[a-z2-7]{52}$`).MatchString(id) {
		t.Fatalf("HostKeyID = %q, want 52 lowercase base32 characters", id)
	}
	if got, want := fingerprintOfID(id), ssh.FingerprintSHA256(k); got != want {
		t.Fatalf("fingerprintOfID = %s, want %s", got, want)
	}
}

// TestDialRecorded: the cloud's record decides; known_hosts is a cache
// that never makes a key trusted.
func TestDialRecorded(t *testing.T) {
	other := newSigner(t).PublicKey()
	for _, tc := range []struct {
		name     string
		recorded func(f *fixture) []string
		cache    func(f *fixture) ssh.PublicKey // pinned before the dial; nil: fresh home
		wantErr  string                         // "" = connects
	}{
		{"recorded, fresh home", func(f *fixture) []string { return []string{HostKeyID(f.srv.HostKey)} }, nil, ""},
		{"recorded among two (rotation under way)", func(f *fixture) []string { return []string{HostKeyID(other), HostKeyID(f.srv.HostKey)} }, nil, ""},
		{"recorded, stale cache", func(f *fixture) []string { return []string{HostKeyID(f.srv.HostKey)} }, func(*fixture) ssh.PublicKey { return other }, ""},
		{"mismatch, fresh home", func(*fixture) []string { return []string{HostKeyID(other)} }, nil, "does not match the fingerprint recorded in the cloud"},
		{"mismatch, warm home holding the presented key", func(*fixture) []string { return []string{HostKeyID(other)} }, func(f *fixture) ssh.PublicKey { return f.srv.HostKey }, "does not match the fingerprint recorded in the cloud"},
		{"unrecorded, pinned", func(*fixture) []string { return nil }, func(f *fixture) ssh.PublicKey { return f.srv.HostKey }, ""},
		{"unrecorded, pinned otherwise", func(*fixture) []string { return nil }, func(*fixture) ssh.PublicKey { return other }, "changed: pinned"},
		{"unrecorded, fresh home", func(*fixture) []string { return nil }, nil, "no host key recorded in the cloud"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.Start()
			if tc.cache != nil {
				if err := f.dialer.KnownHosts.Pin(f.droplet, f.srv.Addr, tc.cache(f)); err != nil {
					t.Fatal(err)
				}
			}
			c, err := f.dialer.DialRecorded(t.Context(), f.droplet, f.srv.Addr, 5*time.Second, tc.recorded(f))
			if tc.wantErr != "" {
				if err == nil {
					c.Close()
					t.Fatalf("connected; want an error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
				}
				var mm *HostKeyMismatchError
				if strings.Contains(tc.wantErr, "match") && (!errors.As(err, &mm) || mm.Got != ssh.FingerprintSHA256(f.srv.HostKey)) {
					t.Fatalf("error %v (%T), want a *HostKeyMismatchError naming the presented key", err, err)
				}
				if got := len(f.srv.Commands()); got != 0 {
					t.Fatalf("%d commands ran on a refused host", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			// A verified handshake leaves the presented key in the cache.
			data, err := os.ReadFile(f.dialer.KnownHosts.Path(f.droplet))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, k, _, _, err := ssh.ParseKnownHosts(data); err != nil || string(k.Marshal()) != string(f.srv.HostKey.Marshal()) {
				t.Fatalf("cache holds %q (%v), want the presented key", data, err)
			}
		})
	}
}
