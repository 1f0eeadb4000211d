//go:build e2e

package remote

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// realSSHD is OpenSSH's sshd running as a child process on 127.0.0.1.
type realSSHD struct {
	dir     string
	addr    string
	port    string
	user    string
	keyFile string // the client's private key
	cmd     *exec.Cmd
	log     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSSHD(t *testing.T) *realSSHD {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("%s: %v: the e2e tests need OpenSSH's server: apt-get install openssh-server", sshdPath, err)
	}
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Fatalf("ssh-keygen: %v: apt-get install openssh-client", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root insists on its privilege separation directory,
		// which the system's service unit would normally create.
		if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir("/run/sshd", 0o755); err != nil {
				t.Fatalf("create /run/sshd for sshd: %v", err)
			}
			t.Cleanup(func() { os.Remove("/run/sshd") })
		}
	}

	s := &realSSHD{dir: t.TempDir(), user: u.Username, log: &syncBuffer{}}
	for _, typ := range []string{"ed25519", "ecdsa"} {
		keygen(t, "-q", "-t", typ, "-N", "", "-f", filepath.Join(s.dir, "ssh_host_"+typ+"_key"))
	}
	keyFile, signer := writeKey(t, "")
	s.keyFile = keyFile
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.addr = freePort(t)
	s.port = s.addr[strings.LastIndex(s.addr, ":")+1:]
	config := fmt.Sprintf(`Port %s
ListenAddress 127.0.0.1
HostKey %[2]s/ssh_host_ed25519_key
HostKey %[2]s/ssh_host_ecdsa_key
AuthorizedKeysFile %[2]s/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel VERBOSE
`, s.port, s.dir)
	cfgPath := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(sshdPath, "-D", "-e", "-f", cfgPath)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log)
		}
	})
	return s
}

