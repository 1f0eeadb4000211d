package localcloud

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// MemorySSH gives the memory backend's droplets an sshd, so that fleet's
// readiness gate runs against them as against a real droplet: each droplet
// listens on its own address (127.0.0.N) at Port, presents the host key of
// its user_data's ssh_keys (cloud-init's), lets in the keys it was created
// with, and answers what fleet asks a fresh droplet as its shell would:
// `cloud-init status` (done, after a hold=cloud-init fault; failed with
// vendor-fail), the host key rotation, `true`. Nothing else runs: any
// other command exits 127, as on a droplet without that program.
type MemorySSH struct {
	// Port is where every droplet's sshd listens (not 22: tests run
	// unprivileged and side by side). fleet reads it from FLEET_SSH_PORT.
	Port int
	// Dir, if set, keeps each droplet's disk (memssh_disk.go).
	Dir string

	reserve net.Listener // holds Port on 127.0.0.1 against other MemorySSHs
	mu      sync.Mutex
	sshds   map[int]*memSSHD // by droplet ID; kept while powered off
}

// NewMemorySSH picks a free port; Close releases it.
func NewMemorySSH() (*MemorySSH, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("memory sshd: %w", err)
	}
	return &MemorySSH{Port: ln.Addr().(*net.TCPAddr).Port, reserve: ln, sshds: map[int]*memSSHD{}}, nil
}

// Close stops every droplet's sshd.
func (m *MemorySSH) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, d := range m.sshds {
		d.stop()
		delete(m.sshds, id)
	}
	m.reserve.Close()
}

// boot starts the sshd of mach (again, after a power-off, with the host
// key it had).
func (m *MemorySSH) boot(mach Machine) error {
	m.mu.Lock()
	d := m.sshds[mach.ID]
	if d == nil {
		var err error
		if d, err = newMemSSHD(mach); err != nil {
			m.mu.Unlock()
			return err
		}
		m.sshds[mach.ID] = d
	}
	m.mu.Unlock()
	d.stop()
	d.onSwap = func() { m.save(mach.ID, d, "active") }
	if err := d.start(m.addr(mach), mach.Holds); err != nil {
		return err
	}
	return m.save(mach.ID, d, "active")
}

func (m *MemorySSH) addr(mach Machine) string {
	return net.JoinHostPort(mach.PublicIPv4, strconv.Itoa(m.Port))
}

// powerOff stops the sshd of droplet id; destroy forgets it too.
func (m *MemorySSH) powerOff(id int) {
	m.mu.Lock()
	d := m.sshds[id]
	m.mu.Unlock()
	if d != nil {
		d.stop()
		m.save(id, d, "off")
	}
}

func (m *MemorySSH) destroy(id int) {
	m.mu.Lock()
	d := m.sshds[id]
	delete(m.sshds, id)
	m.mu.Unlock()
	if d != nil {
		d.stop()
	}
	m.forget(id)
}

// memSSHD is one droplet's sshd and the state its commands change.
type memSSHD struct {
	name       string
	machine    Machine
	authorized map[string]bool // marshalled client keys
	vendorFail bool
	onSwap     func() // after a host key swap (saves the disk)

	mu       sync.Mutex
	host     ssh.Signer
	hostPEM  string
	next     ssh.Signer // staged by the rotation
	nextPEM  string
	done     time.Time // cloud-init finishes
	ln       net.Listener
	conns    map[net.Conn]bool
	stopping chan struct{}
}

func newMemSSHD(mach Machine) (*memSSHD, error) {
	pemText, err := userDataHostKey(mach.UserData)
	var host ssh.Signer
	if err == nil {
		host, err = ssh.ParsePrivateKey([]byte(pemText))
	}
	if err != nil {
		return nil, fmt.Errorf("memory sshd of %s: host key: %w", mach.Name, err)
	}
	return newMemSSHDWith(mach, host, pemText), nil
}

func newMemSSHDWith(mach Machine, host ssh.Signer, hostPEM string) *memSSHD {
	mach.UserData, mach.Holds = "", nil
	d := &memSSHD{name: mach.Name, machine: mach, authorized: map[string]bool{}, vendorFail: mach.VendorFail, host: host, hostPEM: hostPEM}
	for _, line := range mach.SSHKeys {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			d.authorized[string(k.Marshal())] = true
		}
	}
	return d
}

// userDataHostKey is the ed25519 host key (OpenSSH PEM) user_data's
// ssh_keys gives cloud-init, or a new one (cloud-init generates keys
// when given none).
func userDataHostKey(userData string) (string, error) {
	var doc struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if yaml.Unmarshal([]byte(userData), &doc) == nil && doc.SSHKeys["ed25519_private"] != "" {
		return doc.SSHKeys["ed25519_private"], nil
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	return marshalHostKey(priv)
}

// start listens on addr once the sshd hold is over, in the background, as
// a booting droplet does.
func (d *memSSHD) start(addr string, holds map[string]time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns, d.stopping = map[net.Conn]bool{}, make(chan struct{})
	if d.done.IsZero() {
		d.done = time.Now().Add(holds[HoldCloudInit])
	}
	stopping := d.stopping
	listen := func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return // the droplet is unreachable, as one whose sshd failed
		}
		d.mu.Lock()
		if isClosed(stopping) {
			d.mu.Unlock()
			ln.Close()
			return
		}
		d.ln = ln
		d.mu.Unlock()
		d.serve(ln)
	}
	if hold := holds[HoldSSHD]; hold > 0 {
		go func() {
			select {
			case <-time.After(hold):
				listen()
			case <-stopping:
			}
		}()
		return nil
	}
	// Listen now, so a port in use is an error of the boot.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("memory sshd of %s: %w", d.name, err)
	}
	d.ln = ln
	go d.serve(ln)
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stop closes the listener and every connection.
func (d *memSSHD) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping != nil && !isClosed(d.stopping) {
		close(d.stopping)
	}
	if d.ln != nil {
		d.ln.Close()
		d.ln = nil
	}
	for c := range d.conns {
		c.Close()
	}
	d.conns = map[net.Conn]bool{}
}

func (d *memSSHD) serve(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		d.conns[nc] = true
		d.mu.Unlock()
		go d.handleConn(nc)
	}
}

func (d *memSSHD) config() *ssh.ServerConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if meta.User() == "root" && d.authorized[string(key.Marshal())] {
			return nil, nil
		}
		return nil, errors.New("key not authorized")
	}}
	cfg.AddHostKey(d.host)
	return cfg
}

func (d *memSSHD) handleConn(nc net.Conn) {
	defer func() {
		nc.Close()
		d.mu.Lock()
		delete(d.conns, nc)
		d.mu.Unlock()
	}()
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // the handshake
	conn, chans, reqs, err := ssh.NewServerConn(nc, d.config())
	if err != nil {
		return
	}
	defer conn.Close()
	nc.SetDeadline(time.Time{})
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
		go d.session(ch, creqs)
	}
}
