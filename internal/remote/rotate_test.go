package remote

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestRotateHostKey(t *testing.T) {
	newKey := newSigner(t).PublicKey()
	for _, tc := range []struct {
		name    string
		output  func(f *fixture) string
		wantErr string
	}{
		{name: "new ed25519 key", output: func(*fixture) string {
			return string(ssh.MarshalAuthorizedKey(newKey))
		}},
		{name: "unchanged key", output: func(f *fixture) string {
			return string(ssh.MarshalAuthorizedKey(f.srv.HostKey))
		}, wantErr: "did not change"},
		{name: "not ed25519", output: func(f *fixture) string {
			return string(ssh.MarshalAuthorizedKey(f.srv.OtherHostKey))
		}, wantErr: "want ssh-ed25519"},
		{name: "no key", output: func(*fixture) string { return "" }, wantErr: "no public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.fake.rotatedKey = tc.output(f)
			c := f.connect(t)
			var pinned []ssh.PublicKey
			key, err := c.RotateHostKey(t.Context(), func(keys ...ssh.PublicKey) error {
				pinned = keys
				return nil
			})
			if tc.wantErr != "" {
				if f.fake.swapped != 0 || pinned != nil {
					t.Errorf("a refused rotation pinned %d keys and swapped %d times", len(pinned), f.fake.swapped)
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("RotateHostKey: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("RotateHostKey: %v", err)
			}
			if !bytes.Equal(key.Marshal(), newKey.Marshal()) {
				t.Errorf("got key %s, want %s", ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(newKey))
			}
			// The current and the next key were pinned before the swap.
			if len(pinned) != 2 || !bytes.Equal(pinned[0].Marshal(), f.srv.HostKey.Marshal()) || !bytes.Equal(pinned[1].Marshal(), newKey.Marshal()) {
				t.Errorf("pinned %d keys before the swap, want the current and the next", len(pinned))
			}
			if f.fake.swapped != 1 {
				t.Errorf("swap ran %d times, want 1", f.fake.swapped)
			}
			cmds := f.srv.Commands()
			stage, script := cmds[len(cmds)-2].Line, cmds[len(cmds)-1].Line
			for _, s := range []string{
				"rm -f '/etc/ssh/ssh_host_ed25519_key.fleet-next' '/etc/ssh/ssh_host_ed25519_key.fleet-next'.pub\n",
				"ssh-keygen -q -t ed25519 -N '' -f '/etc/ssh/ssh_host_ed25519_key.fleet-next'\n",
			} {
				if !strings.Contains(stage, s) {
					t.Errorf("staging script lacks %q:\n%s", s, stage)
				}
			}
			for _, s := range []string{
				"mv -f '/etc/ssh/ssh_host_ed25519_key.fleet-next' '/etc/ssh/ssh_host_ed25519_key'\n",
				"'/etc/ssh/ssh_host_rsa_key' '/etc/ssh/ssh_host_rsa_key'.pub",
				"'/etc/ssh/ssh_host_ecdsa_key' '/etc/ssh/ssh_host_ecdsa_key'.pub",
				"systemctl reload ssh || ",
				`kill -HUP "$(cat /run/sshd.pid)"`,
			} {
				if !strings.Contains(script, s) {
					t.Errorf("rotation script lacks %q:\n%s", s, script)
				}
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/ssh":    "'/etc/ssh'",
		"it's":        `'it'\''s'`,
		"$(rm -rf /)": "'$(rm -rf /)'",
		"":            "''",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
