//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/e2e/blogkit"
	"github.com/fleetdeploy/fleet/internal/localcloud"
)

// TestBlogDevelopCompose proves the developer's command serves the blog:
//
//	docker compose -f docker-compose-common.yaml -f docker-compose-develop.yaml up
//
// The host has no Compose v2, so it runs inside a Docker-in-Docker
// container of the local droplet image (localcloud.EnsureImage: a bare
// Debian trixie with systemd), started with the droplet's flags, whose
// NoCloud user data installs Docker and Compose through the local cloud's
// apt proxy (localcloud.EnsureMirrors). debian:trixie-slim and
// a local stand-in for axllent/mailpit:latest (blogkit.MailpitImage; Docker
// Hub is unreachable) are loaded into its engine; stacks/blog is copied in
// as a tar; `up -d --wait` builds the app from Debian packages. Then, from
// inside: / and /healthz answer on port 8000, the admin user logs in with
// dev-secrets/admin_password, a post made with manage.py shows on /, and a
// mail the app sends lands in mailpit.
func TestBlogDevelopCompose(t *testing.T) {
	stack, err := filepath.Abs("../stacks/blog")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"docker-compose-common.yaml", "docker-compose-develop.yaml", "app/Dockerfile"} {
		if _, err := os.Stat(filepath.Join(stack, f)); err != nil {
			t.Fatalf("the blog stack is incomplete: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	if dl, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	}
	defer cancel()

	start := time.Now()
	image, err := localcloud.EnsureImage(ctx, testLogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if err := blogkit.MailpitImage(ctx, "axllent/mailpit:latest"); err != nil {
		t.Fatal(err)
	}
	mirrors, err := localcloud.EnsureMirrors(ctx, testLogWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("droplet image %s, mirrors and mailpit image ready in %v", image, time.Since(start).Round(time.Millisecond))

	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := "fleet-e2e-develop-" + hex.EncodeToString(suffix)
	vol := name + "-docker"
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		exec.CommandContext(cctx, "docker", "rm", "-f", "-v", name).Run()
		exec.CommandContext(cctx, "docker", "volume", "rm", "-f", vol).Run()
	})
	host := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// in runs a shell script (sh -e) inside the container, in /srv/blog
	// once the stack is there.
	in := func(script string, stdin io.Reader) (string, error) {
		cmd := exec.CommandContext(ctx, "docker", "exec", "-i", name, "sh", "-ec", "if [ -d /srv/blog ]; then cd /srv/blog; fi\n"+script)
		cmd.Stdin = stdin
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// must is in, failing the test on an error.
	must := func(script string) string {
		t.Helper()
		out, err := in(script, nil)
		if err != nil {
			t.Fatalf("in the container: %s: %v\n%s", script, err, out)
		}
		return out
	}
	compose := "docker compose -f docker-compose-common.yaml -f docker-compose-develop.yaml"
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "exec", name, "sh", "-c", "cd /srv/blog && "+compose+" ps -a; "+compose+" logs --no-color --tail 80").CombinedOutput()
			t.Logf("compose ps and logs:\n%s", out)
		}
	})

	// The droplet's container flags (internal/localcloud/docker.go), no
	// published ports.
	info := host("info", "--format", "{{.CgroupVersion}}")
	host("volume", "create", "--label", "fleet.e2e=develop", vol)
	args := []string{"create", "--name", name, "--hostname", "blog-develop", "--label", "fleet.e2e=develop",
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm"}
	if info == "2" {
		args = append(args, "--cgroupns", "private")
	} else {
		args = append(args, "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host")
	}
	args = append(args, "--env", "container=docker",
		"--tmpfs", "/run:rw,exec,nosuid,nodev,mode=0755", "--tmpfs", "/run/lock:rw,noexec,nosuid,nodev,size=5m",
		"--mount", "type=volume,source="+vol+",target=/var/lib/docker", image)
	host(args...)
	// A NoCloud seed whose user data installs Docker and Compose, as a
	// droplet's would (on cgroup v1 dockerd nests its containers in the
	// container's cgroups, as the local cloud's vendor-data has it).
	cgroupParent := `"cgroup-parent": "docker"`
	if info == "2" {
		cgroupParent = ""
	}
	userData := "#cloud-config\nruncmd:\n"
	for _, cmd := range []string{
		"set -e",
		"echo 'Acquire::http::Proxy \"" + mirrors.AptProxy + "\";' >/etc/apt/apt.conf.d/00proxy",
		"mkdir -p /etc/docker && echo '{" + cgroupParent + "}' >/etc/docker/daemon.json",
		"DEBIAN_FRONTEND=noninteractive apt-get -q update",
		"DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends install docker.io docker-cli docker-compose",
	} {
		q, _ := json.Marshal(cmd) // a JSON string is a YAML flow scalar
		userData += "  - " + string(q) + "\n"
	}
	seed := t.TempDir()
	os.WriteFile(filepath.Join(seed, "meta-data"), []byte("instance-id: i-develop\nlocal-hostname: blog-develop\n"), 0o600)
	os.WriteFile(filepath.Join(seed, "user-data"), []byte(userData), 0o600)
	host("cp", seed+"/.", name+":/var/lib/cloud/seed/nocloud")
	start = time.Now()
	host("start", name)
	for {
		status, _ := in("cloud-init status --long", nil)
		if strings.Contains(status, "status: done") && !strings.Contains(status, "degraded") {
			// Docker's postinst started dockerd; give it a moment to answer.
			if out, err := in("for i in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; docker info", nil); err != nil {
				t.Fatalf("cloud-init is done but docker does not answer: %v\n%s", err, out)
			}
			break
		}
		if strings.Contains(status, "status: error") || strings.Contains(status, "status: done") {
			log, _ := in("tail -n 80 /var/log/cloud-init-output.log", nil)
			t.Fatalf("cloud-init failed:\n%s\n%s", status, log)
		}
		if ctx.Err() != nil || time.Since(start) > 10*time.Minute {
			out, _ := in("cloud-init status --long; tail -n 30 /var/log/cloud-init-output.log", nil)
			t.Fatalf("the container did not boot with a running dockerd:\n%s", out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("booted and installed Docker in %v", time.Since(start).Round(time.Millisecond))

	// Images the inner engine cannot pull.
	start = time.Now()
	save := exec.CommandContext(ctx, "docker", "save", "debian:trixie-slim", "axllent/mailpit:latest")
	pipe, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := save.Start(); err != nil {
		t.Fatal(err)
	}
	out, loadErr := in("docker load -q", pipe)
	if err := save.Wait(); err != nil || loadErr != nil {
		t.Fatalf("loading images: save %v, load %v\n%s", err, loadErr, out)
	}
	// The stack, as a developer has it.
	tarCmd := exec.CommandContext(ctx, "tar", "-C", stack, "-c", ".")
	if pipe, err = tarCmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	out, cpErr := in("mkdir -p /srv/blog && tar -C /srv/blog -x", pipe)
	if err := tarCmd.Wait(); err != nil || cpErr != nil {
		t.Fatalf("copying the stack: tar %v, untar %v\n%s", err, cpErr, out)
	}
	t.Logf("images loaded and stack copied in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	if out, err := in(`out=$(`+compose+` up -d --wait 2>&1) || { echo "$out" | tail -n 80; exit 1; }`, nil); err != nil {
		t.Fatalf("compose up -d --wait: %v\n%s", err, out)
	}
	t.Logf("compose up -d --wait (with the app build) took %v", time.Since(start).Round(time.Second))
	services := strings.Fields(must(compose + " ps --services --status running"))
	if strings.Join(services, " ") != "app mailpit" && strings.Join(services, " ") != "mailpit app" {
		t.Errorf("running services = %v, want app and mailpit only (the others are production-only)", services)
	}

	// The list page and /healthz, on port 8000 of the container.
	curl := func(path string) (int, string) {
		t.Helper()
		out := must("curl -sS -o /tmp/body -w '%{http_code}' http://127.0.0.1:8000" + path + "; echo; cat /tmp/body")
		code, body, _ := strings.Cut(out, "\n")
		var c int
		fmt.Sscan(code, &c)
		return c, body
	}
	code, body := curl("/")
	if code != 200 || !strings.Contains(body, "<h1>Posts</h1>") {
		t.Fatalf("GET / = %d:\n%s", code, body)
	}
	code, body = curl("/healthz")
	var health struct {
		OK      bool   `json:"ok"`
		DB      string `json:"db"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &health); code != 200 || err != nil || !health.OK || health.DB != "ok" {
		t.Fatalf("GET /healthz = %d %s (%v)", code, body, err)
	}

	// The admin user exists with the development password.
	login := must(`jar=$(mktemp)
u=http://127.0.0.1:8000/admin/login/
tok=$(curl -fsS -c "$jar" "$u" | sed -n 's/.*name="csrfmiddlewaretoken" value="\([^"]*\)".*/\1/p' | head -n 1)
curl -sS -b "$jar" -c "$jar" -o /dev/null -w '%{http_code} %{redirect_url}' -H "Referer: $u" \
  --data-urlencode "csrfmiddlewaretoken=$tok" --data-urlencode username=admin \
  --data-urlencode "password=$(cat dev-secrets/admin_password)" --data-urlencode next=/admin/ "$u"`)
	if !strings.HasPrefix(login, "302 ") || !strings.HasSuffix(strings.TrimSpace(login), "/admin/") {
		t.Errorf("admin login with dev-secrets/admin_password: %q", login)
	}

	// A post made with manage.py (as user blog, through the image's
	// wrapper) shows on the list page.
	title := "Hello from develop " + hex.EncodeToString(suffix)
	must(compose + ` exec -T app manage.py shell -c "from blog.models import Post; Post.objects.create(title='` + title + `', slug='hello-develop', body='Written by the develop test.', tags='fleet, develop')"`)
	code, body = curl("/")
	if code != 200 || !strings.Contains(body, title) || !strings.Contains(body, "/posts/hello-develop/") {
		t.Errorf("GET / after the post = %d:\n%s", code, body)
	}
	if code, body = curl("/posts/hello-develop/"); code != 200 || !strings.Contains(body, "Written by the develop test.") {
		t.Errorf("GET /posts/hello-develop/ = %d:\n%s", code, body)
	}

	// Mail from the app goes to mailpit (EMAIL_HOST=mailpit in develop).
	subject := "develop mail " + hex.EncodeToString(suffix)
	must(compose + ` exec -T app manage.py shell -c "from django.core.mail import send_mail; send_mail('` + subject + `', 'sent by the develop test', None, ['admin@localhost'])"`)
	var msgs string
	for range 20 {
		msgs = must("curl -fsS http://127.0.0.1:8025/api/v1/messages")
		if strings.Contains(msgs, subject) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !strings.Contains(msgs, subject) {
		t.Errorf("mailpit did not get the app's mail %q:\n%s", subject, msgs)
	}

	start = time.Now()
	must(compose + " down -v")
	t.Logf("compose down -v in %v", time.Since(start).Round(time.Millisecond))
}

// testLogWriter sends a build's output to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
