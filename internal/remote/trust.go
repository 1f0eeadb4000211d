package remote

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
)

// hostKeyEncoding spells a host key's SHA-256 in the characters a
// DigitalOcean tag allows.
var hostKeyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// HostKeyID is the lowercase unpadded base32 of the SHA-256 of key's wire
// form (52 characters): how the cloud records a droplet's host key.
func HostKeyID(key ssh.PublicKey) string {
	sum := sha256.Sum256(key.Marshal())
	return hostKeyEncoding.EncodeToString(sum[:])
}

// fingerprintOfID turns a HostKeyID back into OpenSSH's SHA256:… form, for
// messages; an ID that does not decode is shown as it is.
func fingerprintOfID(id string) string {
	sum, err := hostKeyEncoding.DecodeString(id)
	if err != nil || len(sum) != sha256.Size {
		return id
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum)
}

// verifier decides which host keys a dial accepts, and what to do once
// the handshake verified one.
type verifier struct {
	callback ssh.HostKeyCallback
	algos    []string
	verified func(addr string, key ssh.PublicKey) // may be nil
}

// recordedVerifier accepts a key iff its HostKeyID is among recorded
// (read from the cloud); the known_hosts file is only a cache, rewritten
// after each verified handshake and never consulted.
func (d *Dialer) recordedVerifier(droplet string, recorded []string) verifier {
	cb := func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		if slices.Contains(recorded, HostKeyID(key)) {
			return nil
		}
		want := make([]string, len(recorded))
		for i, id := range recorded {
			want[i] = fingerprintOfID(id)
		}
		return &HostKeyMismatchError{Droplet: droplet, Addr: hostname, Want: strings.Join(want, " or "), Got: ssh.FingerprintSHA256(key), Recorded: true}
	}
	cache := func(addr string, key ssh.PublicKey) {
		if err := d.KnownHosts.Pin(droplet, addr, key); err != nil {
			d.logf("caching the verified host key of %s: %v", droplet, err)
		}
	}
	// fleet's host keys are ed25519 (generated, then rotated): asking for
	// that type keeps the server from offering another key first.
	return verifier{callback: cb, algos: []string{ssh.KeyAlgoED25519}, verified: cache}
}

// pinVerifier accepts only the key pinned in known_hosts: droplets made
// before host keys were recorded in the cloud, and tests.
func (d *Dialer) pinVerifier(droplet string, unrecorded bool) (verifier, error) {
	cb, algos, err := d.KnownHosts.load(droplet)
	var np *NoPinnedKeyError
	if errors.As(err, &np) {
		np.Unrecorded = unrecorded
	}
	if err != nil {
		return verifier{}, err
	}
	return verifier{callback: cb, algos: algos}, nil
}

// errUnrecorded explains a refusal for a droplet with no recorded key.
func errUnrecorded(e *NoPinnedKeyError) string {
	return fmt.Sprintf("%s has no host key recorded in the cloud (no fleet-hostkey: tag: it was made by an older fleet) and none pinned in %s; "+
		"fleet never trusts a host key on first use: replace the droplet with `fleet up`, or run this from the machine that made it", e.Droplet, e.Path)
}
