package remote

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// pinCases are addresses Pin takes and their known_hosts spellings; with
// -tags e2e, TestPinReadByOpenSSH checks OpenSSH's reading of them.
var pinCases = []struct {
	addr   string
	host   string // the known_hosts spelling, as `ssh-keygen -F` takes it
	others []string
}{
	{addr: "203.0.113.5", host: "203.0.113.5", others: []string{"203.0.113.6", "[203.0.113.5]:2222"}},
	{addr: "203.0.113.5:22", host: "203.0.113.5", others: []string{"[203.0.113.5]:2222"}},
	{addr: "127.0.0.1:2222", host: "[127.0.0.1]:2222", others: []string{"127.0.0.1"}},
	{addr: "[2001:db8::1]:22", host: "2001:db8::1", others: []string{"2001:db8::2"}},
}

func TestPinWritesOneOpenSSHLine(t *testing.T) {
	for _, tc := range pinCases {
		t.Run(tc.addr, func(t *testing.T) {
			kh := KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")}
			old, key := newSigner(t).PublicKey(), newSigner(t).PublicKey()
			if err := kh.Pin("web-1", tc.addr, old); err != nil {
				t.Fatal(err)
			}
			if err := kh.Pin("web-1", tc.addr, key); err != nil {
				t.Fatal(err)
			}

			data, err := os.ReadFile(kh.Path("web-1"))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.host + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
			if string(data) != want {
				t.Errorf("file is %q, want %q", data, want)
			}
			assertMode(t, kh.Path("web-1"), 0o600)
			assertMode(t, kh.Dir, 0o700|os.ModeDir)
			entries, _ := os.ReadDir(kh.Dir)
			if len(entries) != 1 {
				t.Errorf("known_hosts dir holds %d entries, want 1 (temp file left?)", len(entries))
			}

		})
	}
}

func TestPinRejectsBadDropletNames(t *testing.T) {
	kh := KnownHosts{Dir: t.TempDir()}
	key := newSigner(t).PublicKey()
	for _, name := range []string{"", ".", "..", "../evil", "a/b"} {
		if err := kh.Pin(name, "203.0.113.5", key); err == nil {
			t.Errorf("Pin(%q) succeeded", name)
		}
		if _, err := kh.Callback(name); err == nil {
			t.Errorf("Callback(%q) succeeded", name)
		}
	}
}

func TestCallback(t *testing.T) {
	pinned, other := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	remote := &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 22}
	for _, tc := range []struct {
		name     string
		hostname string
		key      ssh.PublicKey
		wantErr  string // "" for success
	}{
		{name: "pinned key", hostname: "203.0.113.5:22", key: pinned},
		{name: "other key", hostname: "203.0.113.5:22", key: other, wantErr: "possible man-in-the-middle"},
		{name: "other address", hostname: "203.0.113.9:22", key: pinned, wantErr: "pins a different address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := KnownHosts{Dir: t.TempDir()}
			if err := kh.Pin("web-1", "203.0.113.5", pinned); err != nil {
				t.Fatal(err)
			}
			cb, err := kh.Callback("web-1")
			if err != nil {
				t.Fatal(err)
			}
			err = cb(tc.hostname, remote, tc.key)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("callback: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("callback error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestMismatchErrorNamesBothKeys(t *testing.T) {
	pinned, other := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	kh := KnownHosts{Dir: t.TempDir()}
	if err := kh.Pin("web-1", "203.0.113.5", pinned); err != nil {
		t.Fatal(err)
	}
	cb, err := kh.Callback("web-1")
	if err != nil {
		t.Fatal(err)
	}
	err = cb("203.0.113.5:22", &net.TCPAddr{IP: net.ParseIP("203.0.113.5"), Port: 22}, other)
	var mm *HostKeyMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("error %v (%T), want *HostKeyMismatchError", err, err)
	}
	want := HostKeyMismatchError{Droplet: "web-1", Addr: "203.0.113.5:22",
		Want: ssh.FingerprintSHA256(pinned), Got: ssh.FingerprintSHA256(other)}
	if *mm != want {
		t.Errorf("got %+v, want %+v", *mm, want)
	}
	for _, s := range []string{"host key for web-1", "changed", mm.Want, mm.Got, "refuses to connect"} {
		if !strings.Contains(mm.Error(), s) {
			t.Errorf("message %q lacks %q", mm.Error(), s)
		}
	}
}

func TestCallbackWithoutPin(t *testing.T) {
	kh := KnownHosts{Dir: t.TempDir()}
	if err := kh.Pin("web-1", "203.0.113.5", newSigner(t).PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := kh.Forget("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := kh.Forget("web-1"); err != nil {
		t.Fatalf("forgetting twice: %v", err)
	}
	_, err := kh.Callback("web-1")
	var np *NoPinnedKeyError
	if !errors.As(err, &np) || !strings.Contains(err.Error(), "no host key pinned for web-1") {
		t.Fatalf("Callback without a pin: %v, want a *NoPinnedKeyError", err)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}
