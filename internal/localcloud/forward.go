package localcloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

const (
	// forwardDialTimeout is the default bound on connecting to a target.
	forwardDialTimeout = 5 * time.Second
	// forwardDrainGrace is how long a drained connection gets to finish
	// the exchange in flight once the forwarder stops reading from its
	// client; after that it is cut.
	forwardDrainGrace = 500 * time.Millisecond
	// forwardAcceptBackoff is the pause after a failed Accept (EMFILE...).
	forwardAcceptBackoff = 50 * time.Millisecond
)

// Forwarder makes reserved IPs answer: it listens on each reserved IP's
// ports and forwards TCP to the droplet address the IP is assigned to.
// Port N of the reserved IP goes to port N of the target.
//
// A switch between two targets keeps the listeners open and only swaps
// the target, so no connection attempt is refused across a switch. Every
// connection accepted after Set returns goes to the new target.
// Connections already open on the old target are cut at once (reset), as
// on DigitalOcean, where a moved reserved IP's packets reach the new
// droplet, which knows none of the old connections. With a drain (for
// tests of stragglers) they stay on the old target for the drain
// duration instead; then the forwarder stops reading from their clients,
// lets the exchange in flight finish (half-closing towards the old
// target) for up to forwardDrainGrace, and closes them.
type Forwarder struct {
	// Logf gets one line when a target cannot be reached (refused, dial
	// timeout) or Accept fails. nil uses the standard log package. Set it
	// before the first Set.
	Logf func(format string, args ...any)
	// DialTimeout bounds each connection to a target; 0 means 5s. Set it
	// before the first Set.
	DialTimeout time.Duration

	ports []int
	drain time.Duration

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the forwarder starts

	mu     sync.Mutex
	closed bool
	ips    map[string]*fwdIP
}

// fwdIP is one reserved IP. All fields are guarded by Forwarder.mu.
type fwdIP struct {
	ip        string
	target    string         // "" while unassigned
	listeners []net.Listener // nil while unassigned
	conns     map[*fwdConn]struct{}
	ctx       context.Context // cancelled by Remove and Close
	cancel    context.CancelFunc
}

// fwdConn is one forwarded client connection.
type fwdConn struct {
	client  net.Conn
	port    int
	target  string             // fixed at accept time
	drainAt time.Time          // guarded by Forwarder.mu; zero: not draining
	kick    chan struct{}      // cap 1: drainAt changed
	ctx     context.Context    // cancelled to cut the connection
	cancel  context.CancelFunc // cuts the connection
}

// reset cuts the connection at once, as a moved reserved IP does on
// DigitalOcean: the client gets a reset, the old target EOF. Closing
// here, not in handle, means nothing of the old target reaches the
// client once Set has returned.
func (c *fwdConn) reset() {
	if tc, ok := c.client.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.client.Close()
	c.cancel()
}

// NewForwarder returns a Forwarder that listens on ports (e.g. 80, 443) of
// every assigned reserved IP. drain is how long open connections may stay
// on an old target after a switch before being closed; 0 cuts them at
// the switch, as DigitalOcean does.
func NewForwarder(ports []int, drain time.Duration) *Forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	return &Forwarder{
		ports:  append([]int(nil), ports...),
		drain:  drain,
		ctx:    ctx,
		cancel: cancel,
		ips:    make(map[string]*fwdIP),
	}
}

