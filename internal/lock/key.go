package lock

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"filippo.io/edwards25519"
	"golang.org/x/crypto/ssh"
)

// PublicKey returns the lock key of project: an ssh-ed25519 authorized_keys
// line and its MD5 fingerprint (DigitalOcean's key identifier). It is the
// same on every machine, and nobody has its private key: the point is
// hashed, sha256("fleet-lock:<project>:<n>") for the first n whose 32
// bytes are the canonical encoding of a curve point, so its discrete log
// is unknown. Even a user who ticks it for a droplet lets nobody in.
func PublicKey(project string) (line, fingerprint string, err error) {
	identity := edwards25519.NewIdentityPoint()
	for n := 0; n < 256; n++ { // about half of all encodings decode: 2^-256 to fail
		sum := sha256.Sum256([]byte(prefix + project + ":" + strconv.Itoa(n)))
		p, err := new(edwards25519.Point).SetBytes(sum[:])
		if err != nil || !bytes.Equal(p.Bytes(), sum[:]) {
			continue // not a point, or a non-canonical encoding of one
		}
		if new(edwards25519.Point).MultByCofactor(p).Equal(identity) == 1 {
			continue // small order: signatures would verify for anyone
		}
		pub, err := ssh.NewPublicKey(ed25519.PublicKey(sum[:]))
		if err != nil {
			return "", "", err
		}
		line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + prefix + project
		return line, ssh.FingerprintLegacyMD5(pub), nil
	}
	return "", "", fmt.Errorf("no lock key for project %q", project)
}
