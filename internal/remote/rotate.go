package remote

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Where RotateHostKey works, and how it makes sshd pick up the new key;
// variables so the e2e test can point them at a throwaway sshd.
var (
	hostKeyDir = "/etc/ssh"
	reloadSSHD = `systemctl reload ssh || systemctl reload sshd || service ssh reload || kill -HUP "$(cat /run/sshd.pid)"`
)

// RotateHostKey replaces the droplet's host keys with a freshly generated
// ed25519 key (the pinned one came through user_data, which the metadata
// service keeps serving), removes the RSA/ECDSA/DSA keys so ed25519 is the
// only one offered, reloads sshd, and returns the new public key, read back
// over this already-verified session.
//
// It is atomic for the caller's pins: the new key is made aside first and
// handed to pin together with the current one, and only then swapped in.
// Killed at any point, the droplet presents a key the caller pinned. Once
// a new connection has seen the new key, the caller narrows the pin to it.
// This connection stays up.
func (c *Client) RotateHostKey(ctx context.Context, pin func(keys ...ssh.PublicKey) error) (ssh.PublicKey, error) {
	sctx, cancel := context.WithTimeout(ctx, rotateStepTimeout)
	defer cancel()
	out, err := c.Output(sctx, stageScript(hostKeyDir))
	if err != nil {
		return nil, fmt.Errorf("rotate host key on %s: %w", c.droplet, err)
	}
	var key ssh.PublicKey
	for line := range strings.Lines(string(out)) {
		if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line)); err == nil {
			key = k
		}
	}
	switch {
	case key == nil:
		return nil, fmt.Errorf("rotate host key on %s: no public key in the output: %q", c.droplet, shortCmd(string(out)))
	case key.Type() != ssh.KeyAlgoED25519:
		return nil, fmt.Errorf("rotate host key on %s: got a %s key, want %s", c.droplet, key.Type(), ssh.KeyAlgoED25519)
	case c.hostKey != nil && bytes.Equal(key.Marshal(), c.hostKey.Marshal()):
		return nil, fmt.Errorf("rotate host key on %s: the host key did not change", c.droplet)
	}
	keys := []ssh.PublicKey{key}
	if c.hostKey != nil {
		keys = append([]ssh.PublicKey{c.hostKey}, key)
	}
	if err := pin(keys...); err != nil {
		return nil, fmt.Errorf("rotate host key on %s: pinning the current and the next key: %w", c.droplet, err)
	}
	wctx, cancel := context.WithTimeout(ctx, rotateStepTimeout)
	defer cancel()
	if _, err := c.Output(wctx, swapScript(hostKeyDir, reloadSSHD)); err != nil {
		return nil, fmt.Errorf("rotate host key on %s: %w", c.droplet, err)
	}
	return key, nil
}

// rotateStepTimeout bounds each rotation command: a hung ssh-keygen or
// sshd reload keeps the session alive, so keepalives would not end it.
const rotateStepTimeout = 2 * time.Minute

// stageScript makes the next host key beside the current one and prints
// its public half. ssh-keygen will not overwrite a key without asking,
// hence the rm of a leftover from an interrupted rotation.
func stageScript(dir string) string {
	next := ShellQuote(dir + "/ssh_host_ed25519_key.fleet-next")
	return fmt.Sprintf(`set -e
rm -f %[1]s %[1]s.pub
ssh-keygen -q -t ed25519 -N '' -f %[1]s
cat %[1]s.pub
`, next)
}

// swapScript moves the staged key over the current one, removes the other
// key types and reloads sshd; sshd serves the keys it loaded until then.
func swapScript(dir, reload string) string {
	key := ShellQuote(dir + "/ssh_host_ed25519_key")
	next := ShellQuote(dir + "/ssh_host_ed25519_key.fleet-next")
	var others []string
	for _, t := range []string{"rsa", "ecdsa", "dsa"} {
		k := ShellQuote(dir + "/ssh_host_" + t + "_key")
		others = append(others, k, k+".pub")
	}
	return fmt.Sprintf(`set -e
[ -f %[2]s ] || { echo "no staged host key %[2]s" >&2; exit 1; }
mv -f %[2]s.pub %[1]s.pub
mv -f %[2]s %[1]s
rm -f %[3]s
{ %[4]s; } >&2
`, key, next, strings.Join(others, " "), reload)
}

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
