//go:build e2e

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// localSpec points the repository's droplets.yaml at the local cloud, with
// droplets made from the project's bake (`fleet image bake`, made by the
// first up that needs it and shared by every local cloud on the engine), as
// the tests need them fast.
func localSpec(spec string) string {
	s := strings.Replace(spec, "provider: digitalocean", "provider: local", 1)
	return strings.Replace(s, "image: debian-13-x64", "image: bake", 1)
}

// gitRepo makes a throwaway repository holding stacks/hello and a spec
// for the local cloud, with the secrets file ignored by git.
func gitRepo(t testing.TB) string {
	t.Helper()
	dir := project(t)
	git := func(args ...string) { t.Helper(); gitIn(t, dir, args...) }
	if out, err := exec.Command("cp", "-r", "../stacks", dir+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp stacks: %v\n%s", err, out)
	}
	spec, _ := os.ReadFile(filepath.Join(dir, "droplets.yaml"))
	s := localSpec(string(spec))
	s += "\nstack:\n  dir: stacks/hello\n  secrets: {file: .env.secrets}\n  health: {host: hello.test, paths: [/healthz, /], timeout: 3m}\n"
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(s), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env.secrets\nkeys/deploy\n"), 0o644)
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "v1.0.0")
	git("tag", "v1.0.0")
	git("commit", "-q", "--allow-empty", "-m", "v1.1.0")
	git("tag", "v1.1.0")
	// v1.2.0 ships a health endpoint that answers 500.
	os.WriteFile(filepath.Join(dir, "stacks/hello/app/UNHEALTHY"), []byte("yes\n"), 0o644)
	git("add", "-A")
	git("commit", "-q", "-m", "v1.2.0: broken health")
	git("tag", "v1.2.0")
	git("rm", "-q", "stacks/hello/app/UNHEALTHY")
	git("commit", "-q", "-m", "back to healthy")
	return dir
}

func canary(t testing.TB) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "canary-" + hex.EncodeToString(b)
}

