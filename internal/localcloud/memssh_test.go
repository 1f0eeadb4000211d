package localcloud

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
	"golang.org/x/crypto/ssh"
)

// memFixture is a memory droplet booted with a host key in its user_data,
// and a Dialer with the key it authorizes.
type memFixture struct {
	sshd    *MemorySSH
	mach    Machine
	userKey ssh.PublicKey
	dialer  *remote.Dialer
}

func newMemFixture(t *testing.T, dir string, holds map[string]time.Duration, vendorFail bool) *memFixture {
	t.Helper()
	m, err := NewMemorySSH()
	if err != nil {
		t.Fatal(err)
	}
	m.Dir = dir
	t.Cleanup(m.Close)
	hostPEM, host := memKey(t)
	clientPEM, client := memKey(t)
	keyFile := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(keyFile, []byte(clientPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	f := &memFixture{sshd: m, userKey: host.PublicKey(),
		dialer: &remote.Dialer{KnownHosts: remote.KnownHosts{Dir: t.TempDir()}, KeyFiles: []string{keyFile}, Port: m.Port}}
	f.mach = Machine{ID: 7, Name: "hello-v1-0-0-abc123", PublicIPv4: "127.0.0.42",
		UserData: "#cloud-config\nssh_keys:\n  ed25519_private: |\n    " + strings.ReplaceAll(strings.TrimSpace(hostPEM), "\n", "\n    ") + "\n",
		SSHKeys:  []string{string(ssh.MarshalAuthorizedKey(client.PublicKey()))}, Holds: holds, VendorFail: vendorFail, Monitoring: vendorFail}
	if err := (MemoryBackend{SSH: m}).Boot(t.Context(), f.mach); err != nil {
		t.Fatal(err)
	}
	return f
}

func memKey(t *testing.T) (string, ssh.Signer) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), s
}

func (f *memFixture) dial(t *testing.T, key ssh.PublicKey) (*remote.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return f.dialer.DialRecorded(ctx, f.mach.Name, f.mach.PublicIPv4, time.Second, []string{remote.HostKeyID(key)})
}

// A memory droplet answers fleet's readiness gate as a real one would:
// user_data's host key, cloud-init (held, failed), the rotation, and its
// disk across a server restart.
func TestMemorySSH(t *testing.T) {
	for _, tc := range []struct {
		name       string
		hold       time.Duration
		vendorFail bool
		wantErr    string
	}{
		{name: "ready"},
		{name: "cloud-init held", hold: 700 * time.Millisecond},
		{name: "vendor-data fails", vendorFail: true, wantErr: "scripts-vendor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			booted := time.Now()
			f := newMemFixture(t, dir, map[string]time.Duration{HoldCloudInit: tc.hold}, tc.vendorFail)
			c, err := f.dial(t, f.userKey)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.WaitCloudInit(t.Context(), 5*time.Second)
			if waited := time.Since(booted); waited < tc.hold {
				t.Fatalf("cloud-init status --wait returned %s after the boot, before the %s hold", waited, tc.hold)
			}
			var ce *remote.CloudInitError
			if tc.wantErr != "" {
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WaitCloudInit: %v, want a CloudInitError with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			next, err := c.RotateHostKey(t.Context(), func(...ssh.PublicKey) error { return nil })
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.dial(t, f.userKey); err == nil {
				t.Fatal("the droplet still presents user_data's key after the rotation")
			}
			// Restarted on its disk, it presents the rotated key.
			f.sshd.Close()
			m2, err := NewMemorySSH()
			if err != nil {
				t.Fatal(err)
			}
			m2.Dir = dir
			defer m2.Close()
			ms, err := (DiskMemoryBackend{MemoryBackend{SSH: m2}}).List(t.Context())
			if err != nil || len(ms) != 1 || ms[0].ID != 7 || !ms[0].Booted {
				t.Fatalf("List = %+v, %v", ms, err)
			}
			f.dialer.Port = m2.Port
			c, err = f.dial(t, next)
			if err != nil {
				t.Fatalf("after a restart: %v", err)
			}
			c.Close()
		})
	}
}
