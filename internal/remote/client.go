package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Client is a verified SSH connection to one droplet.
type Client struct {
	droplet string
	addr    string
	conn    *ssh.Client
	hostKey ssh.PublicKey
	logf    func(string, ...any)
	traffic *countingConn // nil: not counted

	mu     sync.Mutex
	sftp   *sftp.Client
	closed bool
	stop   chan struct{}
}

// Keepalives: a connection that answers none for keepaliveTimeout is closed,
// so a command on a droplet that vanished fails instead of hanging.
var (
	keepaliveInterval = 30 * time.Second
	keepaliveTimeout  = 90 * time.Second
)

// stderrTail is how much of a command's stderr an ExitError keeps.
const stderrTail = 4096

// cancelGrace is how long Run waits for a cancelled session to wind down.
const cancelGrace = 5 * time.Second

func newClient(conn *ssh.Client, droplet, addr string, hostKey ssh.PublicKey, logf func(string, ...any)) *Client {
	c := &Client{droplet: droplet, addr: addr, conn: conn, hostKey: hostKey, logf: logf, stop: make(chan struct{})}
	go c.keepalive()
	return c
}

func (c *Client) keepalive() {
	t := time.NewTicker(keepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		select {
		case <-c.stop:
			return
		case err := <-replied:
			if err != nil {
				return // connection gone; callers see the error
			}
		case <-time.After(keepaliveTimeout):
			c.printf("ssh %s: no keepalive reply for %s; closing the connection", c.addr, keepaliveTimeout)
			c.conn.Close()
			return
		}
	}
}

func (c *Client) printf(format string, args ...any) {
	if c.logf != nil {
		c.logf(format, args...)
	}
}

// Droplet is the name of the droplet c is connected to.
func (c *Client) Droplet() string { return c.droplet }

// HostKey is the (pinned) host key the droplet presented.
func (c *Client) HostKey() ssh.PublicKey { return c.hostKey }

// Traffic returns the bytes sent to and received from the droplet over
// this connection so far: everything on the TCP connection, from the SSH
// handshake on (framing, MACs, window adjustments, keepalives), not just
// command payloads. It keeps answering after Close.
func (c *Client) Traffic() (sent, received int64) {
	if c.traffic == nil {
		return 0, 0
	}
	return c.traffic.sent.Load(), c.traffic.received.Load()
}

// ExitError is returned by Run when a command exits with a non-zero status
// or is killed by a signal. Stderr is the tail of its stderr (at most the
// last 4 KiB, from a line start); when Run's stderr is a Redactor from
// NewRedactor (or a writer leading to one through Unwrap() io.Writer
// methods), its secrets are redacted before the tail is cut.
type ExitError struct {
	Cmd    string
	Code   int    // exit status; -1 when killed by a signal
	Signal string // e.g. "TERM", when killed by a signal
	Stderr string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	if e.Signal != "" {
		fmt.Fprintf(&b, "remote command %q killed by signal %s", shortCmd(e.Cmd), e.Signal)
	} else {
		fmt.Fprintf(&b, "remote command %q exited with status %d", shortCmd(e.Cmd), e.Code)
	}
	if tail := lastLines(e.Stderr, 5); tail != "" {
		b.WriteString(":\n")
		b.WriteString(indent(tail))
	}
	return b.String()
}

// Run runs cmd on the droplet through the session (the remote user's shell
// interprets it). stdin, stdout and stderr may be nil. Secrets belong in
// stdin, never in cmd. A non-zero exit is an *ExitError; cancelling ctx
// sends SIGTERM and closes the session.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		return fmt.Errorf("ssh %s: open session: %w", c.addr, err)
	}
	defer sess.Close()

	// The tail is cut from redacted output: cut first, a multi-line secret
	// would lose the lines that make it recognisable.
	tail := &tailWriter{max: stderrTail}
	var tailIn io.Writer = tail
	var tailRedactor *redactor
	if rd := redactorIn(stderr); rd != nil && len(rd.secrets) > 0 {
		tailRedactor = newRedactor(tail, rd.secrets)
		tailIn = tailRedactor
	}
	sess.Stdin = stdin
	sess.Stdout = stdout
	if stderr != nil {
		sess.Stderr = io.MultiWriter(tailIn, stderr)
	} else {
		sess.Stderr = tailIn
	}
	if err := sess.Start(cmd); err != nil {
		return fmt.Errorf("ssh %s: start %q: %w", c.addr, shortCmd(cmd), err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		sess.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return fmt.Errorf("ssh %s: %q: %w", c.addr, shortCmd(cmd), ctx.Err())
	}
	if err == nil || errors.Is(err, io.EOF) {
		// io.EOF can only come from copying stdin: the command exited
		// successfully without reading all of it.
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		if tailRedactor != nil {
			tailRedactor.Flush() // Wait returned: the stderr copy is over
		}
		x := &ExitError{Cmd: cmd, Code: ee.ExitStatus(), Signal: ee.Signal(), Stderr: tail.String()}
		if x.Signal != "" {
			x.Code = -1
		}
		return x
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("ssh %s: %q ended without an exit status (connection lost?)", c.addr, shortCmd(cmd))
	}
	return fmt.Errorf("ssh %s: %q: %w", c.addr, shortCmd(cmd), err)
}

