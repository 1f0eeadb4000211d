package localcloud

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// With MemorySSH.Dir set, each droplet's sshd keeps its "disk" there
// (<Dir>/<id>.json: the machine and its current host key), so that its
// machines outlive the server process as Docker's do: a server restarted
// on the same state and Dir lists them (Lister) and starts their sshd
// with the host key they had. The kill-and-rerun suite restarts servers.

// diskRecord is one droplet's disk.
type diskRecord struct {
	Machine Machine
	HostKey string // OpenSSH PEM of the current host key
}

// maxDiskRecord bounds a record read back.
const maxDiskRecord = 1 << 20

func (m *MemorySSH) recordPath(id int) string {
	return filepath.Join(m.Dir, strconv.Itoa(id)+".json")
}

// save writes d's record (no-op without Dir); status is the machine's.
func (m *MemorySSH) save(id int, d *memSSHD, status string) error {
	if m.Dir == "" {
		return nil
	}
	d.mu.Lock()
	rec := diskRecord{Machine: d.machine, HostKey: d.hostPEM}
	d.mu.Unlock()
	rec.Machine.Status, rec.Machine.UserData = status, ""
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.Dir, 0o700); err != nil {
		return fmt.Errorf("memory sshd disk: %w", err)
	}
	tmp := m.recordPath(id) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("memory sshd disk: %w", err)
	}
	return os.Rename(tmp, m.recordPath(id))
}

func (m *MemorySSH) forget(id int) {
	if m.Dir != "" {
		os.Remove(m.recordPath(id))
	}
}

// list reads every record and starts the sshd of each running machine.
func (m *MemorySSH) list() ([]Machine, error) {
	if m.Dir == "" {
		return nil, nil
	}
	paths, err := filepath.Glob(filepath.Join(m.Dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Machine
	for _, p := range paths {
		rec, err := readDiskRecord(p)
		if err != nil {
			return nil, err
		}
		mach := rec.Machine
		mach.Booted = mach.Status == "active"
		if err := m.adopt(rec); err != nil {
			return nil, err
		}
		out = append(out, mach)
	}
	return out, nil
}

func readDiskRecord(p string) (*diskRecord, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("memory sshd disk: %w", err)
	}
	if len(b) > maxDiskRecord {
		return nil, fmt.Errorf("memory sshd disk: %s is over %d bytes", p, maxDiskRecord)
	}
	var rec diskRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("memory sshd disk: %s: %w", p, err)
	}
	if rec.Machine.ID <= 0 || strings.TrimSpace(rec.HostKey) == "" {
		return nil, fmt.Errorf("memory sshd disk: %s: no machine ID or host key", p)
	}
	return &rec, nil
}

// adopt starts the sshd of a recorded machine with its recorded key.
func (m *MemorySSH) adopt(rec *diskRecord) error {
	host, err := ssh.ParsePrivateKey([]byte(rec.HostKey))
	if err != nil {
		return fmt.Errorf("memory sshd disk: droplet %d: %w", rec.Machine.ID, err)
	}
	d := newMemSSHDWith(rec.Machine, host, rec.HostKey)
	id := rec.Machine.ID
	d.onSwap = func() { m.save(id, d, "active") }
	m.mu.Lock()
	if old := m.sshds[rec.Machine.ID]; old != nil {
		old.stop()
	}
	m.sshds[rec.Machine.ID] = d
	m.mu.Unlock()
	if rec.Machine.Status != "active" {
		return nil
	}
	return d.start(m.addr(rec.Machine), nil)
}

// DiskMemoryBackend is MemoryBackend whose machines outlive the server
// (MemorySSH.Dir): a Lister.
type DiskMemoryBackend struct{ MemoryBackend }

// List lists the recorded machines and starts their sshd.
func (b DiskMemoryBackend) List(context.Context) ([]Machine, error) { return b.SSH.list() }

// marshalHostKey is the OpenSSH PEM of an ed25519 host key's private half.
func marshalHostKey(priv any) (string, error) {
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(block)), nil
}
