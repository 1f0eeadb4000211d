package remote

import (
	"context"
	"crypto/ed25519"
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

	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"golang.org/x/crypto/ssh"
)

// fakeDroplet answers the commands these tests send: a tiny command set,
// cloud-init's status and log, and the host key rotation script. Set its
// fields before the server starts.
type fakeDroplet struct {
	cloudInitCode int    // exit status of `cloud-init status --wait --format json`
	cloudInitJSON string // its stdout
	cloudInitHang bool   // it never returns (until signalled)
	cloudInitLog  string // output of the tail of the cloud-init log
	rotatedKey    string // output of the host key staging script
	swapped       int    // how often the swap script ran
	failStderr    string // stderr of `fail`, written in small chunks
}

func (d *fakeDroplet) exec(ctx context.Context, x *remotetest.Exec) remotetest.Result {
	cmd := x.Line
	name, arg, _ := strings.Cut(cmd, " ")
	hang := func() remotetest.Result {
		select {
		case <-ctx.Done():
			return remotetest.Result{Code: 143}
		case <-time.After(10 * time.Second):
			return remotetest.Result{}
		}
	}
	switch {
	case name == "echo":
		fmt.Fprintln(x.Stdout, arg)
	case name == "cat":
		io.Copy(x.Stdout, x.Stdin)
	case name == "exit":
		code, _ := strconv.Atoi(arg)
		fmt.Fprintf(x.Stderr, "line one\nfailing with %d\n", code)
		return remotetest.Result{Code: code}
	case name == "fail":
		for b := d.failStderr; b != ""; {
			n := min(len(b), 61)
			io.WriteString(x.Stderr, b[:n])
			b = b[n:]
		}
		return remotetest.Result{Code: 1}
	case name == "sleep":
		return hang()
	case cmd == cloudInitStatusCmd:
		if d.cloudInitHang {
			if r := hang(); r.Code != 0 {
				return r
			}
		}
		io.WriteString(x.Stdout, d.cloudInitJSON)
		return remotetest.Result{Code: d.cloudInitCode}
	case cmd == fmt.Sprintf("tail -n %d %s", cloudInitLogLines, cloudInitLog):
		io.WriteString(x.Stdout, d.cloudInitLog)
	case strings.Contains(cmd, "ssh-keygen"):
		io.WriteString(x.Stdout, d.rotatedKey)
	case strings.Contains(cmd, "fleet-next") && strings.Contains(cmd, "mv -f"):
		d.swapped++
	default:
		fmt.Fprintf(x.Stderr, "fake: %s: command not found\n", name)
		return remotetest.Result{Code: 127}
	}
	return remotetest.Result{}
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

// fixture is a fake droplet "web-1" (not started until up), and a Dialer
// holding a key it accepts.
type fixture struct {
	srv     *remotetest.Server
	fake    *fakeDroplet
	addr    string
	droplet string
	dialer  *Dialer
	logs    *logRecorder
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, remotetest.Options{}) }

func newFixtureWith(t *testing.T, opts remotetest.Options) *fixture {
	t.Helper()
	fake := &fakeDroplet{}
	opts.Exec = fake.exec
	srv := remotetest.NewUnstartedServer(t, opts)
	logs := &logRecorder{t: t}
	return &fixture{
		srv:     srv,
		fake:    fake,
		droplet: "web-1",
		logs:    logs,
		dialer: &Dialer{
			KnownHosts: KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")},
			KeyFiles:   []string{srv.ClientKeyFile},
			Logf:       logs.Logf,
		},
	}
}

// up starts the server and pins its key.
func (f *fixture) up(t *testing.T) {
	t.Helper()
	f.srv.Start()
	f.addr = f.srv.Addr
	if err := f.dialer.KnownHosts.Pin(f.droplet, f.addr, f.srv.HostKey); err != nil {
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
