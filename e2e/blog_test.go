//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/e2e/blogkit"
)

const blogHost = "blog.test"

// relayProbe, run on a droplet, asks the stack's postfix to relay for a
// client on a network outside its mynetworks and prints the dialogue.
const relayProbe = `set -u
pf=$(docker ps -q --filter label=com.docker.compose.service=postfix | head -n 1)
img=$(docker inspect -f '{{.Config.Image}}' "$pf")
docker network create fleet-relay-probe >/dev/null
trap 'docker network disconnect fleet-relay-probe "$pf" >/dev/null 2>&1; docker network rm fleet-relay-probe >/dev/null' EXIT
docker network connect fleet-relay-probe "$pf"
ip=$(docker inspect -f '{{(index .NetworkSettings.Networks "fleet-relay-probe").IPAddress}}' "$pf")
docker run --rm --network fleet-relay-probe --entrypoint bash "$img" -c '
exec 3<>/dev/tcp/'"$ip"'/25
read -r banner <&3; echo "$banner"
printf "EHLO probe.example\r\n" >&3; sleep 0.5
printf "MAIL FROM:<probe@example.net>\r\nRCPT TO:<victim@example.org>\r\nQUIT\r\n" >&3
timeout 5 cat <&3'
`

// blogEnv is everything the blog suite runs against: the local cloud
// with a reserved IP made up front (so DNS can point at it before the
// first promote), Pebble, mailpit and the fake Akismet.
type blogEnv struct {
	t        testing.TB
	r        *runner
	dir      string
	home     string
	ip       string // the reserved IP
	pebble   *blogkit.Pebble
	mail     *blogkit.Mailpit
	akismet  *blogkit.Akismet
	roots    *x509.CertPool // Pebble's issuing root
	adminPwd string
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newBlogEnv builds the release repository (v1.0.0–v1.3.0 from the
// overlays, plus extra patch tags), starts the local cloud on port and
// the test servers, and writes droplets.yaml and the secrets file.
func newBlogEnv(t testing.TB, port int, extraTags ...string) *blogEnv {
	t.Helper()
	ctx := context.Background()
	e := &blogEnv{t: t, home: keptDir(t), adminPwd: "admin-" + randomHex(8)}
	e.dir = filepath.Join(keptDir(t), "repo")
	keys := project(t) // a key pair and cloud-init in a scratch dir
	setup := func(dir string) error {
		if out, err := exec.Command("cp", "-r", filepath.Join(keys, "keys"), filepath.Join(keys, "cloud-init"), dir+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return os.WriteFile(filepath.Join(dir, ".gitignore"), []byte(".env.secrets\nkeys/deploy\nbackups/\n"), 0o644)
	}
	blogkit.ReleaseRepo(t, "..", e.dir, setup, "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0")
	for _, tag := range extraTags { // patch releases: the same tree, a new tag
		gitIn(t, e.dir, "commit", "-q", "--allow-empty", "-m", "release "+tag)
		gitIn(t, e.dir, "tag", tag)
	}

	// FLEET_LOCAL_DRAIN: the cutover load keeps connections open across
	// the promote (stragglers); the local cloud cuts them at the move by
	// default, as DigitalOcean does, so they get the old drain of 30 s.
	e.r = &runner{t: t, bin: fleetBin(t), dir: e.dir, env: []string{"FLEET_HOME=" + e.home, "FLEET_API_URL=", "DIGITALOCEAN_TOKEN=", "FLEET_LOCAL_DRAIN=30s"}}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	e.writeSpec("auto", nil) // local start reads the spec's provider
	e.r.ok("local", "start", "--listen", listen)
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("FLEET_E2E_KEEP") != "" {
			t.Logf("kept for inspection: FLEET_HOME=%s, repo %s", e.home, e.dir)
			return
		}
		out, _, _ := e.r.run("status", "--json")
		for _, name := range namesIn(out) {
			e.r.run("destroy", "--yes", "--force", name)
		}
		e.r.run("local", "stop")
	})
	e.ip = e.reserveIP("http://" + listen)

	gw, err := blogkit.Gateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := blogkit.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e.pebble = blogkit.StartPebble(t, blogkit.PebbleOptions{Dir: t.TempDir(), ListenIP: gw, Names: []string{blogHost}, ResolveTo: e.ip, CA: ca})
	e.mail = blogkit.StartMailpit(t, blogkit.MailpitOptions{Dir: t.TempDir(), ListenIP: gw, Username: "relay-" + randomHex(4), Password: randomHex(12), CA: ca})
	e.akismet = blogkit.StartAkismet(t, gw+":0")
	if e.roots, err = e.pebble.RootPool(ctx); err != nil {
		t.Fatal(err)
	}

	e.writeSpec(e.ip, map[string]string{
		"SITE_DOMAIN":        blogHost,
		"ADMIN_EMAIL":        "editor@example.com",
		"ACME_SERVER":        e.pebble.DirectoryURL,
		"ACME_CA_BUNDLE_B64": e.pebble.ACMECABundleB64(),
		"SMTP_RELAY_HOST":    e.mail.RelayHost(),
		"SMTP_TLS_LEVEL":     "encrypt", // mailpit's certificate is for an IP; postfix matches names
		"AKISMET_URL":        e.akismet.URL,
	})
	secrets := strings.Join([]string{
		"django_secret_key=" + randomHex(32),
		"admin_password=" + e.adminPwd,
		"smtp_username=" + e.mail.Username,
		"smtp_password=" + e.mail.Password,
		"akismet_key=" + blogkit.AkismetTestKey,
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(e.dir, ".env.secrets"), []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// keptDir is t.TempDir, or with FLEET_E2E_KEEP set a directory that
// outlives the test, so a failed run's droplets can be inspected.
func keptDir(t testing.TB) string {
	if os.Getenv("FLEET_E2E_KEEP") == "" {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("", "fleet-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// gitIn runs git in dir as the e2e author.
func gitIn(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// writeSpec writes the working tree's droplets.yaml (fleet reads the spec
// from the tree and the stack from the tag).
func (e *blogEnv) writeSpec(reservedIP string, env map[string]string) {
	var b strings.Builder
	fmt.Fprintf(&b, `project: blog
provider: local
droplet:
  region: nyc3
  size: s-1vcpu-1gb
  image: bake
  ssh_keys: [keys/deploy.pub]
  cloud_init: cloud-init/droplet.yaml
reserved_ip: %s
keep: 2
timeouts: {create: 5m, active: 5m, assign: 2m, ssh: 5m}
stack:
  dir: stacks/blog
  compose: [docker-compose-common.yaml, docker-compose-production.yaml]
  build: local
  secrets: {file: .env.secrets}
  health: {host: %s, paths: [/healthz], timeout: 4m}
  data:
    service: app
    backup: docker exec -e FLEET_BASE "$COMPOSE_PROJECT_NAME-utility-1" fleet-data backup
    restore: docker exec -i "$COMPOSE_PROJECT_NAME-utility-1" fleet-data restore
    freeze: docker exec "$COMPOSE_PROJECT_NAME-utility-1" fleet-data freeze
    unfreeze: docker exec "$COMPOSE_PROJECT_NAME-utility-1" fleet-data unfreeze
    writes: docker exec -e FLEET_SINCE "$COMPOSE_PROJECT_NAME-utility-1" fleet-data writes
    verify: blog-verify
    # 4-6 s under the cutover load on a 2-core machine; TestBlogFreezeBudget
    # covers the budget itself.
    freeze_budget: 15s
    state: docker exec "$COMPOSE_PROJECT_NAME-utility-1" fleet-data state
    hold: docker exec -e FLEET_HOLD_MS "$COMPOSE_PROJECT_NAME-utility-1" fleet-data hold
    forward: docker exec -e FLEET_FORWARD_TO "$COMPOSE_PROJECT_NAME-utility-1" fleet-data forward
  after_promote: docker compose exec -T certbot certbot-ensure
`, reservedIP, blogHost)
	if len(env) > 0 {
		b.WriteString("  env:\n")
		for _, k := range slices.Sorted(maps.Keys(env)) {
			fmt.Fprintf(&b, "    %s: %q\n", k, env[k])
		}
	}
	if err := os.WriteFile(filepath.Join(e.dir, "droplets.yaml"), []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// reserveIP reserves an address in the region through the local API, the
// way an operator reserves one in DigitalOcean's console.
func (e *blogEnv) reserveIP(api string) string {
	token, err := os.ReadFile(filepath.Join(e.home, "local", "token"))
	if err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, api+"/v2/reserved_ips", strings.NewReader(`{"region":"nyc3"}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		ReservedIP struct {
			IP string `json:"ip"`
		} `json:"reserved_ip"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.ReservedIP.IP == "" {
		e.t.Fatalf("reserving an IP: %d %v", resp.StatusCode, err)
	}
	return r.ReservedIP.IP
}

func (e *blogEnv) site(keepAlive bool) *site { return newSite(blogHost, e.ip, e.roots, keepAlive) }

// up runs fleet up --json and returns its data transfer, if any.
func (e *blogEnv) up(version string) map[string]any {
	e.t.Helper()
	start := time.Now()
	out := e.r.ok("up", version, "--json")
	var res map[string]any
	json.Unmarshal([]byte(out), &res)
	e.t.Logf("up %s: %.1fs, data %v", version, time.Since(start).Seconds(), res["data"])
	return res
}

func (e *blogEnv) promote() map[string]any {
	e.t.Helper()
	start := time.Now()
	out := e.r.ok("promote", "--json")
	var res map[string]any
	json.Unmarshal([]byte(out), &res)
	var phases []string
	if ps, ok := res["phases"].([]any); ok {
		for _, p := range ps {
			if m, ok := p.(map[string]any); ok {
				phases = append(phases, fmt.Sprintf("%v %.2fs", m["phase"], m["seconds"]))
			}
		}
	}
	e.t.Logf("promote: %.1fs, freeze %vs, after_promote error %q\n  %s", time.Since(start).Seconds(), res["freeze_seconds"], res["after_promote_error"], strings.Join(phases, "\n  "))
	return res
}

// servedCert is the certificate the reserved IP presents for the site,
// verified against Pebble's root.
func (e *blogEnv) servedCert() *x509.Certificate {
	e.t.Helper()
	c, err := e.dialCert()
	if err != nil {
		e.t.Fatalf("TLS to %s as %s, verified against Pebble's root: %v", e.ip, blogHost, err)
	}
	return c
}

func (e *blogEnv) dialCert() (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.ip+":443", &tls.Config{ServerName: blogHost, RootCAs: e.roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// waitCert waits until the site serves a certificate Pebble issued.
func (e *blogEnv) waitCert(timeout time.Duration) *x509.Certificate {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := e.dialCert()
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no certificate from Pebble served on %s after %s: %v", e.ip, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

func pngOf(w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// gradientPixels counts the pixels of a screenshot coloured like pngOf's
// image (blue fixed at 160, red and green varying): it rendered if many.
func gradientPixels(t testing.TB, path string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if bl >= 150 && bl <= 170 && (r > 40 || g > 40) && (absDiff(r, bl) > 25 || absDiff(g, bl) > 25) {
				n++
			}
		}
	}
	return n
}

func absDiff(a, b uint32) uint32 {
	if a > b {
		return a - b
	}
	return b - a
}

func artifactsDir(t testing.TB) string {
	d := os.Getenv("FLEET_E2E_ARTIFACTS")
	if d == "" {
		d = filepath.Join("..", "bin", "e2e-artifacts")
	}
	d, _ = filepath.Abs(filepath.Join(d, t.Name()))
	os.MkdirAll(d, 0o755)
	return d
}

func (e *blogEnv) health(s *site) healthJSON {
	e.t.Helper()
	var h healthJSON
	if err := s.getJSON("/healthz", &h); err != nil {
		e.t.Fatalf("/healthz: %v", err)
	}
	return h
}

func (e *blogEnv) posts(s *site) postsJSON {
	e.t.Helper()
	var p postsJSON
	if err := s.getJSON("/api/posts.json", &p); err != nil {
		e.t.Fatalf("/api/posts.json: %v", err)
	}
	return p
}

func (e *blogEnv) comments(s *site, slug string) commentsJSON {
	e.t.Helper()
	var c commentsJSON
	if err := s.getJSON("/posts/"+slug+"/comments.json", &c); err != nil {
		e.t.Fatalf("comments of %s: %v", slug, err)
	}
	return c
}

// waitPendingComments waits until the worker has checked every comment.
func (e *blogEnv) waitPendingComments(s *site, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h := e.health(s)
		if h.PendingComments == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d comments still pending after %s", h.PendingComments, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (e *blogEnv) live() string {
	for _, d := range e.r.status().Droplets {
		if d.Role == "live" {
			return d.Name
		}
	}
	e.t.Fatal("no live droplet")
	return ""
}

// TestBlog: the reference stack's four releases through up and promote on
// the local cloud, with TLS from Pebble, mail through mailpit, the spam
// check against a fake Akismet; then writes during a promote, rollbacks
// that carry writes back or refuse with a count, and a real browser.
// missingAcked reads slug's comments: how many there are (distinct
// bodies), and how many of acked are not among them.
func (e *blogEnv) missingAcked(s *site, slug string, acked []string) (present, missing int) {
	seen := map[string]bool{}
	for _, c := range e.comments(s, slug).Comments {
		seen[c.Body] = true
	}
	for _, b := range acked {
		if !seen[b] {
			missing++
		}
	}
	return len(seen), missing
}

func TestBlog(t *testing.T) {
	ctx := context.Background()
	e := newBlogEnv(t, 18513, "v1.3.1")
	var s *site
	slugs := []string{"hello-fleet", "cattle-not-pets", "boring-deploys"}

	// v1.0.0: up, promote; the certificate is issued after the promote,
	// when HTTP-01 can reach the site through the reserved IP.
	e.up("v1.0.0")
	if n := e.pebble.Issuances(); n != 0 {
		t.Fatalf("Pebble issued %d certificates before the first promote", n)
	}
	res := e.promote()
	if res["after_promote_error"] != "" {
		t.Fatalf("after_promote failed: %v", res["after_promote_error"])
	}
	cert := e.waitCert(time.Minute)
	if n := e.pebble.Issuances(); n != 1 {
		t.Fatalf("Pebble issued %d certificates, want 1", n)
	}
	t.Logf("v1.0.0 serves certificate serial %x issued by %s", cert.SerialNumber, cert.Issuer.CommonName)
	s = e.site(true)
	// HTTPS is mandatory and HSTS is on.
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.ip+"/", nil)
	req.Host = blogHost
	if resp, err := plain.Do(req); err != nil || resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://"+blogHost) {
		t.Fatalf("http:// is not redirected to https: %v %v", resp, err)
	}
	hreq, _ := http.NewRequest(http.MethodGet, s.url("/"), nil)
	if code, hdr, _, err := s.do(hreq); err != nil || code != 200 || !strings.Contains(hdr.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("GET / over HTTPS: %d %v, HSTS %q", code, err, hdr.Get("Strict-Transport-Security"))
	}
	if err := s.login("admin", e.adminPwd); err != nil {
		t.Fatal(err)
	}
	for i, slug := range slugs {
		if err := s.addPost(fmt.Sprintf("Post %d: %s", i+1, slug), slug, "Body of "+slug+".\n\nSecond paragraph.", "fleet, ops", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(e.posts(s).Posts); got != 3 {
		t.Fatalf("%d posts after creating 3", got)
	}

	// v1.1.0: a code-only release; the posts and the certificate carry
	// over, and Pebble issues nothing. Its promote is killed (SIGKILL)
	// once the forward ended, the move under way, and run again.
	e.up("v1.1.0")
	e.promoteKilled("fleet-data: timing forward:", 0, true)
	s = e.site(true)
	if c := e.servedCert(); c.SerialNumber.Cmp(cert.SerialNumber) != 0 {
		t.Fatalf("v1.1.0 serves serial %x, want the carried %x", c.SerialNumber, cert.SerialNumber)
	}
	if n := e.pebble.Issuances(); n != 1 {
		t.Fatalf("Pebble issued %d certificates after v1.1.0, want still 1", n)
	}
	if got := len(e.posts(s).Posts); got != 3 {
		t.Fatalf("v1.1.0 has %d posts, want 3", got)
	}
	if code, body, err := s.get("/tags/ops/"); err != nil || code != 200 || !strings.Contains(body, "hello-fleet") {
		t.Fatalf("tag page /tags/ops/: %d %v", code, err)
	}

	// v1.2.0: a migration and an nginx change: uploads served by nginx.
	// Its promote is killed as the forward and the move begin (50 ms after
	// the candidate's unfreeze), and run again.
	e.up("v1.2.0")
	e.promoteKilled("fleet-data: timing unfreeze:", 50*time.Millisecond, false)
	s = e.site(true)
	if h := e.health(s); h.PendingMigrations != 0 || !h.OK {
		t.Fatalf("v1.2.0 health %+v", h)
	}
	if err := s.login("admin", e.adminPwd); err != nil {
		t.Fatal(err)
	}
	pic := pngOf(64, 48)
	if err := s.addPost("With a picture", "with-a-picture", "A post with an image.", "media", map[string]fileUpload{"image": {"fleet.png", pic}}); err != nil {
		t.Fatal(err)
	}
	var imgURL string
	for _, p := range e.posts(s).Posts {
		if p.Slug == "with-a-picture" && p.Image != nil {
			imgURL = *p.Image
		}
	}
	if imgURL == "" {
		t.Fatal("the uploaded image is not in /api/posts.json")
	}
	ireq, _ := http.NewRequest(http.MethodGet, s.url(imgURL), nil)
	code, hdr, body, err := s.do(ireq)
	if err != nil || code != 200 || body != string(pic) || hdr.Get("Content-Type") != "image/png" {
		t.Fatalf("GET %s: %d %v, %d bytes (want %d), type %q", imgURL, code, err, len(body), len(pic), hdr.Get("Content-Type"))
	}
	if h := hdr.Get("Server"); !strings.Contains(h, "nginx") {
		t.Errorf("media not served by nginx (Server: %q)", h)
	}

	// v1.3.0: comments checked by the background worker.
	e.up("v1.3.0")
	e.promote()
	s = e.site(true)
	if got := len(e.posts(s).Posts); got != 4 {
		t.Fatalf("v1.3.0 has %d posts, want 4", got)
	}
	liveName := e.live()
	cronMark := "cron-canary-" + randomHex(6)
	e.r.ok("ssh", liveName, "--", "sh", "-c", fmt.Sprintf("'echo \"* * * * * root echo %s\" > /etc/cron.d/fleet-e2e'", cronMark))
	if code, _, err := s.comment("hello-fleet", "Ada", "ada@example.com", "Nice post!"); err != nil || code != http.StatusCreated {
		t.Fatalf("posting a comment: %d %v", code, err)
	}
	if code, _, err := s.comment("hello-fleet", blogkit.AkismetSpamAuthor, "spam@example.com", "Buy now"); err != nil || code != http.StatusCreated {
		t.Fatalf("posting a spam comment: %d %v", code, err)
	}
	e.waitPendingComments(s, time.Minute)
	cs := e.comments(s, "hello-fleet")
	if len(cs.Comments) != 1 || cs.Comments[0].Author != "Ada" {
		t.Fatalf("published comments = %+v, want Ada's only (the spam held)", cs.Comments)
	}
	if len(e.akismet.CommentChecks()) < 2 {
		t.Fatalf("the worker made %d comment-checks", len(e.akismet.CommentChecks()))
	}
	mctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := e.mail.WaitMessage(mctx, func(m blogkit.Message) bool { return strings.Contains(m.Subject, "New comment") }); err != nil {
		t.Fatalf("no notification mail reached mailpit: %v", err)
	}
	if _, err := e.mail.WaitMessage(mctx, func(m blogkit.Message) bool {
		return strings.Contains(m.Subject, "Cron") || strings.Contains(m.Text, cronMark)
	}); err != nil {
		t.Fatalf("no cron mail from the droplet host reached mailpit: %v", err)
	}

	// Never an open relay: a client outside mynetworks (a network of its
	// own, connected to the postfix container) is refused.
	relayOut := e.r.ok("ssh", liveName, "--", "echo", base64.StdEncoding.EncodeToString([]byte(relayProbe)), "|", "base64", "-d", "|", "sh")
	if !strings.Contains(relayOut, "Relay access denied") {
		t.Fatalf("postfix relayed for a client outside mynetworks:\n%s", relayOut)
	}

	// A real browser: the home page, a post with an image and the comment
	// form, over HTTPS on the reserved IP, trusting Pebble's root.
	rootPEM, err := e.pebble.RootCAPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	browser := blogkit.NewChromium(t, blogkit.ChromiumOptions{Dir: t.TempDir(), TrustPEM: [][]byte{rootPEM}, HostMap: map[string]string{blogHost: e.ip}})
	art := artifactsDir(t)
	for _, pg := range []struct{ path, file, want string }{
		{"/", "home.png", "Post 1: hello-fleet"},
		{"/posts/with-a-picture/", "post-with-image.png", "/media/"},
		{"/posts/hello-fleet/", "comment-form.png", "csrfmiddlewaretoken"},
	} {
		dom, err := browser.Visit(ctx, "https://"+blogHost+pg.path, blogkit.VisitOptions{Screenshot: filepath.Join(art, pg.file)})
		if err != nil {
			t.Fatalf("chromium %s: %v", pg.path, err)
		}
		if !strings.Contains(dom, pg.want) {
			t.Fatalf("chromium rendered %s without %q", pg.path, pg.want)
		}
	}
	// The picture itself rendered: the screenshot holds its colours.
	if n := gradientPixels(t, filepath.Join(art, "post-with-image.png")); n < 500 {
		t.Fatalf("the post's image did not render in Chromium (%d pixels of it in the screenshot)", n)
	}
	t.Logf("screenshots in %s", art)

	// No lost writes: comments and reads through the reserved IP without
	// pause while fleet promote moves to v1.3.1.
	e.up("v1.3.1")

	// A promote that fails before the move (the candidate's app is down,
	// so it cannot be frozen) leaves the IP where it was and the live
	// droplet writable.
	var cand string
	for _, d := range e.r.status().Droplets {
		if d.Role == "candidate" {
			cand = d.Name
		}
	}
	appOf := "$(docker ps -aq --filter label=com.docker.compose.service=app)"
	e.r.ok("ssh", cand, "--", "docker", "stop", appOf)
	if _, errOut, code := e.r.run("promote"); code == 0 || !strings.Contains(errOut, "did not touch the reserved IP") {
		t.Fatalf("promote with the candidate's app down: exit %d\n%s", code, errOut)
	}
	if e.live() != liveName {
		t.Fatal("a failed promote moved the IP")
	}
	if code, _, err := s.comment("hello-fleet", "Ada", "ada@example.com", "Still writable after a failed promote"); err != nil || code != http.StatusCreated {
		t.Fatalf("live droplet after a failed promote: %d %v", code, err)
	}
	e.r.ok("ssh", cand, "--", "docker", "start", appOf)
	for i := 0; ; i++ {
		out, _, _ := e.r.run("ssh", cand, "--", "docker", "inspect", "-f", "'{{.State.Health.Status}}'", appOf)
		if strings.TrimSpace(out) == "healthy" {
			break
		}
		if i == 60 {
			t.Fatalf("the candidate's app did not come back: %q", out)
		}
		time.Sleep(time.Second)
	}

	load := &cutoverLoad{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { load.run(e.site, "cattle-not-pets", stop, 500, 2000); close(done) }()
	time.Sleep(2 * time.Second)
	pres := e.promote()
	close(stop)
	<-done
	t.Logf("cutover: %s; freeze %vs, held %v; samples %v", load.Summary(), pres["freeze_seconds"], pres["held"], load.samples)
	if load.Attempts.Load() < 500 || load.Reads.Load() < 2000 {
		t.Fatalf("load too small: %d writes, %d reads", load.Attempts.Load(), load.Reads.Load())
	}
	// Hold and forward: no write refused, none failed, no read failed.
	if load.Frozen.Load() != 0 || load.OtherWrites.Load() != 0 || load.FailedReads.Load() != 0 {
		t.Errorf("failed requests during the promote: %s: %v", load.Summary(), load.samples)
	}
	s = e.site(true)
	e.waitPendingComments(s, 3*time.Minute)
	before, lost := e.missingAcked(s, "cattle-not-pets", load.acked)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged comments are missing after the promote", lost, len(load.acked))
	}

	// Rollback to v1.3.0: the writes since the promote are carried back.
	if code, _, err := s.comment("boring-deploys", "Grace", "grace@example.com", "After the promote"); err != nil || code != http.StatusCreated {
		t.Fatalf("comment after the promote: %d %v", code, err)
	}
	e.waitPendingComments(s, time.Minute)
	// The rollback under the same load (on another post): held and
	// forwarded back too.
	rload := &cutoverLoad{}
	rstop := make(chan struct{})
	rdone := make(chan struct{})
	go func() { rload.run(e.site, "hello-fleet", rstop, 500, 2000); close(rdone) }()
	time.Sleep(2 * time.Second)
	out := e.r.ok("rollback")
	close(rstop)
	<-rdone
	t.Logf("rollback to v1.3.0:\n%s", out)
	t.Logf("rollback cutover: %s; samples %v", rload.Summary(), rload.samples)
	if rload.Frozen.Load() != 0 || rload.OtherWrites.Load() != 0 || rload.FailedReads.Load() != 0 {
		t.Errorf("failed requests during the rollback: %s: %v", rload.Summary(), rload.samples)
	}
	if !strings.Contains(out, "carried") {
		t.Fatalf("rollback did not carry writes back:\n%s", out)
	}
	s = e.site(true)
	if got := len(e.comments(s, "cattle-not-pets").Comments); got != before {
		t.Fatalf("after the rollback %d load comments, want %d", got, before)
	}
	if got := e.comments(s, "boring-deploys").Comments; len(got) != 1 {
		t.Fatalf("the comment made after the promote was not carried back: %+v", got)
	}
	e.waitPendingComments(s, 3*time.Minute)
	if _, rlost := e.missingAcked(s, "hello-fleet", rload.acked); rlost > 0 {
		t.Fatalf("%d of %d comments acknowledged during the rollback are missing after it", rlost, len(rload.acked))
	}

	// Rollback is undo, never twice: run again, it says the rollback is
	// done. --further to v1.2.0, which has no comments: refused with a
	// count, and nothing changes; --discard-writes goes ahead.
	if code, _, err := s.comment("boring-deploys", "Linus", "linus@example.com", "One more"); err != nil || code != http.StatusCreated {
		t.Fatalf("comment: %d %v", code, err)
	}
	if out := e.r.ok("rollback"); !strings.Contains(out, "the last rollback is done") {
		t.Fatalf("a second rollback did not say the first is done:\n%s", out)
	}
	_, errOut, code := e.r.run("rollback", "--further")
	if code != 5 || !regexp.MustCompile(`rollback refused: \d+ writes? made on .* would be lost`).MatchString(errOut) {
		t.Fatalf("rollback to v1.2.0 with comments: exit %d, want 5 and a count\n%s", code, errOut)
	}
	t.Logf("refused: %s", errOut)
	if e.live() != liveName {
		t.Fatalf("a refused rollback moved the IP")
	}
	if code, _, err := s.comment("boring-deploys", "Linus", "linus@example.com", "Still writable"); err != nil || code != http.StatusCreated {
		t.Fatalf("after the refused rollback the site takes no writes: %d %v", code, err)
	}
	out = e.r.ok("rollback", "--further", "--discard-writes")
	t.Logf("rollback --further --discard-writes:\n%s", out)
	s = e.site(true)
	if got := len(e.posts(s).Posts); got != 4 {
		t.Fatalf("v1.2.0 after the rollback has %d posts, want 4", got)
	}
	if h := e.health(s); !h.OK {
		t.Fatalf("v1.2.0 after the rollback: %+v", h)
	}

	// fleet backup --verify, then fleet restore; a damaged archive is
	// refused before anything is touched.
	var bk struct {
		Archive  string `json:"archive"`
		Verified bool   `json:"verified"`
		Output   string `json:"verify_output"`
		Manifest struct {
			Entries []struct{ Name string } `json:"entries"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(e.r.ok("backup", "--verify", "--json")), &bk); err != nil {
		t.Fatal(err)
	}
	t.Logf("backup: %s, verify: %s", bk.Archive, bk.Output)
	if !bk.Verified || !strings.Contains(bk.Output, "integrity_check ok") || len(bk.Manifest.Entries) != 3 {
		t.Fatalf("backup --verify: %+v", bk)
	}
	archive := filepath.Join(e.dir, bk.Archive)
	if !strings.HasPrefix(bk.Archive, filepath.Join("backups", "blog")+"/") || !strings.HasSuffix(archive, ".tar.zst") {
		t.Fatalf("archive saved at %s, want backups/blog/<UTC time>.tar.zst", bk.Archive)
	}
	if _, err := os.Stat(strings.TrimSuffix(archive, ".tar.zst") + ".manifest.json"); err != nil {
		t.Fatal(err)
	}
	if err := s.login("admin", e.adminPwd); err != nil {
		t.Fatal(err)
	}
	if err := s.addPost("After the backup", "after-the-backup", "Gone after the restore.", "", nil); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(e.dir, "backups", "damaged.tar.zst")
	b, _ := os.ReadFile(archive)
	b[len(b)/2] ^= 0x55
	os.WriteFile(damaged, b, 0o600)
	mb, _ := os.ReadFile(strings.TrimSuffix(archive, ".tar.zst") + ".manifest.json")
	os.WriteFile(strings.TrimSuffix(damaged, ".tar.zst")+".manifest.json", mb, 0o600)
	if _, errOut, code := e.r.run("restore", "--yes", damaged); code == 0 || !strings.Contains(errOut, "checksum mismatch") {
		t.Fatalf("restore of a damaged archive: exit %d\n%s", code, errOut)
	}
	if got := len(e.posts(s).Posts); got != 5 {
		t.Fatalf("a refused restore changed the data: %d posts, want 5", got)
	}
	e.r.ok("restore", "--yes", bk.Archive)
	if got := len(e.posts(s).Posts); got != 4 {
		t.Fatalf("after restoring the backup %d posts, want the 4 it holds", got)
	}
	if code, _, err := s.get("/"); err != nil || code != 200 {
		t.Fatalf("site after the restore: %d %v", code, err)
	}
}
