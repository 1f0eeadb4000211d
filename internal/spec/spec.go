// Package spec reads and validates droplets.yaml, the versioned droplet spec.
package spec

import "time"

// Spec is a decoded, validated droplets.yaml.
type Spec struct {
	Path string // the file it was read from, as given
	Dir  string // directory of Path; relative paths in the spec resolve against it

	Project    string // slug: droplets are named <project>-<version>-<suffix>
	Provider   string // "digitalocean" or "local"
	Droplet    Droplet
	ReservedIP string // "auto" or a literal IPv4 address
	Keep       int    // previous droplets kept for rollback
	Timeouts   Timeouts
	Stack      *Stack // nil: a provision-only deploy
	// Health is the readiness gate's HTTP check: top-level health: or
	// stack.health (nil: none; Stack.Health mirrors it).
	Health *Health
}

// Droplet is the shape of every droplet the project creates.
type Droplet struct {
	Region string
	Size   string
	// Image is a DigitalOcean image slug, ImageBake (the newest bake of
	// the current template, see BaseImage), or the name of a snapshot of
	// the account. A slug and a snapshot name look alike: `fleet up`
	// asks the API which one it is.
	Image string
	// BaseImage is the slug `fleet image bake` starts from: droplet.base_image,
	// else Image when it is not ImageBake, else DefaultBaseImage.
	BaseImage string
	SSHKeys   []SSHKey
	Tags      []string // extra tags the operator wants on every droplet
	CloudInit string   // path of the cloud-init template, resolved against Spec.Dir

	// DigitalOcean's droplet options; nil or "" leaves the option out of
	// the create request, so DigitalOcean's default applies.
	Monitoring *bool  // install DigitalOcean's metrics agent (from vendor-data, before user_data)
	IPv6       *bool  // a public IPv6 address
	Backups    *bool  // weekly backups (billed extra)
	VPCUUID    string // the VPC to join; "": the region's default VPC
}

// ImageBake as droplet.image makes `fleet up` create droplets from the
// newest snapshot `fleet image bake` made of the current cloud-init
// template and base image, baking one first when there is none.
const ImageBake = "bake"

// DefaultBaseImage is what a bake starts from when droplet.image is bake
// and droplet.base_image is not set.
const DefaultBaseImage = "debian-13-x64"

// MaxImageNameLen bounds a snapshot name (DigitalOcean's image names are
// at most 255 characters).
const MaxImageNameLen = 255

// SSHKey is one entry of droplet.ssh_keys: an MD5 fingerprint already on
// the account, or a public key file (then PublicKey holds its single
// authorized_keys line and Fingerprint is computed from it).
type SSHKey struct {
	Fingerprint string // MD5, lowercase "aa:bb:...", as DigitalOcean shows it
	File        string // the key file, resolved (~ expanded, relative to Spec.Dir); "" for a fingerprint
	PublicKey   string // "<type> <base64> [comment]"; "" for a fingerprint
	Name        string // comment of the key file, or the file's base name; "" for a fingerprint
}

// Timeouts bound each wait of a deploy.
type Timeouts struct {
	Create time.Duration // the create action completes
	Active time.Duration // status becomes active and a public IPv4 appears
	Assign time.Duration // a reserved IP assignment completes
	SSH    time.Duration // sshd answers and cloud-init finishes (stack deploys)
	// Snapshot bounds a bake's snapshot action (DigitalOcean takes minutes
	// per GB of disk).
	Snapshot time.Duration
}

// DefaultTimeouts apply where the spec leaves a timeout out.
var DefaultTimeouts = Timeouts{Create: 5 * time.Minute, Active: 5 * time.Minute, Assign: 2 * time.Minute, SSH: 10 * time.Minute, Snapshot: 30 * time.Minute}
