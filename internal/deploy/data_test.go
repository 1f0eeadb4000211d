package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestSumCatcher(t *testing.T) {
	var out bytes.Buffer
	sc := &sumCatcher{w: &out}
	for _, chunk := range []string{"first li", "ne\nfleet-sha", "256 abc123\nlast", " line\n", "tail"} {
		sc.Write([]byte(chunk))
	}
	sc.Flush()
	if sc.sum != "abc123" {
		t.Errorf("sum = %q", sc.sum)
	}
	if got := out.String(); got != "first line\nlast line\ntail" {
		t.Errorf("passed on %q", got)
	}
}

// The droplet-side wrappers, run here with bash: the sums they report
// must be of every byte, and their exit status the stack command's.
func TestDataScripts(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("the droplet-side scripts are bash: %v", err)
	}
	old := srvRoot
	srvRoot = t.TempDir()
	t.Cleanup(func() { srvRoot = old })
	dir := filepath.Join(srvRoot, "p")
	os.MkdirAll(dir, 0o755)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640 KB: more than a pipe holds

	run := func(script string, stdin []byte) (stdout []byte, sum string, code int) {
		t.Helper()
		cmd := exec.Command("bash", "-c", script)
		cmd.Stdin = bytes.NewReader(stdin)
		var so, se bytes.Buffer
		sc := &sumCatcher{w: &se}
		cmd.Stdout, cmd.Stderr = &so, sc
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return so.Bytes(), sc.sum, code
	}
	os.WriteFile(filepath.Join(dir, "payload"), payload, 0o644)

	tests := []struct {
		name, script string
		stdin        []byte
		wantOut      []byte
		wantSum      string
		wantCode     int
		check        func(t *testing.T)
	}{
		{name: "backup", script: backupScript("p", "cat payload; echo progress >&2"), wantOut: payload, wantSum: sha(payload)},
		{name: "backup runs with compose env", script: backupScript("p", `printf %s "$COMPOSE_PROJECT_NAME $COMPOSE_FILE"`),
			wantOut: []byte("p " + dir + "/compose.yaml"), wantSum: sha([]byte("p " + dir + "/compose.yaml"))},
		{name: "backup failing midway fails", script: backupScript("p", "head -c 1000 payload; exit 7"), wantOut: payload[:1000], wantSum: sha(payload[:1000]), wantCode: 7},
		{name: "restore", script: restoreScript("p", "cat > restored"), stdin: payload, wantSum: sha(payload),
			check: func(t *testing.T) {
				if b, _ := os.ReadFile(filepath.Join(dir, "restored")); !bytes.Equal(b, payload) {
					t.Errorf("restored %d bytes, want %d", len(b), len(payload))
				}
			}},
		{name: "restore reading part still sums all", script: restoreScript("p", "head -c 10 >/dev/null"), stdin: payload, wantSum: sha(payload)},
		{name: "restore refusing", script: restoreScript("p", "echo 'this release cannot read the archive' >&2; exit 3"), stdin: payload, wantSum: sha(payload), wantCode: 3},
		{name: "restore output goes to stderr", script: restoreScript("p", "cat >/dev/null; echo done"), stdin: []byte("x"), wantSum: sha([]byte("x"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, sum, code := run(tt.script, tt.stdin)
			if !bytes.Equal(out, tt.wantOut) {
				t.Errorf("stdout: %d bytes %.40q, want %d bytes", len(out), out, len(tt.wantOut))
			}
			if sum != tt.wantSum {
				t.Errorf("reported sum %q, want %q", sum, tt.wantSum)
			}
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestDataCmdQuotes(t *testing.T) {
	got := dataCmd("blog", `docker compose exec -T utility fleet-data writes 'x'`, "FLEET_SINCE=12")
	want := `cd /srv/fleet/blog && COMPOSE_PROJECT_NAME=blog COMPOSE_FILE=/srv/fleet/blog/compose.yaml FLEET_SINCE=12 sh -c 'docker compose exec -T utility fleet-data writes '\''x'\'''`
	if got != want {
		t.Errorf("dataCmd =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(verifyScript("app", "blog-verify"), "--network none") == false {
		t.Error("verify must run without network")
	}
}

func TestStackSaid(t *testing.T) {
	got := stackSaid("a\nblog-restore: cannot read: blog.0003\n\nfleet-data: nothing restored\nfleet-sha256 abc\n", 2)
	if got != "blog-restore: cannot read: blog.0003; fleet-data: nothing restored" {
		t.Errorf("stackSaid = %q", got)
	}
	if got := stackSaid("fleet-sha256 abc\n", 2); !strings.Contains(got, "exited 3") {
		t.Errorf("stackSaid of nothing = %q", got)
	}
}
