package localcloud

import (
	"context"
	"time"
)

// Machine is what a Backend is asked to boot for a droplet.
type Machine struct {
	ID         int
	Name       string
	Region     string
	Size       string
	Image      string   // image slug (or numeric id as a string)
	UserData   string   // cloud-init user data, as sent by the client
	SSHKeys    []string // authorized_keys lines of the requested keys
	PublicIPv4 string   // address the server allocated; shown once active
	Tags       []string // tags at creation time
	Booted     bool     // in List results: the machine runs
	// Holds delays units of the guest's boot (keys HoldCloudInit and
	// HoldSSHD): the unit waits that long before it starts (FaultHold).
	Holds map[string]time.Duration
	// VendorFail makes the guest's vendor-data fail (FaultVendorFail).
	VendorFail bool
}

// Backend runs the machines behind the API. The server keeps all API state
// (droplets, actions, tags, addresses); a Backend only makes it real.
type Backend interface {
	// Boot returns once the machine runs (its init is up), not once it is
	// ready: as on DigitalOcean, sshd and cloud-init take their time after
	// the droplet is "active". The droplet stays "new" (and its create
	// action in progress) until Boot returns; an error makes the create
	// action "errored". ctx is cancelled when the droplet is deleted or
	// the server is closed.
	Boot(ctx context.Context, m Machine) error
	// Destroy removes the machine of a deleted droplet.
	Destroy(ctx context.Context, id int) error
	// Route points reservedIP at dropletIPv4; "" means unassigned.
	Route(ctx context.Context, reservedIP, dropletIPv4 string) error
}

// Lister is implemented by backends whose machines outlive the server
// process (Docker). On start the server reconciles its saved state with
// List, which reads the backend's own records (Docker labels): they are the
// truth for which droplets exist.
type Lister interface {
	List(ctx context.Context) ([]Machine, error)
}

// AddressChecker is implemented by backends whose addresses are shared
// with whatever else runs on the machine (Docker: another local cloud, a
// host service). The server skips addresses it reports taken.
type AddressChecker interface {
	AddressTaken(ip string) bool
}

// MemoryBackend boots nothing: Boot just waits BootDelay.
type MemoryBackend struct {
	BootDelay time.Duration
}

// Boot waits BootDelay or until ctx is done.
func (b MemoryBackend) Boot(ctx context.Context, _ Machine) error {
	if b.BootDelay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(b.BootDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Destroy does nothing.
func (MemoryBackend) Destroy(context.Context, int) error { return nil }

// Route does nothing.
func (MemoryBackend) Route(context.Context, string, string) error { return nil }
