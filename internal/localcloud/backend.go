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
	// PrivateIPv4 is the droplet's address in its region's default VPC
	// (privateIPFor). In List results: the backend's record ("" if it has
	// none, as for a machine made before VPCs were modelled).
	PrivateIPv4 string
	Tags        []string // tags at creation time
	Booted      bool     // in List results: the machine runs
	// SnapshotID, if not 0, is the snapshot image the machine is made
	// from (a Snapshotter's Image.ID); Image is then that id as a string.
	// 0: the distribution image named by Image.
	SnapshotID int
	// Status, in List results, is "active" (running) or "off" (stopped);
	// "" says nothing.
	Status string
	// Holds delays units of the guest's boot (keys HoldCloudInit and
	// HoldSSHD): the unit waits that long before it starts (FaultHold).
	Holds map[string]time.Duration
	// Monitoring is the create request's monitoring: the vendor-data
	// installs (a stand-in for) DigitalOcean's metrics agent.
	Monitoring bool
	// VendorFail makes that install fail (FaultVendorFail), and so
	// cloud-init; without Monitoring there is no install to fail.
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

// Powerer is implemented by backends that can stop and start a machine
// (droplet actions power_off, shutdown, power_on, reboot). Each returns
// once the machine is off, or runs again (not once it is ready).
type Powerer interface {
	// PowerOff stops machine id: graceful is a shutdown (the guest is asked
	// to stop, and cut off after a while), otherwise the power is cut.
	// Stopping a stopped machine is not an error.
	PowerOff(ctx context.Context, id int, graceful bool) error
	// PowerOn starts the stopped machine m.
	PowerOn(ctx context.Context, m Machine) error
	// Reboot stops m gracefully and starts it again (starts it if off).
	Reboot(ctx context.Context, m Machine) error
}

// Renamer is implemented by backends whose machines carry their droplet's
// name (Docker: the container name), so that a renamed droplet's old name
// is free again.
type Renamer interface {
	Rename(ctx context.Context, id int, name string) error
}

// Image is a snapshot image as a Snapshotter keeps it.
type Image struct {
	ID            int // unique among all images the backend holds
	Name          string
	Distribution  string // DigitalOcean's distribution name, e.g. "Debian"
	Regions       []string
	Created       time.Time
	MinDiskSize   int     // GB: the disk of the droplet it was taken from
	SizeGigabytes float64 // the bytes it holds, in GB (10^9)
	DropletID     int     // the droplet it was taken from
}

// Snapshotter is implemented by backends that can image a machine's disk.
// Snapshot returns once the image is complete: until then (and if it
// fails, or is interrupted) Images must not list it. Images lists every
// complete image the backend holds; a backend whose images outlive the
// server (it is also a Lister) is the truth about them, and may hold images
// other servers made.
type Snapshotter interface {
	Snapshot(ctx context.Context, id int, img Image) error
	// DeleteImage removes an image and whatever a failed Snapshot of it
	// left; removing what is gone is not an error.
	DeleteImage(ctx context.Context, imageID int) error
	Images(ctx context.Context) ([]Image, error)
}

// ImageChecker is implemented by backends that can boot only some of the
// catalogue's distribution images: CheckImage returns why slug cannot be
// booted, or nil.
type ImageChecker interface {
	CheckImage(slug string) error
}

// MemoryBackend boots nothing: Boot just waits BootDelay, and, with SSH,
// starts the droplet's in-process sshd.
type MemoryBackend struct {
	BootDelay time.Duration
	SSH       *MemorySSH // nil: droplets have no sshd
}

// Boot waits BootDelay or until ctx is done.
func (b MemoryBackend) Boot(ctx context.Context, m Machine) error {
	if b.BootDelay > 0 {
		t := time.NewTimer(b.BootDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil || b.SSH == nil {
		return err
	}
	return b.SSH.boot(m)
}

// Destroy stops the droplet's sshd, if any.
func (b MemoryBackend) Destroy(_ context.Context, id int) error {
	if b.SSH != nil {
		b.SSH.destroy(id)
	}
	return nil
}

// Route does nothing.
func (MemoryBackend) Route(context.Context, string, string) error { return nil }

// PowerOff stops the droplet's sshd, if any.
func (b MemoryBackend) PowerOff(ctx context.Context, id int, _ bool) error {
	if b.SSH != nil {
		b.SSH.powerOff(id)
	}
	return ctx.Err()
}

// PowerOn waits BootDelay, as Boot.
func (b MemoryBackend) PowerOn(ctx context.Context, m Machine) error { return b.Boot(ctx, m) }

// Reboot waits BootDelay, as Boot.
func (b MemoryBackend) Reboot(ctx context.Context, m Machine) error { return b.Boot(ctx, m) }

// Snapshot does nothing: the server's state holds the images.
func (MemoryBackend) Snapshot(ctx context.Context, _ int, _ Image) error { return ctx.Err() }

// DeleteImage does nothing.
func (MemoryBackend) DeleteImage(context.Context, int) error { return nil }

// Images lists nothing: the server's state holds the images (a
// MemoryBackend is not a Lister, so the server does not reconcile them).
func (MemoryBackend) Images(context.Context) ([]Image, error) { return nil, nil }
