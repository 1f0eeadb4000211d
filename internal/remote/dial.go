package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Dialer connects to droplets, verifying each against its pinned host key.
type Dialer struct {
	KnownHosts KnownHosts
	KeyFiles   []string // private key files (unencrypted; use the agent for encrypted keys)
	Agent      bool     // also use the agent at $SSH_AUTH_SOCK, if set
	User       string   // default root
	Port       int      // sshd's port where an address names none (0: 22)
	Logf       func(string, ...any)

	// Signers are keys already in memory (FLEET_SSH_KEY in CI), offered
	// before the key files and the agent's.
	Signers []ssh.Signer
}

// Backoff between attempts while sshd boots, and the time one attempt
// (TCP connect and SSH handshake) may take.
const (
	backoffStart = 250 * time.Millisecond
	backoffMax   = 2 * time.Second
	attemptMin   = 2 * time.Second
	attemptMax   = 15 * time.Second
)

// AuthError is returned when the droplet rejects every key fleet offered.
// It is never retried.
type AuthError struct {
	User string
	Addr string
	Keys []string // SHA256 fingerprints of the keys offered
	Err  error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("ssh %s@%s: authentication failed: the server accepted none of the %d key(s) offered (%s): %v",
		e.User, e.Addr, len(e.Keys), strings.Join(e.Keys, ", "), e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Dial connects to droplet at addr ("IP", meaning port 22, or "IP:port") as
// d.User, verifying it against the key pinned in known_hosts. While sshd is
// booting (connection refused or reset, EOF during the handshake, timeouts)
// it retries with backoff until wait has passed or ctx ends. A host key that
// is not the pinned one, a missing pin and an authentication failure fail
// at once.
func (d *Dialer) Dial(ctx context.Context, droplet, addr string, wait time.Duration) (*Client, error) {
	v, err := d.pinVerifier(droplet, false)
	if err != nil {
		return nil, err
	}
	return d.dial(ctx, droplet, addr, wait, v)
}

// DialRecorded is Dial for a droplet whose host keys the cloud records
// (HostKeyIDs, from its fleet-hostkey: tags): a key is accepted iff it is
// among recorded, whatever known_hosts holds, and known_hosts is then
// rewritten with it (a cache, for OpenSSH). With nothing recorded (a
// droplet made by an older fleet) only the local pin is trusted.
func (d *Dialer) DialRecorded(ctx context.Context, droplet, addr string, wait time.Duration, recorded []string) (*Client, error) {
	if len(recorded) == 0 {
		v, err := d.pinVerifier(droplet, true)
		if err != nil {
			return nil, err
		}
		return d.dial(ctx, droplet, addr, wait, v)
	}
	if err := checkDroplet(droplet); err != nil {
		return nil, err
	}
	return d.dial(ctx, droplet, addr, wait, d.recordedVerifier(droplet, recorded))
}

func (d *Dialer) dial(ctx context.Context, droplet, addr string, wait time.Duration, v verifier) (*Client, error) {
	hostport := withPort(addr, d.Port)
	hostKeyCallback, algos := v.callback, v.algos
	signers, closeAgent, err := d.signers()
	if err != nil {
		return nil, err
	}
	defer closeAgent()

	user := d.User
	if user == "" {
		user = "root"
	}
	var fingerprints []string
	for _, s := range signers {
		fingerprints = append(fingerprints, ssh.FingerprintSHA256(s.PublicKey()))
	}

	deadline := time.Now().Add(wait)
	backoff := backoffStart
	for attempt := 1; ; attempt++ {
		var hostKey ssh.PublicKey
		var hostKeyErr error
		cfg := &ssh.ClientConfig{
			User: user,
			Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)},
			HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
				if err := hostKeyCallback(hostname, remote, key); err != nil {
					hostKeyErr = err
					return err
				}
				hostKey = key
				return nil
			},
			HostKeyAlgorithms: algos,
		}
		conn, counted, err := dialOnce(ctx, hostport, cfg, deadline)
		if err == nil {
			if v.verified != nil {
				v.verified(hostport, hostKey)
			}
			c := newClient(conn, droplet, hostport, hostKey, d.Logf)
			c.traffic = counted
			return c, nil
		}
		if hostKeyErr != nil {
			return nil, hostKeyErr
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s: %w (last error: %v)", hostport, ctx.Err(), err)
		}
		if isAuthFailure(err) {
			return nil, &AuthError{User: user, Addr: hostport, Keys: fingerprints, Err: err}
		}
		if !retryable(err) {
			return nil, fmt.Errorf("ssh %s: %w", hostport, err)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return nil, fmt.Errorf("ssh %s: timed out after %s waiting for sshd (%d attempts); last error: %w",
				hostport, wait, attempt, err)
		}
		sleep := min(backoff, remaining)
		d.logf("ssh %s: not ready (%v); retrying in %s", hostport, err, sleep)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("ssh %s: %w (last error: %v)", hostport, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, backoffMax)
	}
}

