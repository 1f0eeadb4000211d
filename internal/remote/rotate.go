package remote

import (
	"bytes"
	"context"
	"fmt"
	"strings"

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
// over this already-verified session. This connection stays up; the caller
// pins the new key and dials again.
func (c *Client) RotateHostKey(ctx context.Context) (ssh.PublicKey, error) {
	out, err := c.Output(ctx, rotateScript(hostKeyDir, reloadSSHD))
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
	return key, nil
}

// rotateScript is the shell script RotateHostKey runs. ssh-keygen will not
// overwrite a key without asking, hence the rm first; sshd keeps serving the
// keys it loaded until the reload.
func rotateScript(dir, reload string) string {
	key := ShellQuote(dir + "/ssh_host_ed25519_key")
	var others []string
	for _, t := range []string{"rsa", "ecdsa", "dsa"} {
		k := ShellQuote(dir + "/ssh_host_" + t + "_key")
		others = append(others, k, k+".pub")
	}
	return fmt.Sprintf(`set -e
rm -f %[1]s %[1]s.pub
ssh-keygen -q -t ed25519 -N '' -f %[1]s
rm -f %[2]s
{ %[3]s; } >&2
cat %[1]s.pub
`, key, strings.Join(others, " "), reload)
}

// shellQuote quotes s for a POSIX shell.
// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
