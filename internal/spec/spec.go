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
}

// Droplet is the shape of every droplet the project creates.
type Droplet struct {
	Region    string
	Size      string
	Image     string
	SSHKeys   []SSHKey
	Tags      []string // extra tags the operator wants on every droplet
	CloudInit string   // path of the cloud-init template, resolved against Spec.Dir
}

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
}

// DefaultTimeouts apply where the spec leaves a timeout out.
var DefaultTimeouts = Timeouts{Create: 5 * time.Minute, Active: 5 * time.Minute, Assign: 2 * time.Minute, SSH: 10 * time.Minute}
