package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/spec"
	"golang.org/x/crypto/ssh"
)

func TestEnvSigner(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	openssh := string(pem.EncodeToMemory(block))
	encBlock, err := ssh.MarshalPrivateKeyWithPassphrase(edPriv, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaPriv)}))
	edPub, _ := ssh.NewPublicKey(edPriv.Public())

	const secret = "hunter2-s3cr3t-value"
	for _, tc := range []struct {
		name    string
		value   string
		want    ssh.PublicKey // nil: no signer
		wantErr string        // substring of the ConfigError
	}{
		{name: "unset", value: ""},
		{name: "blank", value: " \n"},
		{name: "openssh", value: openssh, want: edPub},
		{name: "openssh with CRLF and blanks", value: "\n  " + strings.ReplaceAll(openssh, "\n", "\r\n") + "\r\n", want: edPub},
		{name: "rsa pem", value: rsaPEM},
		{name: "not a key", value: secret, wantErr: "no -----BEGIN line"},
		{name: "broken key", value: "-----BEGIN OPENSSH PRIVATE KEY-----\n" + secret + "\n-----END OPENSSH PRIVATE KEY-----\n", wantErr: "not an SSH private key"},
		{name: "public key", value: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + secret, wantErr: "not an SSH private key"},
		{name: "encrypted", value: string(pem.EncodeToMemory(encBlock)), wantErr: "passphrase"},
		{name: "too long", value: strings.Repeat(secret, 1000), wantErr: "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := envSigner(func(k string) string {
				if k == sshKeyEnv {
					return tc.value
				}
				return ""
			})
			if tc.wantErr != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v (%T), want *ConfigError", err, err)
				}
				if !strings.Contains(err.Error(), sshKeyEnv) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q: want it to name %s and say %q", err, sshKeyEnv, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q quotes the variable's value", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("envSigner: %v", err)
			}
			if tc.value == "" || strings.TrimSpace(tc.value) == "" {
				if s != nil {
					t.Fatal("a signer from an unset variable")
				}
				return
			}
			if s == nil {
				t.Fatal("no signer")
			}
			if tc.want != nil && string(s.PublicKey().Marshal()) != string(tc.want.Marshal()) {
				t.Errorf("signer %s, want %s", ssh.FingerprintSHA256(s.PublicKey()), ssh.FingerprintSHA256(tc.want))
			}
		})
	}
}

// TestRemoteEnvKey: Factory.Remote hands FLEET_SSH_KEY to the dialer, and a
// malformed one fails before anything is dialled.
func TestRemoteEnvKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, _ := ssh.MarshalPrivateKey(priv, "")
	pub, _ := ssh.NewPublicKey(priv.Public())
	for _, tc := range []struct {
		name    string
		key     string
		signers int
		wantErr bool
	}{
		{name: "none", key: ""},
		{name: "valid", key: string(pem.EncodeToMemory(block)), signers: 1},
		{name: "malformed", key: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"FLEET_HOME": t.TempDir(), sshKeyEnv: tc.key}
			f := &Factory{IOStreams: &IOStreams{Out: &strings.Builder{}, ErrOut: &strings.Builder{}}, Getenv: func(k string) string { return env[k] }}
			f.spec = &spec.Spec{Project: "hello"}
			r, err := f.Remote()
			if tc.wantErr {
				var ce *ConfigError
				if !errors.As(err, &ce) {
					t.Fatalf("Remote: %v (%T), want *ConfigError", err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Remote: %v", err)
			}
			if got := len(r.Dialer.Signers); got != tc.signers {
				t.Fatalf("%d signers, want %d", got, tc.signers)
			}
			if tc.signers == 1 && string(r.Dialer.Signers[0].PublicKey().Marshal()) != string(pub.Marshal()) {
				t.Error("the dialer's signer is not FLEET_SSH_KEY's key")
			}
		})
	}
}
