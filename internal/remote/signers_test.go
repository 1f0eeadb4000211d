package remote

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"golang.org/x/crypto/ssh"
)

// TestDialSigners: keys held in memory (FLEET_SSH_KEY) log in with no key
// file and no agent, and come before the key files.
func TestDialSigners(t *testing.T) {
	mem := newSigner(t)
	for _, tc := range []struct {
		name      string
		signers   []ssh.Signer
		fileKey   bool // add the server's ClientKeyFile (not authorized)
		authorize bool // authorize mem
		wantErr   bool
	}{
		{name: "memory key only", signers: []ssh.Signer{mem}, authorize: true},
		{name: "memory key with a refused key file", signers: []ssh.Signer{mem}, fileKey: true, authorize: true},
		{name: "memory key refused", signers: []ssh.Signer{mem}, wantErr: true},
		{name: "no key at all", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SSH_AUTH_SOCK", "")
			srv := remotetest.NewServer(t, remotetest.Options{})
			if tc.authorize {
				srv.Authorize(mem.PublicKey())
			} else {
				srv.Authorize(newSigner(t).PublicKey())
			}
			d := &Dialer{KnownHosts: KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")}, Signers: tc.signers}
			if tc.fileKey {
				d.KeyFiles = []string{srv.ClientKeyFile}
			}
			if err := d.KnownHosts.Pin("web-1", srv.Addr, srv.HostKey); err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial(t.Context(), "web-1", srv.Addr, 5*time.Second)
			if tc.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			c.Close()
		})
	}
}

func TestSignersOrder(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "")
	srv := remotetest.NewUnstartedServer(t, remotetest.Options{})
	fileKey, err := os.ReadFile(srv.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := ssh.ParsePrivateKey(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	a, b := newSigner(t), newSigner(t)
	// The file's key given in memory too must be offered once, first.
	d := &Dialer{Signers: []ssh.Signer{a, fromFile, b, a}, KeyFiles: []string{srv.ClientKeyFile}}
	got, closeAgent, err := d.signers()
	if err != nil {
		t.Fatal(err)
	}
	defer closeAgent()
	want := []ssh.PublicKey{a.PublicKey(), fromFile.PublicKey(), b.PublicKey()}
	if len(got) != len(want) {
		t.Fatalf("got %d signers, want %d", len(got), len(want))
	}
	for i := range want {
		if string(got[i].PublicKey().Marshal()) != string(want[i].Marshal()) {
			t.Errorf("signer %d is %s, want %s", i, ssh.FingerprintSHA256(got[i].PublicKey()), ssh.FingerprintSHA256(want[i]))
		}
	}
}
