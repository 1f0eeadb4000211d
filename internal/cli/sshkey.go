package cli

import (
	"errors"
	"strings"

	"golang.org/x/crypto/ssh"
)

// sshKeyEnv holds a private key for CI runners, which have no key file
// and no agent: the deploy key from the CI's secret store.
const sshKeyEnv = "FLEET_SSH_KEY"

// maxEnvKey bounds FLEET_SSH_KEY: an RSA-16384 key in PEM is ~12 KiB.
const maxEnvKey = 16 << 10

// envSigner parses FLEET_SSH_KEY (OpenSSH or PEM private key text). It
// returns nil when the variable is unset or blank. Its errors never
// quote the value: x/crypto's messages are replaced by fleet's own.
func envSigner(getenv func(string) string) (ssh.Signer, error) {
	v := getenv(sshKeyEnv)
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	if len(v) > maxEnvKey {
		return nil, &ConfigError{Msg: sshKeyEnv + ": too long for an SSH private key (over 16 KiB)"}
	}
	// Secret stores and Windows editors may add CRLFs or surrounding blanks.
	v = strings.TrimSpace(strings.ReplaceAll(v, "\r\n", "\n")) + "\n"
	s, err := ssh.ParsePrivateKey([]byte(v))
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, &ConfigError{Msg: sshKeyEnv + ": the key is encrypted with a passphrase; give fleet an unencrypted key (fleet init makes one: keys/deploy)"}
	case err != nil:
		hint := ""
		if !strings.Contains(v, "-----BEGIN ") {
			hint = " (no -----BEGIN line: set it to the whole private key file, e.g. keys/deploy, newlines included)"
		}
		return nil, &ConfigError{Msg: sshKeyEnv + ": not an SSH private key fleet can read" + hint}
	}
	return s, nil
}