// Set points reservedIP at target ("" = unassigned). Assigning an IP that
// has no listeners starts listeners on reservedIP:port for every port
// before Set returns; if a port cannot be bound, none is kept and the
// error names the address and why. Switching between two targets keeps
// the listeners: every connection accepted after Set returns goes to the
// new target; connections already open on the old one are reset, or with
// a drain finish on the old one and are closed after the drain duration.
// Unassigned, the IP has no listeners, so connections are refused; its
// open connections are cut (or drained) the same way.
// A target whose port refuses is logged, not an error.
func (f *Forwarder) Set(reservedIP, target string) error {
	addr, err := netip.ParseAddr(reservedIP)
	if err != nil {
		return fmt.Errorf("forward: reserved IP %q is not an IP address", reservedIP)
	}
	key := addr.String()
	if target != "" {
		t, err := netip.ParseAddr(target)
		if err != nil {
			return fmt.Errorf("forward: reserved IP %s: target %q is not an IP address", key, target)
		}
		target = t.String()
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("forward: reserved IP %s: %w", key, net.ErrClosed)
	}
	r := f.ips[key]
	if r == nil {
		ctx, cancel := context.WithCancel(f.ctx)
		r = &fwdIP{ip: key, conns: make(map[*fwdConn]struct{}), ctx: ctx, cancel: cancel}
	}
	if target == "" {
		f.closeListeners(r)
	} else if r.listeners == nil {
		ls, err := f.listen(key)
		if err != nil {
			if f.ips[key] == nil {
				r.cancel()
			}
			return err
		}
		r.listeners = ls
		for i, l := range ls {
			f.wg.Add(1)
			go f.acceptLoop(r, l, f.ports[i])
		}
	}
	f.ips[key] = r
	old := r.target
	r.target = target
	if old == target {
		return nil
	}
	if f.drain <= 0 {
		for c := range r.conns {
			if c.target != target {
				c.reset()
			}
		}
		if target != "" {
			f.wg.Add(1)
			go f.probe(key, target)
		}
		return nil
	}
	// Connections on another target drain; ones on this target (switched
	// back within the drain) stop draining.
	drainAt := time.Now().Add(f.drain)
	for c := range r.conns {
		at := drainAt
		if c.target == target {
			at = time.Time{}
		} else if !c.drainAt.IsZero() {
			continue // already draining: keep its earlier deadline
		}
		if !c.drainAt.Equal(at) {
			c.drainAt = at
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
	if target != "" {
		f.wg.Add(1)
		go f.probe(key, target)
	}
	return nil
}

// listen binds ip:port for every port, or none.
func (f *Forwarder) listen(ip string) ([]net.Listener, error) {
	ls := make([]net.Listener, 0, len(f.ports))
	for _, p := range f.ports {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("forward: reserved IP %s: cannot listen on %s: %s: %w", ip, addr, listenReason(err), err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func listenReason(err error) string {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "address already in use (another process or forwarder listens there)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "address not available on this host"
	case errors.Is(err, syscall.EACCES):
		return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
	}
	return "bind failed"
}

// closeListeners stops accepting for r. Called with f.mu held.
func (f *Forwarder) closeListeners(r *fwdIP) {
	for _, l := range r.listeners {
		l.Close()
	}
	r.listeners = nil
}

// Remove stops listening on reservedIP and closes its connections.
// Removing an unknown IP is not an error.
func (f *Forwarder) Remove(reservedIP string) error {
	key := reservedIP
	if addr, err := netip.ParseAddr(reservedIP); err == nil {
		key = addr.String()
	}
	f.mu.Lock()
	r := f.ips[key]
	if r != nil {
		f.closeListeners(r)
		r.target = ""
		delete(f.ips, key)
	}
	f.mu.Unlock()
	if r != nil {
		r.cancel()
	}
	return nil
}

// Targets returns reservedIP -> target for every IP Set and not Removed;
// "" means unassigned.
func (f *Forwarder) Targets() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string]string, len(f.ips))
	for ip, r := range f.ips {
		m[ip] = r.target
	}
	return m
}

// Close stops every listener and connection and waits for all of the
// forwarder's goroutines to end.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for _, r := range f.ips {
		f.closeListeners(r)
	}
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
	return nil
}

func (f *Forwarder) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (f *Forwarder) dialTimeout() time.Duration {
	if f.DialTimeout > 0 {
		return f.DialTimeout
	}
	return forwardDialTimeout
}

