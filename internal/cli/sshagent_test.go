package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// The agent that carries FLEET_SSH_KEY to the system ssh lists and signs
// with it, refuses everything else, and leaves nothing behind.
func TestSignerAgent(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	sock, stop, err := serveAgent([]ssh.Signer{signer})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("agent dir: %v %v, want 0700", fi.Mode(), err)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := agent.NewClient(conn)
	keys, err := c.List()
	if err != nil || len(keys) != 1 || string(keys[0].Marshal()) != string(signer.PublicKey().Marshal()) {
		t.Fatalf("List: %v %v", keys, err)
	}
	data := []byte("session id")
	sig, err := c.Sign(signer.PublicKey(), data)
	if err != nil {
		t.Fatal(err)
	}
	if err := signer.PublicKey().Verify(data, sig); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	if _, err := c.Sign(otherSigner.PublicKey(), data); err == nil {
		t.Error("signed with a key it does not hold")
	}
	if err := c.Add(agent.AddedKey{PrivateKey: other}); err == nil {
		t.Error("Add accepted")
	}
	if err := c.RemoveAll(); err == nil {
		t.Error("RemoveAll accepted")
	}
	conn.Close()
	stop()
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Errorf("agent dir left behind: %v", err)
	}
}

// The system ssh never sees fleet's credentials in its environment.
func TestSSHEnvDropsSecrets(t *testing.T) {
	t.Setenv("FLEET_SSH_KEY", "-----BEGIN OPENSSH PRIVATE KEY-----")
	t.Setenv("DIGITALOCEAN_TOKEN", "dop_v1_secret")
	t.Setenv("FLEET_E2E_KEEP_ME", "1")
	env := strings.Join(sshEnv(), "\n")
	if strings.Contains(env, "FLEET_SSH_KEY=") || strings.Contains(env, "dop_v1_secret") {
		t.Errorf("secrets in ssh's environment:\n%s", env)
	}
	if !strings.Contains(env, "FLEET_E2E_KEEP_ME=1") {
		t.Error("other variables dropped")
	}
}
