// Package remotetest runs an in-process SSH server for tests, as
// net/http/httptest does for HTTP: a stand-in for a droplet's sshd with
// public key authentication, scripted commands and SFTP on a directory.
//
//	srv := remotetest.NewServer(t, remotetest.Options{Exec: remotetest.Script(
//		remotetest.Rule{Match: remotetest.Runs("sh", "-c", "freeze"), Reply: remotetest.Reply{Code: 1, Stderr: "busy\n"}},
//	)})
//	kh := remote.KnownHosts{Dir: t.TempDir()}
//	kh.Pin("web-1", srv.Addr, srv.HostKey)
//	d := &remote.Dialer{KnownHosts: kh, KeyFiles: []string{srv.ClientKeyFile}}
//	c, err := d.Dial(ctx, "web-1", srv.Addr, 5*time.Second) // "127.0.0.1:port": Dial takes a port
//
// Nothing is executed: each command goes to the Options.Exec handler, and
// is recorded (Server.Commands) with the argv the remote shell would parse
// from it. This package must not import internal/remote, whose own tests
// use it.
package remotetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Options configure a Server. The zero value is a server on 127.0.0.1
// that lets root in with ClientKeyFile and answers every command with
// exit 127.
type Options struct {
	// Exec answers commands; nil answers each with "command not found",
	// exit 127.
	Exec Handler
	// Root is the directory SFTP serves as "/" (it cannot reach outside
	// it); "" is a new temporary directory.
	Root string
	// User is the only user let in; "" is root.
	User string
	// Addr is where Start listens; "" is 127.0.0.1 on a free port.
	Addr string
	// DropFirst closes the first DropFirst connections as soon as they are
	// accepted: EOF during the handshake, as from an sshd still booting.
	DropFirst int
	// HostKey is the key to pin; nil generates an ed25519 key.
	HostKey ssh.Signer
}

// Server is a running (or, from NewUnstartedServer, not yet started) SSH
// server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is "127.0.0.1:port" once started.
	Addr string
	// HostKey is the host key to pin (ed25519 unless Options.HostKey says
	// otherwise).
	HostKey ssh.PublicKey
	// OtherHostKey is an ECDSA host key the server also holds. x/crypto
	// prefers ECDSA, so a client that does not ask for the pinned key's
	// type is shown this one and must refuse it.
	OtherHostKey ssh.PublicKey
	// ClientKeyFile is an unencrypted OpenSSH private key file (0600) the
	// server accepts until Authorize says otherwise.
	ClientKeyFile string
	// Root is the directory SFTP serves as "/".
	Root string

	t       testing.TB
	opts    Options
	cfg     *ssh.ServerConfig // under mu once started
	other   ssh.Signer
	fsRoot  *os.Root
	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	handler Handler
	wg      sync.WaitGroup

	mu         sync.Mutex
	ln         net.Listener
	authorized [][]byte // marshalled client public keys
	conns      int
	open       map[net.Conn]bool
	commands   []*Command
	signals    []string
	closed     bool
}

// NewServer starts a Server; it is closed when the test ends.
func NewServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := NewUnstartedServer(t, opts)
	s.Start()
	return s
}

// NewUnstartedServer makes a Server with its keys, without listening yet:
// a test can pin HostKey before sshd "boots" with Start.
func NewUnstartedServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.User == "" {
		opts.User = "root"
	}
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	s := &Server{t: t, opts: opts, open: map[net.Conn]bool{}, handler: opts.Exec}
	if s.handler == nil {
		s.handler = notFound
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	host := opts.HostKey
	if host == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if host, err = ssh.NewSignerFromKey(priv); err != nil {
			t.Fatal(err)
		}
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewSignerFromKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	s.HostKey, s.OtherHostKey = host.PublicKey(), other.PublicKey()

	// The client key, as `ssh-keygen -t ed25519 -N ''` writes it.
	_, cpriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(cpriv, "")
	if err != nil {
		t.Fatal(err)
	}
	s.ClientKeyFile = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(s.ClientKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cpub, err := ssh.NewPublicKey(cpriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	s.authorized = [][]byte{cpub.Marshal()}

	if s.Root, err = filepath.Abs(opts.Root); err != nil {
		t.Fatal(err)
	}
	if s.fsRoot, err = os.OpenRoot(s.Root); err != nil {
		t.Fatalf("remotetest: SFTP root: %v", err)
	}

	s.other = other
	s.cfg = &ssh.ServerConfig{PublicKeyCallback: s.checkKey}
	s.cfg.AddHostKey(host)
	s.cfg.AddHostKey(other)
	t.Cleanup(s.Close)
	return s
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if meta.User() == s.opts.User {
		for _, k := range s.authorized {
			if bytes.Equal(k, key.Marshal()) {
				return nil, nil
			}
		}
	}
	return nil, fmt.Errorf("key %s not authorized for %s", ssh.FingerprintSHA256(key), meta.User())
}

// Authorize replaces the client keys the server accepts (none: every
// login fails).
func (s *Server) Authorize(keys ...ssh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorized = nil
	for _, k := range keys {
		s.authorized = append(s.authorized, k.Marshal())
	}
}

// SetHostKey makes the server present key (and its ECDSA key) to the
// connections it accepts from now on, as sshd does after a reload with a
// new key; open connections keep the key they saw.
func (s *Server) SetHostKey(key ssh.Signer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := &ssh.ServerConfig{PublicKeyCallback: s.checkKey}
	cfg.AddHostKey(key)
	cfg.AddHostKey(s.other)
	s.cfg = cfg
}

// Start listens on Options.Addr (default 127.0.0.1, a free port) and sets
// Addr. A server starts once.
func (s *Server) Start() {
	s.t.Helper()
	addr := s.opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("remotetest: listen: %v", err)
	}
	s.mu.Lock()
	if s.ln != nil || s.closed {
		s.mu.Unlock()
		ln.Close()
		s.t.Fatal("remotetest: Start on a server started or closed before")
	}
	s.ln = ln
	s.Addr = ln.Addr().String()
	s.mu.Unlock()
	s.wg.Go(func() { s.serve(ln) })
}

// Close stops listening, drops every connection, ends running handlers'
// contexts and waits (a few seconds at most) for them to return.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.open {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.t.Errorf("remotetest: an exec handler still runs 5s after Close: it must return once its ctx ends")
	}
	s.fsRoot.Close()
}

