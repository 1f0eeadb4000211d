package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cloudInitSchema runs the real `cloud-init schema` over user_data; it
// returns its output and whether it accepted the file.
func cloudInitSchema(t *testing.T, userData []byte) (string, bool) {
	t.Helper()
	bin, err := exec.LookPath("cloud-init")
	if err != nil {
		t.Fatalf("cloud-init is not installed, and the rendered user_data must pass its schema check: apt-get install cloud-init (%v)", err)
	}
	path := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(path, userData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "schema", "--config-file", path).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("cloud-init schema: %v", err)
		}
		return string(out), false
	}
	return string(out), strings.Contains(string(out), "Valid cloud-config")
}

// The repository's template, rendered for sample droplets with and without
// an injected host key, is a cloud-config that cloud-init itself accepts.
func TestRepoTemplateSchema(t *testing.T) {
	path := filepath.Join("..", "..", "cloud-init", "droplet.yaml")
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	samples := []Data{
		data,
		{Project: "shop-2", Version: "10.0.0-rc.1", DropletName: "shop-2-10-0-0-rc-1-zz99", DeployID: "d-7f3a9c"},
		{Project: "blog", Version: "v1.3.0", DropletName: "blog-v1-3-0-ab12cd", DeployID: "ab12cd", Stack: true},
	}
	for _, sample := range samples {
		for _, key := range []*HostKey{nil, k} {
			d := sample
			d.HostKey = key
			name := d.Project + "/" + d.Version
			if d.Stack {
				name += "/stack"
			}
			if key != nil {
				name += "/host-key"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				out, err := Render(path, d)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) > MaxUserData {
					t.Errorf("user_data is %d bytes, over %d", len(out), MaxUserData)
				}
				if msg, ok := cloudInitSchema(t, out); !ok {
					t.Errorf("cloud-init schema rejects the rendered user_data:\n%s\n--- user_data:\n%s", msg, out)
				} else if i := strings.Index(msg, "deprecations:"); i >= 0 && strings.TrimSpace(msg[i+len("deprecations:"):strings.Index(msg, "Valid cloud-config")]) != "" {
					t.Errorf("cloud-init schema reports deprecated keys:\n%s", msg)
				}
				s := string(out)
				cfg := decodeConfig(t, out)
				if key == nil {
					if _, ok := cfg["ssh_keys"]; ok || strings.Contains(s, "PRIVATE KEY") {
						t.Errorf("user_data without a host key has one:\n%s", s)
					}
					return
				}
				if got, _ := cfg["ssh_keys"].(map[string]any)["ed25519_private"].(string); got != key.PrivatePEM {
					t.Errorf("ssh_keys.ed25519_private = %q, want the host key", got)
				}
				// Exactly once: one BEGIN line, and each line of key material once.
				if n := strings.Count(s, "BEGIN OPENSSH PRIVATE KEY"); n != 1 {
					t.Errorf("%d private keys, want 1", n)
				}
				lines := strings.Split(strings.TrimSpace(key.PrivatePEM), "\n")
				for _, line := range lines[2 : len(lines)-1] { // not the markers or the key-independent first line
					if n := strings.Count(s, line); n != 1 {
						t.Errorf("private key line %q appears %d times, want once", line, n)
					}
				}
				for _, want := range []string{"\n  ed25519_public: " + key.AuthorizedLine + "\n", "\nssh_deletekeys: true\n", "\nssh_genkeytypes: [ed25519]\n", "\nssh_publish_hostkeys:\n  enabled: false\n"} {
					if !strings.Contains(s, want) {
						t.Errorf("user_data lacks %q", want)
					}
				}
				if testing.Verbose() {
					t.Logf("user_data (%d bytes):\n%s", len(out), s)
				}
			})
		}
	}
}

// The schema check does reject what cloud-init would skip or warn about,
// e.g. an empty ssh_genkeytypes (so Render injects [ed25519] instead).
func TestCloudInitSchemaRejects(t *testing.T) {
	for _, bad := range []string{"#cloud-config\nruncmd: 5\n", "#cloud-config\nssh_genkeytypes: []\n"} {
		if msg, ok := cloudInitSchema(t, []byte(bad)); ok {
			t.Errorf("cloud-init schema accepts %q:\n%s", bad, msg)
		}
	}
}
