package cloudinit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

func TestNewHostKey(t *testing.T) {
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.PrivatePEM, "-----BEGIN OPENSSH PRIVATE KEY-----\n") || !strings.HasSuffix(k.PrivatePEM, "-----END OPENSSH PRIVATE KEY-----\n") {
		t.Errorf("PrivatePEM is not an OpenSSH private key:\n%s", k.PrivatePEM)
	}
	signer, err := ssh.ParsePrivateKey([]byte(k.PrivatePEM))
	if err != nil {
		t.Fatalf("ParsePrivateKey: %v", err)
	}
	if got := signer.PublicKey().Marshal(); string(got) != string(k.Public.Marshal()) {
		t.Errorf("the private key's public half is not Public")
	}
	if k.Public.Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s, want %s", k.Public.Type(), ssh.KeyAlgoED25519)
	}
	pub, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(k.AuthorizedLine))
	if err != nil || comment != "" || len(rest) != 0 || string(pub.Marshal()) != string(k.Public.Marshal()) {
		t.Errorf("AuthorizedLine %q: %v %q %q", k.AuthorizedLine, err, comment, rest)
	}
	if strings.ContainsAny(k.AuthorizedLine, "\r\n") || !strings.HasPrefix(k.AuthorizedLine, "ssh-ed25519 AAAA") {
		t.Errorf("AuthorizedLine = %q", k.AuthorizedLine)
	}
	k2, err := NewHostKey()
	if err != nil || k2.AuthorizedLine == k.AuthorizedLine {
		t.Errorf("two host keys are the same: %v", err)
	}
}

// decodeConfig decodes rendered user_data into plain values.
func decodeConfig(t *testing.T, out []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatalf("rendered user_data: %v\n%s", err, out)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// injected is what Render adds for k.
func injected(k *HostKey) map[string]any {
	return map[string]any{
		"ssh_keys":             map[string]any{"ed25519_private": k.PrivatePEM, "ed25519_public": k.AuthorizedLine},
		"ssh_deletekeys":       true,
		"ssh_genkeytypes":      []any{"ed25519"},
		"ssh_publish_hostkeys": map[string]any{"enabled": false},
	}
}

func TestRenderHostKey(t *testing.T) {
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	long := "echo " + strings.Repeat("word ", 40)
	for _, tc := range []struct{ name, template string }{
		{"header only", "#cloud-config\n"},
		{"header without newline", "#cloud-config"},
		{"header with CRLF", "#cloud-config\r\nruncmd: [a]\r\n"},
		{"comments only", "#cloud-config\n# nothing yet\n\n# more\n"},
		{"empty flow mapping", "#cloud-config\n{}\n"},
		{"flow mapping", "#cloud-config\n{runcmd: [a, b]}\n"},
		{"document marker", "#cloud-config\n---\nruncmd: [a]\n"},
		{"full", "#cloud-config\n# about {{.Project}}\n\n" +
			"write_files:\n  # the release\n  - path: /etc/x\n    permissions: \"0644\"\n    content: |\n      {{.Version}}\n      second line\n" +
			"anchors:\n  a: &x {k: 1}\n  b: *x\n" +
			"runcmd:\n  - " + long + "\n  - [sh, -c, 'echo \"quoted\" # not a comment']\n  - |\n    if true; then\n      echo yes\n    fi\n" +
			"bootcmd: [\"010\", 0x10, yes, null]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "droplet.yaml")
			if err := os.WriteFile(path, []byte(tc.template), 0o644); err != nil {
				t.Fatal(err)
			}
			plain, err := Render(path, data)
			if err != nil {
				t.Fatal(err)
			}
			d := data
			d.HostKey = k
			out, err := Render(path, d)
			if err != nil {
				t.Fatalf("Render with a host key: %v", err)
			}
			if !strings.HasPrefix(string(out), Header+"\n") {
				t.Errorf("output does not start with %q:\n%s", Header, out)
			}
			// The template's values are all there, unchanged, plus the key.
			want := decodeConfig(t, plain)
			for name, v := range injected(k) {
				want[name] = v
			}
			if got := decodeConfig(t, out); !reflect.DeepEqual(got, want) {
				t.Errorf("user_data with a host key decodes to\n%#v\nwant\n%#v\n%s", got, want, out)
			}
			if n := strings.Count(string(out), "BEGIN OPENSSH PRIVATE KEY"); n != 1 {
				t.Errorf("private key appears %d times", n)
			}
			// Comments survive the re-encoding.
			for _, line := range strings.Split(string(plain), "\n") {
				if c := strings.TrimSpace(line); strings.HasPrefix(c, "# ") && !strings.Contains(string(out), c) {
					t.Errorf("comment %q lost:\n%s", c, out)
				}
			}
		})
	}
}

func TestRenderHostKeyTaken(t *testing.T) {
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	d := data
	d.HostKey = k
	for _, tc := range []struct{ name, template, want string }{
		{"ssh_keys", "#cloud-config\nruncmd: [a]\nssh_keys:\n  rsa_private: x\n", "sets ssh_keys (line 3), but fleet sets the droplet's SSH host keys itself"},
		{"ssh_genkeytypes", "#cloud-config\nssh_genkeytypes: [rsa]\n", "sets ssh_genkeytypes (line 2)"},
		{"ssh_deletekeys", "#cloud-config\nssh_deletekeys: false\n", "sets ssh_deletekeys (line 2)"},
		{"ssh_publish_hostkeys", "#cloud-config\nssh_publish_hostkeys: {enabled: true}\n", "sets ssh_publish_hostkeys (line 2)"},
		{"several", "#cloud-config\nssh_deletekeys: true\nssh_genkeytypes: []\n", "sets ssh_deletekeys (line 2), ssh_genkeytypes (line 3), but"},
		{"flow", "#cloud-config\n{ssh_keys: {}}\n", "sets ssh_keys (line 2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "droplet.yaml")
			if err := os.WriteFile(path, []byte(tc.template), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := Render(path, d)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") || out != nil {
				t.Fatalf("Render error = %v, want %s: ...%s...", err, path, tc.want)
			}
			// Without a host key the template is the operator's business.
			if _, err := Render(path, data); err != nil {
				t.Errorf("Render without a host key: %v", err)
			}
		})
	}
}

func TestRenderHostKeyTooLarge(t *testing.T) {
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "droplet.yaml")
	tmpl := "#cloud-config\nruncmd:\n  - echo " + strings.Repeat("x", MaxUserData-40) + "\n"
	if err := os.WriteFile(path, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(path, data); err != nil {
		t.Fatalf("without a host key: %v", err)
	}
	d := data
	d.HostKey = k
	_, err = Render(path, d)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Path != path || tooLarge.Size <= MaxUserData {
		t.Fatalf("Render error = %#v, want a *TooLargeError over the limit", err)
	}
}
