package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// deployKey writes a fresh ed25519 key pair as dir/deploy and
// dir/deploy.pub, unless dir/deploy exists (a script brought its own).
func deployKey(dir string) error {
	priv := filepath.Join(dir, "deploy")
	if _, err := os.Stat(priv); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(block), 0o600); err != nil {
		return err
	}
	return os.WriteFile(priv+".pub", ssh.MarshalAuthorizedKey(sp), 0o644)
}