// dialOnce makes one TCP connection and SSH handshake. The attempt is
// bounded by a deadline on the connection, so a stalled attempt fails with a
// (retryable) timeout; cancelling ctx closes the connection. The connection
// is counted from its first byte (countingConn).
func dialOnce(ctx context.Context, hostport string, cfg *ssh.ClientConfig, deadline time.Time) (*ssh.Client, *countingConn, error) {
	budget := min(max(time.Until(deadline), attemptMin), attemptMax)
	var nd net.Dialer
	dctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	raw, err := nd.DialContext(dctx, "tcp", hostport)
	if err != nil {
		return nil, nil, err
	}
	conn := &countingConn{Conn: raw}
	if err := conn.SetDeadline(time.Now().Add(budget)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sconn, chans, reqs, err := ssh.NewClientConn(conn, hostport, cfg)
	if !stop() {
		// ctx ended during the handshake and closed the connection.
		if err == nil {
			sconn.Close()
		}
		return nil, nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		sconn.Close()
		return nil, nil, err
	}
	return ssh.NewClient(sconn, chans, reqs), conn, nil
}

// countingConn counts the bytes written to and read from a connection:
// all of SSH's, version lines, key exchange, packet framing, padding and
// MACs included, which is what crosses the link.
type countingConn struct {
	net.Conn
	sent, received atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// retryable reports whether err is what a droplet whose sshd is still
// booting looks like.
func retryable(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.EPIPE,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isAuthFailure recognises x/crypto/ssh's authentication errors, which have
// no type of their own.
func isAuthFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unable to authenticate") ||
		strings.Contains(s, "Too many authentication failures")
}

// withPort adds port (0: 22) to an address without one.
func withPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), strconv.Itoa(port))
}

// CheckKeys fails when Dial would have no key to offer (unreadable key
// files, no agent), so a command can say so before it creates anything.
func (d *Dialer) CheckKeys() error {
	_, closeAgent, err := d.signers()
	if err == nil {
		closeAgent()
	}
	return err
}

// signers gathers d.Signers, the key files and, if asked for, the agent's
// keys, in that order and without duplicates. The
// returned func closes the agent connection; agent keys sign through it, so
// it must stay open until the handshake is over.
func (d *Dialer) signers() ([]ssh.Signer, func(), error) {
	var signers []ssh.Signer
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		k := string(s.PublicKey().Marshal())
		if !seen[k] {
			seen[k] = true
			signers = append(signers, s)
		}
	}
	for _, s := range d.Signers {
		add(s)
	}
	for _, f := range d.KeyFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("read SSH private key: %w", err)
		}
		s, err := ssh.ParsePrivateKey(data)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, nil, fmt.Errorf("SSH private key %s is encrypted with a passphrase, and fleet does not prompt for passphrases: "+
				"add it to ssh-agent (ssh-add %s) and use the agent instead", f, f)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("SSH private key %s: %w", f, err)
		}
		add(s)
	}
	closeAgent := func() {}
	var agentErr error
	if sock := os.Getenv("SSH_AUTH_SOCK"); d.Agent && sock != "" {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			closeAgent = func() { conn.Close() }
			var as []ssh.Signer
			as, err = agent.NewClient(conn).Signers()
			for _, s := range as {
				add(s)
			}
		}
		if err != nil {
			agentErr = fmt.Errorf("ssh-agent at %s: %w", sock, err)
			d.logf("%v", agentErr)
		}
	}
	if len(signers) == 0 {
		closeAgent()
		msg := "no SSH keys to authenticate with: configure a private key file or load a key into ssh-agent"
		if agentErr != nil {
			return nil, nil, fmt.Errorf("%s (%v)", msg, agentErr)
		}
		return nil, nil, errors.New(msg)
	}
	return signers, closeAgent, nil
}

func (d *Dialer) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}