// get fetches http://ip/path and returns the body, or fails the test.
func get(t *testing.T, ip, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + ip + path)
	if err != nil {
		t.Fatalf("GET http://%s%s: %v", ip, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestStackDeploy: a compose stack deployed over SSH with pinned host keys,
// secrets through the session, and a health gate, on the local cloud.
func TestStackDeploy(t *testing.T) {
	bin := fleetBin(t)
	home := t.TempDir()
	dir := gitRepo(t)
	secret := canary(t)
	r := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_HOME=" + home, "FLEET_API_URL=", "DIGITALOCEAN_TOKEN="}}
	r.ok("local", "start", "--listen", "127.0.0.1:18511")
	t.Cleanup(func() {
		out, _, _ := r.run("status", "--json")
		for _, name := range namesIn(out) {
			r.run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})

	// A missing secret, or a secrets file tracked by git, is refused
	// before any droplet exists.
	_, errOut, code := r.run("up", "v1.0.0")
	if code == 0 || !strings.Contains(errOut, "HELLO_TOKEN") {
		t.Fatalf("up without the secret: exit %d\n%s", code, errOut)
	}
	os.WriteFile(filepath.Join(dir, ".env.secrets"), []byte("HELLO_TOKEN="+secret+"\n"), 0o600)
	tracked := exec.Command("git", "add", "-f", ".env.secrets")
	tracked.Dir = dir
	tracked.Run()
	if _, errOut, code := r.run("up", "v1.0.0"); code == 0 || !strings.Contains(errOut, "tracked by git") {
		t.Fatalf("up with a tracked secrets file: exit %d\n%s", code, errOut)
	}
	untrack := exec.Command("git", "rm", "-q", "--cached", ".env.secrets")
	untrack.Dir = dir
	untrack.Run()
	if s := r.status(); len(s.Droplets) != 0 {
		t.Fatalf("refused deploys created droplets: %+v", s.Droplets)
	}

	// Sample every process's argv on every droplet while deploys run.
	stop := make(chan struct{})
	var argvLeak sync.Map
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			out, _ := exec.Command("docker", "ps", "-q", "--filter", "label=fleet.droplet.name").Output()
			for _, id := range strings.Fields(string(out)) {
				argv, _ := exec.Command("docker", "exec", id, "sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '").Output()
				if strings.Contains(string(argv), secret) {
					argvLeak.Store(id, true)
				}
			}
		}
	}()

	var outputs strings.Builder
	up := func(v string) (string, string, int) {
		out, errOut, code := r.run("up", v)
		outputs.WriteString(out + errOut)
		return out, errOut, code
	}
	if out, errOut, code := up("v1.0.0"); code != 0 {
		t.Fatalf("up v1.0.0: exit %d\n%s%s", code, out, errOut)
	}
	st := r.status()
	first := st.Droplets[0]
	r.ok("promote")
	ip := *r.status().ReservedIP
	expectServes(t, ip, "hello v1.0.0")
	// The secret reached the app (its digest matches) without showing itself.
	sum := sha256.Sum256([]byte(secret))
	if got := get(t, ip, "/secret-check"); !strings.Contains(got, hex.EncodeToString(sum[:])[:12]) {
		t.Fatalf("/secret-check = %q, want the secret's sha256 prefix", got)
	}

	if out, errOut, code := up("v1.1.0"); code != 0 {
		t.Fatalf("up v1.1.0: exit %d\n%s%s", code, out, errOut)
	}
	r.ok("promote")
	expectServes(t, ip, "hello v1.1.0")

	// A release whose health endpoint answers 500 fails clearly, promote
	// refuses it, and the reserved IP keeps serving the live version.
	_, errOut, code = up("v1.2.0")
	if code != 8 || !strings.Contains(errOut, "health") {
		t.Fatalf("up v1.2.0 (unhealthy): exit %d, want 8 and a health error\n%s", code, errOut)
	}
	if _, errOut, code := r.run("promote"); code == 0 {
		t.Fatalf("promote accepted an unhealthy candidate\n%s", errOut)
	}
	expectServes(t, ip, "hello v1.1.0")
	close(stop)
	wg.Wait()

	// The system OpenSSH client connects with StrictHostKeyChecking=yes
	// and fleet's known_hosts.
	if out, errOut, code := r.run("ssh", first.Name, "--", "cat", "/etc/hostname"); code != 0 || !strings.Contains(out, first.Name) {
		t.Fatalf("fleet ssh: exit %d\n%s%s", code, out, errOut)
	}

	// The canary is nowhere it must not be.
	if strings.Contains(outputs.String(), secret) {
		t.Error("the secret appears in fleet's output")
	}
	argvLeak.Range(func(k, _ any) bool {
		t.Errorf("the secret appeared in a process's argv on container %v", k)
		return true
	})
	gitLog := exec.Command("sh", "-c", "git log -p --all; git stash list -p 2>/dev/null; cat $(git rev-parse --git-dir)/index")
	gitLog.Dir = dir
	if out, _ := gitLog.CombinedOutput(); strings.Contains(string(out), secret) {
		t.Error("the secret is in git")
	}
	for _, d := range r.status().Droplets {
		c := "fleet-" + d.Name
		checks := map[string]string{
			"user_data":                           "cat /var/lib/cloud/seed/nocloud/user-data /var/lib/cloud/instance/user-data.txt 2>/dev/null",
			"image layers":                        "docker save $(docker images -q) 2>/dev/null",
			"files outside the secrets directory": "grep -rlF --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev -e \"$CANARY\" / 2>/dev/null | grep -v '^/etc/fleet/hello/secrets/' | grep -v '^/var/lib/docker/' ; true",
		}
		for what, cmd := range checks {
			out, _ := exec.Command("docker", "exec", "-e", "CANARY="+secret, c, "sh", "-c", cmd).Output()
			if what == "files outside the secrets directory" {
				if s := strings.TrimSpace(string(out)); s != "" {
					t.Errorf("%s: the secret is in files outside the secrets directory: %s", d.Name, s)
				}
				continue
			}
			if strings.Contains(string(out), secret) {
				t.Errorf("%s: the secret is in the %s", d.Name, what)
			}
		}
	}

	// A droplet whose host key was swapped is refused, clearly.
	if out, err := exec.Command("docker", "exec", "fleet-"+first.Name, "sh", "-c",
		"rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && (service ssh restart || kill -HUP $(cat /run/sshd.pid))").CombinedOutput(); err != nil {
		t.Fatalf("swapping the host key: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	// fleet ssh verifies the key against the cloud's record before it
	// hands over to the system ssh.
	if _, errOut, code := r.run("ssh", first.Name, "--", "true"); code == 0 || !strings.Contains(errOut, "does not match the fingerprint recorded in the cloud") {
		t.Errorf("fleet ssh accepted a swapped host key: exit %d\n%s", code, errOut)
	}
	if _, errOut, code := r.run("logs", "--droplet", first.Name); code == 0 || !strings.Contains(errOut, "host key") {
		t.Errorf("fleet logs accepted a swapped host key: exit %d\n%s", code, errOut)
	}
}

// namesIn lists the droplet names in `fleet status --json` output.
func namesIn(statusJSON string) []string {
	var s status
	json.Unmarshal([]byte(statusJSON), &s)
	var names []string
	for _, d := range s.Droplets {
		names = append(names, d.Name)
	}
	return names
}