// Output runs cmd and returns its stdout. On an *ExitError the stdout
// produced so far is returned too.
func (c *Client) Output(ctx context.Context, cmd string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, cmd, nil, &out, nil)
	return out.Bytes(), err
}

// SFTP returns the connection's SFTP client, opening it on first use. It is
// closed with the Client.
func (c *Client) SFTP() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("ssh %s: %w", c.addr, net.ErrClosed)
	}
	if c.sftp == nil {
		s, err := sftp.NewClient(c.conn)
		if err != nil {
			return nil, fmt.Errorf("ssh %s: start sftp: %w", c.addr, err)
		}
		c.sftp = s
	}
	return c.sftp, nil
}

// WriteFile writes r to the absolute remote path p with the given mode,
// creating parent directories as needed. The content goes to a temporary
// file in the same directory whose mode is set before any byte is written,
// and is then renamed over p, so p is never seen half-written nor with wider
// permissions than mode.
func (c *Client) WriteFile(ctx context.Context, p string, mode os.FileMode, r io.Reader) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("write %s: remote path must be absolute", p)
	}
	p = path.Clean(p)
	fs, err := c.SFTP()
	if err != nil {
		return err
	}
	dir, base := path.Dir(p), path.Base(p)
	if err := fs.MkdirAll(dir); err != nil {
		return fmt.Errorf("ssh %s: mkdir %s: %w", c.addr, dir, err)
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := path.Join(dir, "."+base+".fleet-tmp-"+hex.EncodeToString(rnd[:]))

	f, err := fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("ssh %s: create %s: %w", c.addr, tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			fs.Remove(tmp)
		}
	}()
	// The file is empty until here, so this is the first moment it could hold
	// anything; SFTP's open cannot carry the mode itself.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("ssh %s: chmod %s: %w", c.addr, tmp, err)
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("ssh %s: write %s: %w", c.addr, p, err)
	}
	if err := f.Sync(); err != nil && !unsupported(err) {
		return fmt.Errorf("ssh %s: sync %s: %w", c.addr, p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ssh %s: write %s: %w", c.addr, p, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = fs.PosixRename(tmp, p)
	if unsupported(err) {
		err = fs.Rename(tmp, p) // plain SFTP rename; fails if p exists
	}
	if err != nil {
		return fmt.Errorf("ssh %s: rename %s to %s: %w", c.addr, tmp, p, err)
	}
	ok = true
	return nil
}

func unsupported(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.FxCode() == sftp.ErrSSHFxOpUnsupported
}

// Close closes the SFTP client, if any, and the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	s := c.sftp
	c.mu.Unlock()

	close(c.stop)
	if s != nil {
		s.Close()
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// ctxReader stops a copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	if r.r == nil {
		return 0, io.EOF
	}
	return r.r.Read(p)
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max       int
	buf       []byte
	truncated bool
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.truncated = t.truncated || len(p) > t.max || len(t.buf) > 0
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.truncated = true
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// String is the tail, starting at a line start if it was cut, so no
// message starts with half a line.
func (t *tailWriter) String() string {
	s := string(t.buf)
	if t.truncated {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return s[i+1:]
		}
		return ""
	}
	return s
}

// redactorIn finds the Redactor from NewRedactor that w is, or that w
// passes its output to: a wrapper (a filter in front of a Redactor) makes
// it known with an Unwrap() io.Writer method.
func redactorIn(w io.Writer) *redactor {
	for range 16 { // a bound, against a cycle of wrappers
		switch x := w.(type) {
		case *redactor:
			return x
		case interface{ Unwrap() io.Writer }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// shortCmd is cmd's first line, cut to a length that fits in a message.
func shortCmd(cmd string) string {
	const max = 80
	cmd = strings.TrimSpace(cmd)
	first, _, multi := strings.Cut(cmd, "\n")
	if len(first) > max {
		return first[:max] + "…"
	}
	if multi {
		return first + " …"
	}
	return first
}

// lastLines is the last n non-blank lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var kept []string
	for i := len(lines) - 1; i >= 0 && len(kept) < n; i-- {
		if strings.TrimSpace(lines[i]) != "" {
			kept = append(kept, lines[i])
		}
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	return strings.Join(kept, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
