package remote

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestDialPinnedHost(t *testing.T) {
	f := newFixture(t)
	c := f.connect(t)
	if got, want := c.HostKey().Marshal(), f.srv.HostKey.Marshal(); string(got) != string(want) {
		t.Errorf("HostKey is %s, want the pinned %s", ssh.FingerprintSHA256(c.HostKey()), ssh.FingerprintSHA256(f.srv.HostKey))
	}
	out, err := c.Output(t.Context(), "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
}

// TestDialFailsAtOnce covers the failures no amount of waiting fixes: each
// must fail on the first connection, well inside the wait.
func TestDialFailsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(t *testing.T, f *fixture)
		wantConns int
		check     func(t *testing.T, err error)
	}{
		{
			name: "host key mismatch",
			setup: func(t *testing.T, f *fixture) {
				if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, newSigner(t).PublicKey()); err != nil {
					t.Fatal(err)
				}
			},
			wantConns: 1,
			check: func(t *testing.T, err error) {
				var mm *HostKeyMismatchError
				if !errors.As(err, &mm) {
					t.Fatalf("error %v (%T), want *HostKeyMismatchError", err, err)
				}
				if !strings.Contains(err.Error(), "man-in-the-middle") {
					t.Errorf("message %q does not warn of a man-in-the-middle", err)
				}
			},
		},
		{
			name: "no pinned key",
			setup: func(t *testing.T, f *fixture) {
				if err := f.dialer.KnownHosts.Forget(f.droplet); err != nil {
					t.Fatal(err)
				}
			},
			wantConns: 0,
			check: func(t *testing.T, err error) {
				var np *NoPinnedKeyError
				if !errors.As(err, &np) || !strings.Contains(err.Error(), "no host key pinned") {
					t.Fatalf("error %v (%T), want *NoPinnedKeyError", err, err)
				}
			},
		},
		{
			name: "key pinned for another address",
			setup: func(t *testing.T, f *fixture) {
				if err := f.dialer.KnownHosts.Pin(f.droplet, "203.0.113.5", f.srv.HostKey); err != nil {
					t.Fatal(err)
				}
			},
			wantConns: 1,
			check: func(t *testing.T, err error) {
				var np *NoPinnedKeyError
				if !errors.As(err, &np) || !np.Other {
					t.Fatalf("error %v (%T), want *NoPinnedKeyError for another address", err, err)
				}
			},
		},
		{
			name: "authentication failure",
			setup: func(t *testing.T, f *fixture) {
				f.srv.Authorize(newSigner(t).PublicKey())
			},
			wantConns: 1,
			check: func(t *testing.T, err error) {
				var ae *AuthError
				if !errors.As(err, &ae) || !strings.Contains(err.Error(), "authentication failed") {
					t.Fatalf("error %v (%T), want *AuthError", err, err)
				}
				if len(ae.Keys) != 1 || ae.User != "root" {
					t.Errorf("AuthError %+v: want root and the one key offered", ae)
				}
			},
		},
		{
			name: "encrypted key file",
			setup: func(t *testing.T, f *fixture) {
				path, _ := writeKey(t, "correct horse")
				f.dialer.KeyFiles = []string{path}
			},
			wantConns: 0,
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "encrypted") || !strings.Contains(err.Error(), "ssh-agent") {
					t.Fatalf("error %v, want one saying the key is encrypted and to use ssh-agent", err)
				}
			},
		},
		{
			name: "no keys at all",
			setup: func(t *testing.T, f *fixture) {
				f.dialer.KeyFiles = nil
			},
			wantConns: 0,
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "no SSH keys") {
					t.Fatalf("error %v, want one saying there are no keys", err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.up(t)
			tc.setup(t, f)
			start := time.Now()
			c, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, 5*time.Second)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			tc.check(t, err)
			// A retry would run to the 5 s wait.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Dial took %s: it retried", d)
			}
			if conns := f.srv.Conns(); conns != tc.wantConns {
				t.Errorf("server saw %d connections, want %d", conns, tc.wantConns)
			}
		})
	}
}

func TestDialRetriesWhileSSHDBoots(t *testing.T) {
	t.Run("server starts late", func(t *testing.T) {
		addr := freePort(t)
		f := newFixtureWith(t, remotetest.Options{Addr: addr})
		f.addr = addr
		if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, f.srv.HostKey); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(500*time.Millisecond, f.srv.Start)
		start := time.Now()
		c, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("connected after %s, before the server listened", d)
		}
		if !strings.Contains(f.logs.String(), "retrying") {
			t.Errorf("no retries logged:\n%s", f.logs)
		}
	})
	t.Run("EOF during handshake", func(t *testing.T) {
		f := newFixtureWith(t, remotetest.Options{DropFirst: 2})
		f.up(t)
		c, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		if conns := f.srv.Conns(); conns != 3 {
			t.Errorf("server saw %d connections, want 3", conns)
		}
	})
}

func TestDialGivesUp(t *testing.T) {
	t.Run("wait runs out", func(t *testing.T) {
		f := newFixture(t)
		f.addr = freePort(t)
		if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, f.srv.HostKey); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, time.Second)
		d := time.Since(start)
		if err == nil {
			t.Fatal("Dial succeeded with nothing listening")
		}
		for _, s := range []string{f.addr, "timed out", "connection refused"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q lacks %q", err, s)
			}
		}
		if d < time.Second || d > 3*time.Second {
			t.Errorf("gave up after %s, want about 1s", d)
		}
	})
	t.Run("context cancelled", func(t *testing.T) {
		f := newFixture(t)
		f.addr = freePort(t)
		if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, f.srv.HostKey); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := f.dialer.Dial(ctx, f.droplet, f.addr, time.Minute)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v, want the context's", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %s to notice the context ended", d)
		}
	})
}

func TestDialWithAgent(t *testing.T) {
	f := newFixture(t)
	f.up(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Authorize(pub)

	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(shortTempDir(t), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)

	f.dialer.KeyFiles = nil
	f.dialer.Agent = true
	c, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial with the agent: %v", err)
	}
	c.Close()

	f.dialer.Agent = false
	if _, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, time.Second); err == nil {
		t.Fatal("Dial succeeded without the agent or keys")
	}
}

func TestWithPort(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.5":      "203.0.113.5:22",
		"203.0.113.5:2222": "203.0.113.5:2222",
		"2001:db8::1":      "[2001:db8::1]:22",
		"[2001:db8::1]":    "[2001:db8::1]:22",
		"[2001:db8::1]:22": "[2001:db8::1]:22",
	} {
		if got := withPort(in, 0); got != want {
			t.Errorf("withPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	f := newFixture(t)
	f.up(t)
	f.srv.Authorize(newSigner(t).PublicKey())
	_, authErr := f.dialer.Dial(t.Context(), f.droplet, f.addr, 0)
	if authErr == nil || retryable(authErr) {
		t.Errorf("auth failure %v: retryable", authErr)
	}
	_, refused := net.Dial("tcp", freePort(t))
	if refused == nil || !retryable(refused) {
		t.Errorf("%v: not retryable", refused)
	}
}

// shortTempDir is a temp dir with a path short enough for a unix socket.
func shortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "fleet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
