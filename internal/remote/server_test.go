package remote

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// fakeServer is a stand-in for a droplet's sshd: public key auth for root,
// exec with a tiny command set, stdin, signals, and the sftp subsystem
// serving the local file system.
type fakeServer struct {
	t         *testing.T
	hostKey   ssh.Signer // ed25519, the one tests pin
	otherKey  ssh.Signer // ecdsa, also offered: x/crypto prefers ECDSA, so a client not asking for the pinned type would get this one
	clientKey ssh.Signer
	cfg       *ssh.ServerConfig

	// dropFirst closes that many connections right after accepting them: EOF
	// during the handshake, as from an sshd that is not up yet.
	dropFirst int

	cloudInitCode int    // exit status of `cloud-init status --wait --format json`
	cloudInitJSON string // its stdout
	cloudInitHang bool   // it never returns (until signalled)
	cloudInitLog  string // output of the tail of the cloud-init log
	rotatedKey    string // output of the host key rotation script
	failStderr    string // stderr of `fail`, written in small chunks

	mu       sync.Mutex
	addr     string
	conns    int
	commands []string
	signals  []string
	open     []net.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{t: t, hostKey: newSigner(t), clientKey: newSigner(t)}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.otherKey, err = ssh.NewSignerFromKey(ek); err != nil {
		t.Fatal(err)
	}
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == "root" && bytes.Equal(key.Marshal(), s.clientKey.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, fmt.Errorf("key %s not authorized for %s", ssh.FingerprintSHA256(key), meta.User())
		},
	}
	s.cfg.AddHostKey(s.hostKey)
	s.cfg.AddHostKey(s.otherKey)
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.open {
			c.Close()
		}
	})
	return s
}

// start listens on 127.0.0.1 at a free port.
func (s *fakeServer) start() string {
	return s.listen("127.0.0.1:0")
}

// listen serves on addr and returns the address it listens on.
func (s *fakeServer) listen(addr string) string {
	s.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("listen: %v", err)
	}
	s.t.Cleanup(func() { ln.Close() })
	s.mu.Lock()
	s.addr = ln.Addr().String()
	s.mu.Unlock()
	go s.serve(ln)
	return ln.Addr().String()
}

func (s *fakeServer) serve(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		drop := s.conns <= s.dropFirst
		s.open = append(s.open, nc)
		s.mu.Unlock()
		if drop {
			nc.Close()
			continue
		}
		go s.handleConn(nc)
	}
}

func (s *fakeServer) handleConn(nc net.Conn) {
	_, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		nc.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		go s.handleSession(ch, creqs)
	}
}

func (s *fakeServer) handleSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	killed := make(chan struct{})
	var once sync.Once
	kill := func() { once.Do(func() { close(killed) }) }
	defer kill()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.mu.Lock()
			s.commands = append(s.commands, p.Command)
			s.mu.Unlock()
			go func() {
				code := s.exec(ch, p.Command, killed)
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				ch.Close()
			}()
		case "signal":
			var p struct{ Signal string }
			ssh.Unmarshal(req.Payload, &p)
			s.mu.Lock()
			s.signals = append(s.signals, p.Signal)
			s.mu.Unlock()
			kill()
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
				req.Reply(false, nil)
				continue
			}
			srv, err := sftp.NewServer(ch)
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			go func() {
				srv.Serve()
				ch.Close()
			}()
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// exec runs one fake command and returns its exit status.
func (s *fakeServer) exec(ch ssh.Channel, cmd string, killed <-chan struct{}) int {
	name, arg, _ := strings.Cut(cmd, " ")
	switch {
	case name == "echo":
		fmt.Fprintln(ch, arg)
		return 0
	case name == "cat":
		io.Copy(ch, ch)
		return 0
	case name == "exit":
		code, _ := strconv.Atoi(arg)
		fmt.Fprintf(ch.Stderr(), "line one\nfailing with %d\n", code)
		return code
	case name == "fail":
		for b := s.failStderr; b != ""; {
			n := min(len(b), 61)
			io.WriteString(ch.Stderr(), b[:n])
			b = b[n:]
		}
		return 1
	case name == "sleep":
		select {
		case <-killed:
			return 143
		case <-time.After(10 * time.Second):
			return 0
		}
	case cmd == cloudInitStatusCmd:
		if s.cloudInitHang {
			select {
			case <-killed:
				return 143
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(ch, s.cloudInitJSON)
		return s.cloudInitCode
	case cmd == fmt.Sprintf("tail -n %d %s", cloudInitLogLines, cloudInitLog):
		io.WriteString(ch, s.cloudInitLog)
		return 0
	case strings.Contains(cmd, "ssh-keygen"):
		io.WriteString(ch, s.rotatedKey)
		return 0
	}
	fmt.Fprintf(ch.Stderr(), "fake: %s: command not found\n", name)
	return 127
}

func (s *fakeServer) stats() (conns int, commands, signals []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, append([]string(nil), s.commands...), append([]string(nil), s.signals...)
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeKey writes an OpenSSH private key file for a new ed25519 key, and
// returns its path and signer.
func writeKey(t *testing.T, passphrase string) (string, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer
}

// fixture is a fake droplet "web-1" with its host key pinned, and a Dialer
// holding a key it accepts.
type fixture struct {
	srv     *fakeServer
	addr    string
	droplet string
	dialer  *Dialer
	logs    *logRecorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := newFakeServer(t)
	keyFile, signer := writeKey(t, "")
	srv.clientKey = signer
	logs := &logRecorder{t: t}
	f := &fixture{
		srv:     srv,
		droplet: "web-1",
		logs:    logs,
		dialer: &Dialer{
			KnownHosts: KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")},
			KeyFiles:   []string{keyFile},
			Logf:       logs.Logf,
		},
	}
	return f
}

// up starts the server and pins its key.
func (f *fixture) up(t *testing.T) {
	t.Helper()
	f.addr = f.srv.start()
	if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, f.srv.hostKey.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

// connect starts the server, pins its key and dials it.
func (f *fixture) connect(t *testing.T) *Client {
	t.Helper()
	f.up(t)
	c, err := f.dialer.Dial(t.Context(), f.droplet, f.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type logRecorder struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.t.Logf(format, args...)
}

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// freePort returns an address on 127.0.0.1 nothing listens on (for now).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