func keygen(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ssh-keygen", args...).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (s *realSSHD) hostKey(t *testing.T, typ string) ssh.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(s.dir, "ssh_host_"+typ+"_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// systemSSH runs OpenSSH's client against the server, trusting only the
// pinned known_hosts file.
func (s *realSSHD) systemSSH(t *testing.T, knownHosts string) (string, error) {
	t.Helper()
	out, err := exec.Command("ssh", "-F", "/dev/null",
		"-o", "UserKnownHostsFile="+knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=5",
		"-i", s.keyFile,
		"-p", s.port,
		s.user+"@127.0.0.1", "echo", "system-ssh-ok").CombinedOutput()
	return string(out), err
}

func TestE2ERealSSHD(t *testing.T) {
	srv := startSSHD(t)
	kh := KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")}
	const droplet = "web-e2e"
	if err := kh.Pin(droplet, srv.addr, srv.hostKey(t, "ed25519")); err != nil {
		t.Fatal(err)
	}
	d := &Dialer{KnownHosts: kh, KeyFiles: []string{srv.keyFile}, User: srv.user, Logf: t.Logf}

	// sshd may not be listening yet: Dial waits for it.
	c, err := d.Dial(t.Context(), droplet, srv.addr, 10*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()

	t.Run("Run", func(t *testing.T) {
		var out bytes.Buffer
		if err := c.Run(t.Context(), "cat; echo; echo done", strings.NewReader("from stdin"), &out, nil); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if out.String() != "from stdin\ndone\n" {
			t.Errorf("stdout %q", out.String())
		}
		if err := c.Run(t.Context(), "true", strings.NewReader(strings.Repeat("x", 4<<20)), nil, nil); err != nil {
			t.Errorf("a command leaving stdin unread: %v", err)
		}
		err := c.Run(t.Context(), "echo oops >&2; exit 3", nil, nil, nil)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(ee.Stderr, "oops") {
			t.Errorf("Run: %v, want exit 3 with stderr oops", err)
		}
	})

	t.Run("WriteFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "etc", "fleet", "app", "secrets", "db_password")
		if err := c.WriteFile(t.Context(), path, 0o600, strings.NewReader("hunter2")); err != nil {
			t.Fatalf("WriteFile: %v", err)
		}
		if err := c.WriteFile(t.Context(), path, 0o600, strings.NewReader("hunter3")); err != nil {
			t.Fatalf("WriteFile over an existing file: %v", err)
		}
		data, err := os.ReadFile(path)
		if err != nil || string(data) != "hunter3" {
			t.Fatalf("content %q, %v", data, err)
		}
		assertMode(t, path, 0o600)
		if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
			t.Errorf("%d entries next to the file, want none (temp file left?)", len(entries)-1)
		}
	})

	t.Run("system ssh trusts the pinned file", func(t *testing.T) {
		out, err := srv.systemSSH(t, kh.Path(droplet))
		if err != nil || !strings.Contains(out, "system-ssh-ok") {
			t.Fatalf("ssh with the pinned known_hosts: %v\n%s", err, out)
		}
	})

	// Rotate the host key the way a droplet would, on this sshd's files.
	oldHostKeyDir, oldReload := hostKeyDir, reloadSSHD
	hostKeyDir, reloadSSHD = srv.dir, fmt.Sprintf("kill -HUP %d", srv.cmd.Process.Pid)
	t.Cleanup(func() { hostKeyDir, reloadSSHD = oldHostKeyDir, oldReload })
	oldPin, err := os.ReadFile(kh.Path(droplet))
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := c.RotateHostKey(t.Context(), func(keys ...ssh.PublicKey) error { return kh.Pin(droplet, srv.addr, keys...) })
	if err != nil {
		t.Fatalf("RotateHostKey: %v", err)
	}
	if got := srv.hostKey(t, "ed25519"); !bytes.Equal(got.Marshal(), newKey.Marshal()) {
		t.Fatalf("RotateHostKey returned %s, the file holds %s", ssh.FingerprintSHA256(newKey), ssh.FingerprintSHA256(got))
	}
	if _, err := os.Stat(filepath.Join(srv.dir, "ssh_host_ecdsa_key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ECDSA host key is still there: %v", err)
	}
	// The verified connection outlives the rotation.
	if out, err := c.Output(t.Context(), "echo still here"); err != nil || string(out) != "still here\n" {
		t.Errorf("after rotating: %q, %v", out, err)
	}

	t.Run("mid-rotation pins accept the new key", func(t *testing.T) {
		c2, err := d.Dial(t.Context(), droplet, srv.addr, 10*time.Second)
		if err != nil {
			t.Fatalf("Dial with the current and next keys pinned: %v", err)
		}
		defer c2.Close()
		if !bytes.Equal(c2.HostKey().Marshal(), newKey.Marshal()) {
			t.Errorf("the droplet presented %s, want the new key", ssh.FingerprintSHA256(c2.HostKey()))
		}
	})
	// Back to the pin from before the rotation: it must be refused now.
	if err := os.WriteFile(kh.Path(droplet), oldPin, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("old pin is refused", func(t *testing.T) {
		_, err := d.Dial(t.Context(), droplet, srv.addr, 10*time.Second)
		var mm *HostKeyMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("Dial with the old pin: %v, want *HostKeyMismatchError", err)
		}
		if mm.Got != ssh.FingerprintSHA256(newKey) {
			t.Errorf("mismatch names %s, want the new key %s", mm.Got, ssh.FingerprintSHA256(newKey))
		}
		out, err := srv.systemSSH(t, kh.Path(droplet))
		if err == nil || strings.Contains(out, "system-ssh-ok") {
			t.Fatalf("system ssh connected with the old pin:\n%s", out)
		}
		if !strings.Contains(out, "REMOTE HOST IDENTIFICATION HAS CHANGED") && !strings.Contains(out, "Host key verification failed") {
			t.Errorf("system ssh failed for another reason:\n%s", out)
		}
		if after, _ := os.ReadFile(kh.Path(droplet)); !bytes.Equal(after, oldPin) {
			t.Errorf("the system client changed the pinned file")
		}
	})

	t.Run("new pin", func(t *testing.T) {
		if err := kh.Pin(droplet, srv.addr, newKey); err != nil {
			t.Fatal(err)
		}
		c2, err := d.Dial(t.Context(), droplet, srv.addr, 10*time.Second)
		if err != nil {
			t.Fatalf("Dial with the new pin: %v", err)
		}
		defer c2.Close()
		if out, err := c2.Output(t.Context(), "echo new"); err != nil || string(out) != "new\n" {
			t.Errorf("Output %q, %v", out, err)
		}
		if out, err := srv.systemSSH(t, kh.Path(droplet)); err != nil || !strings.Contains(out, "system-ssh-ok") {
			t.Errorf("system ssh with the new pin: %v\n%s", err, out)
		}
		// ed25519 is the only host key offered now.
		if keyscan, err := exec.LookPath("ssh-keyscan"); err == nil {
			out, err := exec.Command(keyscan, "-p", srv.port, "127.0.0.1").Output()
			if err != nil {
				t.Fatalf("ssh-keyscan: %v", err)
			}
			var types []string
			for line := range strings.Lines(string(out)) {
				if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
					types = append(types, f[1])
				}
			}
			if len(types) != 1 || types[0] != ssh.KeyAlgoED25519 {
				t.Errorf("host key types offered: %q, want only %s", types, ssh.KeyAlgoED25519)
			}
		}
	})
}
