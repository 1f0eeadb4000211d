//go:build e2e

package cloudinit

// cloud-init's own schema check over the rendered user_data. It needs the
// cloud-init program (make e2e installs it); run with
//
//	go test -tags e2e ./internal/cloudinit/ -run Schema -v

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	return string(out), schemaValid.Match(out)
}

// schemaValid is cloud-init's verdict line: "Valid cloud-config: FILE"
// (22.x, Debian 12) or "Valid schema FILE" (25.x, Debian 13).
var schemaValid = regexp.MustCompile(`(?m)^Valid (cloud-config|schema)\b`)

// deprecations returns what cloud-init lists after "deprecations:", up to
// its verdict line.
func deprecations(msg string) string {
	i := strings.Index(msg, "deprecations:")
	if i < 0 {
		return ""
	}
	rest := msg[i+len("deprecations:"):]
	if j := schemaValid.FindStringIndex(rest); j != nil {
		rest = rest[:j[0]]
	}
	return strings.TrimSpace(rest)
}

// The repository's template, rendered for sample droplets with and without
// an injected host key, is a cloud-config that cloud-init itself accepts,
// without deprecated keys.
func TestRepoTemplateSchema(t *testing.T) {
	for _, sample := range repoSamples(t) {
		t.Run(sample.name, func(t *testing.T) {
			t.Parallel()
			out := renderRepoTemplate(t, sample.data)
			if msg, ok := cloudInitSchema(t, out); !ok {
				t.Errorf("cloud-init schema rejects the rendered user_data:\n%s\n--- user_data:\n%s", msg, out)
			} else if d := deprecations(msg); d != "" {
				t.Errorf("cloud-init schema reports deprecated keys:\n%s", msg)
			}
		})
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
