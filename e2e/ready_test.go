//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readyTemplate is a provision-only template cloud-init runs in seconds;
// with fail set, its runcmd fails (cloud-init status: error).
func readyTemplate(fail bool) string {
	s := "#cloud-config\nwrite_files:\n  - path: /etc/fleet/release\n    content: \"{{.Project}} {{.Version}}\\n\"\n"
	if fail {
		s += "runcmd:\n  - [false]\n"
	}
	return s
}

// readyCloud is a Docker-backed local cloud, started from home with its
// API reachable from any other home (FLEET_API_URL and the token).
type readyCloud struct {
	t         *testing.T
	bin, dir  string
	url, tok  string
	startHome string
}

// newReadyCloud starts a local cloud on listen for a provision-only
// project on the bare image with readyTemplate.
func newReadyCloud(t *testing.T, listen string) *readyCloud {
	bin := fleetBin(t)
	dir := project(t)
	spec, _ := os.ReadFile(filepath.Join(dir, "droplets.yaml"))
	s := strings.Replace(string(spec), "provider: digitalocean", "provider: local", 1)
	os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte(s), 0o644)
	os.WriteFile(filepath.Join(dir, "cloud-init", "droplet.yaml"), []byte(readyTemplate(false)), 0o644)
	c := &readyCloud{t: t, bin: bin, dir: dir, startHome: t.TempDir()}
	r := c.runner(c.startHome)
	r.env = []string{"FLEET_HOME=" + c.startHome, "FLEET_API_URL=", "DIGITALOCEAN_TOKEN=", "FLEET_SSH_PORT="}
	var lc struct{ URL, Token string }
	if err := json.Unmarshal([]byte(r.ok("local", "start", "--listen", listen, "--json")), &lc); err != nil || lc.URL == "" {
		t.Fatalf("fleet local start --json: %v", err)
	}
	c.url, c.tok = lc.URL, lc.Token
	t.Cleanup(func() {
		out, _, _ := c.runner(t.TempDir()).run("status", "--json")
		for _, name := range namesIn(out) {
			c.runner(t.TempDir()).run("destroy", "--yes", "--force", name)
		}
		r.run("local", "stop")
	})
	return c
}

// runner runs fleet with home as FLEET_HOME (a fresh t.TempDir() is a
// fresh machine: a CI runner, another laptop).
func (c *readyCloud) runner(home string) *runner {
	return &runner{t: c.t, bin: c.bin, dir: c.dir, env: []string{"FLEET_HOME=" + home, "HOME=" + home,
		"FLEET_API_URL=" + c.url, "DIGITALOCEAN_TOKEN=" + c.tok, "FLEET_SSH_PORT="}}
}

// api calls the local cloud's API.
func (c *readyCloud) api(method, path string, body any) []byte {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		c.t.Fatalf("%s %s: %s: %s", method, path, resp.Status, out)
	}
	return out
}

// retag replaces droplet name's fleet-hostkey: tags with one recording a
// key it does not hold, as whoever holds the token could.
func (c *readyCloud) retag(name string) {
	var ds struct {
		Droplets []struct {
			ID   int      `json:"id"`
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		} `json:"droplets"`
	}
	json.Unmarshal(c.api("GET", "/v2/droplets?tag_name=fleet:hello&per_page=200", nil), &ds)
	for _, d := range ds.Droplets {
		if d.Name != name {
			continue
		}
		res := map[string]any{"resources": []map[string]string{{"resource_id": fmt.Sprint(d.ID), "resource_type": "droplet"}}}
		for _, tag := range d.Tags {
			if strings.HasPrefix(tag, "fleet-hostkey:") {
				c.api("DELETE", "/v2/tags/"+tag+"/resources", res)
			}
		}
		wrong := "fleet-hostkey:" + strings.Repeat("a", 52)
		c.api("POST", "/v2/tags", map[string]string{"name": wrong})
		c.api("POST", "/v2/tags/"+wrong+"/resources", res)
		return
	}
	c.t.Fatalf("no droplet %s", name)
}

// TestReadyTrust: the host key is trusted because the cloud records it,
// not because a home pinned it. `fleet ssh` works from a fresh home after
// an up from another; once the record says another key, it is refused
// from a fresh home and from the warm one whose cache holds the key the
// droplet presents.
func TestReadyTrust(t *testing.T) {
	c := newReadyCloud(t, "127.0.0.1:18531")
	warm := t.TempDir()
	wall, u := timedUp(t, c.runner(warm), "v1.0.0")
	name := u.Droplet.Name
	t.Logf("up %s: %s", name, wall.Round(100*time.Millisecond))
	c.runner(t.TempDir()).ok("ssh", "--", "true")

	c.retag(name)
	for _, home := range []struct{ what, dir string }{{"fresh", t.TempDir()}, {"warm", warm}} {
		out, errOut, code := c.runner(home.dir).run("ssh", "--", "true")
		if code == 0 || !strings.Contains(errOut, "does not match the fingerprint recorded in the cloud") {
			t.Errorf("fleet ssh from a %s home after the retag: exit %d, want the mismatch refused\n%s%s", home.what, code, out, errOut)
		}
		t.Logf("%s home: exit %d: %s", home.what, code, strings.TrimSpace(errOut))
	}
}

// TestReadyGate: a provision-only up returns only once cloud-init is done
// (held back 20 s by a fault); a boot that fails exits 8 and promote
// refuses.
func TestReadyGate(t *testing.T) {
	c := newReadyCloud(t, "127.0.0.1:18532")
	const hold = 20 * time.Second
	c.api("POST", "/_fleet/faults", "hold=cloud-init:hello-v1-0-0-*:"+hold.String())
	r := c.runner(t.TempDir())
	wall, u := timedUp(t, r, "v1.0.0")
	if got := inDroplet(t, u.Droplet.Name, "cloud-init status"); !strings.Contains(got, "done") {
		t.Errorf("up returned with cloud-init %q, want done", got)
	}
	if wall < hold {
		t.Errorf("up took %s, less than the %s cloud-init was held", wall, hold)
	}
	t.Logf("up with cloud-init held %s: %s", hold, wall.Round(100*time.Millisecond))
	r.ok("promote")

	os.WriteFile(filepath.Join(c.dir, "cloud-init", "droplet.yaml"), []byte(readyTemplate(true)), 0o644)
	if out, errOut, code := r.run("up", "v1.1.0"); code != 8 || !strings.Contains(errOut, "cloud-init failed") {
		t.Fatalf("up of a failing boot: exit %d, want 8 (cloud-init failed)\n%s%s", code, out, errOut)
	}
	if out, errOut, code := r.run("promote"); code != 5 {
		t.Fatalf("promote after a failed up: exit %d, want 5\n%s%s", code, out, errOut)
	}
	if got := roles(r.status()); got["v1.1.0"] != "failed" || got["v1.0.0"] != "live" {
		t.Fatalf("roles after the failed up: %v", got)
	}
}
