package cloudinit

import (
	"path/filepath"
	"strings"
	"testing"
)

// repoSample is the repository's template rendered for one sample droplet.
type repoSample struct {
	name string
	data Data
}

// repoSamples are sample droplets with and without an injected host key;
// TestRepoTemplateHostKey checks what fleet puts in their user_data and,
// with -tags e2e, TestRepoTemplateSchema runs cloud-init's own schema check.
func repoSamples(t *testing.T) []repoSample {
	t.Helper()
	k, err := NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	var out []repoSample
	for _, sample := range []Data{
		data,
		{Project: "shop-2", Version: "10.0.0-rc.1", DropletName: "shop-2-10-0-0-rc-1-zz99", DeployID: "d-7f3a9c"},
		{Project: "blog", Version: "v1.3.0", DropletName: "blog-v1-3-0-ab12cd", DeployID: "ab12cd", Stack: true},
	} {
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
			out = append(out, repoSample{name, d})
		}
	}
	return out
}

func renderRepoTemplate(t *testing.T, d Data) []byte {
	t.Helper()
	out, err := Render(filepath.Join("..", "..", "cloud-init", "droplet.yaml"), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > MaxUserData {
		t.Errorf("user_data is %d bytes, over %d", len(out), MaxUserData)
	}
	return out
}

// The repository's template carries an injected host key exactly once, and
// none without one.
func TestRepoTemplateHostKey(t *testing.T) {
	for _, sample := range repoSamples(t) {
		t.Run(sample.name, func(t *testing.T) {
			t.Parallel()
			out := renderRepoTemplate(t, sample.data)
			key := sample.data.HostKey
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
