package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/crypto/ssh"
)

// testDeployKey is the deploy key of every test project, made once per
// test process (never in git): fleet up logs in to each droplet it makes,
// and a re-run from another directory must too.
var testDeployKey = sync.OnceValues(func() ([2][]byte, error) {
	pk, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return [2][]byte{}, err
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return [2][]byte{}, err
	}
	sp, err := ssh.NewPublicKey(pk)
	if err != nil {
		return [2][]byte{}, err
	}
	return [2][]byte{pem.EncodeToMemory(block), ssh.MarshalAuthorizedKey(sp)}, nil
})

// deployKey writes testDeployKey as dir/deploy and dir/deploy.pub, unless
// dir/deploy exists (a script brought its own).
func deployKey(dir string) error {
	priv := filepath.Join(dir, "deploy")
	if _, err := os.Stat(priv); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pair, err := testDeployKey()
	if err != nil {
		return err
	}
	key, pub := pair[0], pair[1]
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(priv, key, 0o600); err != nil {
		return err
	}
	return os.WriteFile(priv+".pub", pub, 0o644)
}