// Conns is the number of TCP connections accepted so far.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Commands is a snapshot of the commands received so far, in order.
func (s *Server) Commands() []Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Command, len(s.commands))
	for i, c := range s.commands {
		out[i] = c.copy()
	}
	return out
}

// Signals are the signals ("TERM") clients sent, in order.
func (s *Server) Signals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.signals...)
}

func (s *Server) serve(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns++
		drop := s.conns <= s.opts.DropFirst
		s.open[nc] = true
		s.mu.Unlock()
		if drop {
			s.forget(nc)
			continue
		}
		s.wg.Go(func() { s.handleConn(nc) })
	}
}

// forget closes nc and stops tracking it.
func (s *Server) forget(nc net.Conn) {
	nc.Close()
	s.mu.Lock()
	delete(s.open, nc)
	s.mu.Unlock()
}

func (s *Server) handleConn(nc net.Conn) {
	defer s.forget(nc)
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // the handshake
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	nc.SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go ssh.DiscardRequests(reqs) // keepalives get a "no", which is an answer
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.handleSession(ctx, nc, ch, creqs) })
	}
}

// session is one SSH session channel: at most one exec or subsystem.
type session struct {
	s      *Server
	nc     net.Conn
	ch     ssh.Channel
	ctx    context.Context
	cancel context.CancelFunc
	env    []string
	cmd    *Command // nil until exec
}

func (s *Server) handleSession(connCtx context.Context, nc net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(connCtx)
	// The client closing the session (Run giving up) ends the command.
	defer cancel()
	ss := &session{s: s, nc: nc, ch: ch, ctx: ctx, cancel: cancel}
	started := false
	for req := range reqs {
		ok := false
		var then func() // after the reply: a command that ends at once must not close the channel before it
		switch req.Type {
		case "env":
			var p struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &p) == nil && !started {
				ss.env = append(ss.env, p.Name+"="+p.Value)
				ok = true
			}
		case "exec":
			var p struct{ Command string }
			if ssh.Unmarshal(req.Payload, &p) == nil && !started {
				started, ok = true, true
				// Recorded before the reply: a client that saw the command
				// start finds it in Commands, even if it gives up at once.
				cmd := ss.record(p.Command)
				then = func() { ss.start(cmd) }
			}
		case "signal":
			var p struct{ Signal string }
			if ssh.Unmarshal(req.Payload, &p) == nil {
				ss.signal(p.Signal)
				ok = true
			}
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) == nil && p.Name == "sftp" && !started {
				started, ok = true, true
				then = func() {
					srv := sftp.NewRequestServer(ch, rootHandlers(s.fsRoot))
					s.wg.Go(func() {
						srv.Serve()
						srv.Close()
						ch.Close()
					})
				}
			}
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if then != nil {
			then()
		}
	}
}

func (ss *session) record(line string) *Command {
	s := ss.s
	cmd := newCommand(line, ss.env)
	s.mu.Lock()
	s.commands = append(s.commands, cmd)
	ss.cmd = cmd
	s.mu.Unlock()
	return cmd
}

func (ss *session) start(cmd *Command) {
	s := ss.s
	x := &Exec{
		Line: cmd.Line, Calls: cmd.Calls, Env: cmd.Env,
		Stdin:  &stdinRecorder{s: s, cmd: cmd, r: ss.ch},
		Stdout: ss.ch, Stderr: ss.ch.Stderr(),
		s: s, cmd: cmd,
	}
	s.wg.Go(func() {
		res := s.handler(ss.ctx, x)
		s.mu.Lock()
		cmd.Result, cmd.Done = res, true
		s.mu.Unlock()
		if res.Drop {
			ss.nc.Close() // no exit status, no EOF: the droplet is gone
			return
		}
		ss.ch.CloseWrite()
		if res.Signal != "" {
			ss.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}{Signal: res.Signal}))
		} else {
			ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(res.Code)}))
		}
		ss.ch.Close()
	})
}

// signal records sig and, like the real process dying of it, ends the
// command's context.
func (ss *session) signal(sig string) {
	s := ss.s
	s.mu.Lock()
	s.signals = append(s.signals, sig)
	if ss.cmd != nil {
		ss.cmd.Signals = append(ss.cmd.Signals, sig)
	}
	s.mu.Unlock()
	ss.cancel()
}