// probe logs the ports of a new target that do not accept connections.
func (f *Forwarder) probe(ip, target string) {
	defer f.wg.Done()
	d := net.Dialer{Timeout: f.dialTimeout()}
	for _, p := range f.ports {
		c, err := d.DialContext(f.ctx, "tcp", net.JoinHostPort(target, strconv.Itoa(p)))
		if err != nil {
			if f.ctx.Err() == nil {
				f.logf("forward: reserved IP %s now points at %s, but port %d is not up: %v", ip, target, p, err)
			}
			continue
		}
		c.Close()
	}
}

func (f *Forwarder) acceptLoop(r *fwdIP, l net.Listener, port int) {
	defer f.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.logf("forward: reserved IP %s: accept on port %d: %v", r.ip, port, err)
			select {
			case <-time.After(forwardAcceptBackoff):
			case <-r.ctx.Done():
				return
			}
			continue
		}
		// Reading the target and registering the connection under the
		// lock Set holds makes the switch atomic: a connection is either
		// registered before Set (and drained by it) or sees the new target.
		f.mu.Lock()
		if f.closed || r.target == "" || !r.listening(l) {
			f.mu.Unlock()
			c.Close()
			continue
		}
		ctx, cancel := context.WithCancel(r.ctx)
		fc := &fwdConn{client: c, port: port, target: r.target, kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
		r.conns[fc] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.handle(r, fc)
	}
}

// listening reports whether l is one of r's current listeners (f.mu held).
func (r *fwdIP) listening(l net.Listener) bool {
	for _, x := range r.listeners {
		if x == l {
			return true
		}
	}
	return false
}

// handle forwards one client connection to its target.
func (f *Forwarder) handle(r *fwdIP, fc *fwdConn) {
	defer f.wg.Done()
	defer func() {
		fc.cancel()
		f.mu.Lock()
		delete(r.conns, fc)
		f.mu.Unlock()
	}()
	defer fc.client.Close()

	addr := net.JoinHostPort(fc.target, strconv.Itoa(fc.port))
	d := net.Dialer{Timeout: f.dialTimeout()}
	up, err := d.DialContext(fc.ctx, "tcp", addr)
	if err != nil {
		if fc.ctx.Err() == nil {
			f.logf("forward: reserved IP %s:%d: target %s: %v", r.ip, fc.port, addr, err)
		}
		if tc, ok := fc.client.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: the client sees a failure, not an empty answer
		}
		return
	}
	defer up.Close()

	done := make(chan struct{}, 2)
	f.wg.Add(2)
	go f.pipe(fc, up, fc.client, done)
	go f.pipe(fc, fc.client, up, done)

	var drainT, graceT *time.Timer
	var drainC, graceC <-chan time.Time
	defer func() {
		for _, t := range []*time.Timer{drainT, graceT} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	for pending := 2; pending > 0; {
		select {
		case <-done:
			pending--
		case <-fc.kick:
			if graceC != nil {
				continue // already stopping
			}
			f.mu.Lock()
			at := fc.drainAt
			f.mu.Unlock()
			if drainT != nil {
				drainT.Stop()
				drainT, drainC = nil, nil
			}
			if !at.IsZero() {
				drainT = time.NewTimer(time.Until(at))
				drainC = drainT.C
			}
		case <-drainC:
			// Stop reading from the client; what was read is forwarded
			// and the old target gets EOF, answers what is in flight and
			// closes, which ends the connection cleanly.
			drainC = nil
			fc.client.SetReadDeadline(time.Now())
			graceT = time.NewTimer(forwardDrainGrace)
			graceC = graceT.C
		case <-graceC:
			return
		case <-fc.ctx.Done():
			return
		}
	}
}

// pipe copies src to dst, then half-closes dst. An error other than the
// drain's read deadline cuts the whole connection.
func (f *Forwarder) pipe(fc *fwdConn, dst, src net.Conn, done chan<- struct{}) {
	defer f.wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		fc.cancel()
	} else if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	done <- struct{}{}
}
