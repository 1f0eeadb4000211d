package deploy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShWords runs what sh builds through a real shell: every word comes
// back as it went in, whatever it holds.
func TestShWords(t *testing.T) {
	words := []string{"plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "a;b", "x&&y", "new\nline", "", "*", "~", "semi;", "%s", "k=v w", "tab\there", "back\\slash", "-n"}
	out, err := exec.Command("sh", "-c", sh(append([]string{"printf", "%s\\0"}, words...)...)).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(words) {
		t.Fatalf("got %d words %q, want %d", len(got), got, len(words))
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: got %q, want %q", i, got[i], words[i])
		}
	}
	if c := sh("docker", "compose", "-p", "blog", "-f", "/srv/fleet/blog/compose.yaml", "up"); c != "docker compose -p blog -f /srv/fleet/blog/compose.yaml up" {
		t.Errorf("plain words are quoted: %s", c)
	}
}

func TestWithEnvQuotesValues(t *testing.T) {
	v := "a b'c $HOME `id`;"
	out, err := exec.Command("sh", "-c", withEnv(sh("sh", "-c", `printf %s "$X"`), "X="+v)).Output()
	if err != nil || string(out) != v {
		t.Fatalf("got %q (%v), want %q", out, err, v)
	}
}
