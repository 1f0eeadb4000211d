package deploy

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/stack"
)

// TagHealthy marks a candidate whose stack passed the health gate.
const TagHealthy = "fleet-healthy"

// TagWorktree marks a droplet deployed from a working tree, not a tag.
const TagWorktree = "fleet-worktree"

// Remote is how the deployer reaches droplets over SSH: every up, and a
// stack's commands; nil only in tests that never dial.
type Remote struct {
	Dialer  *remote.Dialer // its KnownHosts is where pins live
	SSHWait time.Duration  // sshd boot plus cloud-init
	Getenv  func(string) string
	Log     io.Writer // streamed command output (redacted); may be nil
}

// Paths on the droplet.
func releaseDir(project, version string) string {
	return projectDir(project) + "/releases/" + version
}
func composeFile(project string) string { return projectDir(project) + "/compose.yaml" }

// srvRoot is where releases live on a droplet (a variable for tests that
// run the droplet-side scripts here).
var srvRoot = "/srv/fleet"

func projectDir(project string) string { return srvRoot + "/" + project }
func secretsDir(project string) string { return "/etc/fleet/" + project + "/secrets" }

// ComposeCmd is the docker compose invocation for a project's resolved
// file with args, each word quoted.
func ComposeCmd(project string, args ...string) string {
	return sh(composeWords(project, args...)...)
}

// prepared is what a stack deploy settles before any droplet exists.
type prepared struct {
	bundle  *stack.Bundle
	secrets map[string]string
}

// prepareStack takes the stack from git and checks its secrets: every
// input problem surfaces before anything is created.
func (d *Deployer) prepareStack(ctx context.Context, version string, fromWorktree bool) (*prepared, error) {
	if d.Remote == nil {
		return nil, &ConfigError{Msg: "a stack deploy needs SSH; this fleet was built without it"}
	}
	from := "git tag " + version
	if fromWorktree {
		from = "the working tree"
	}
	d.step("taking the stack from %s", from)
	b, err := stack.Prepare(ctx, d.Spec.Dir, d.Spec.Stack, version, fromWorktree)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	secrets, err := stack.LoadSecrets(d.Spec.Stack, d.Spec.Dir, b.Secrets, d.Remote.Getenv)
	if err != nil {
		b.Close()
		return nil, &ConfigError{Msg: err.Error()}
	}
	return &prepared{bundle: b, secrets: secrets}, nil
}

func (p *prepared) values() []string {
	if p == nil {
		return nil
	}
	var v []string
	for _, s := range p.secrets {
		v = append(v, s)
	}
	return v
}

// stackResult is what a stack deploy moved besides the stack itself.
type stackResult struct {
	shipped *ShipStats // stack.build: local
	carried *Transfer  // the live data restored onto the candidate
}

// deployStack turns a ready droplet (c: verified, cloud-init done, host
// key rotated) into a running stack; the gate's HTTP check follows.
// With a data contract and a live droplet, the live data is carried over
// (backup streamed into the candidate's restore) before the health gate.
func (d *Deployer) deployStack(ctx context.Context, c *remote.Client, dr *cloud.Droplet, version string, p *prepared, live *Member) (res stackResult, err error) {
	proj := d.Spec.Project
	out := d.outputs(p)
	defer out.flush()

	ship := p.bundle
	if d.Spec.Stack.Build == "local" {
		// The images are built here: only the compose files travel.
		b := *p.bundle
		b.Contexts = nil
		ship = &b
	}
	d.step("shipping the stack (%d compose files, %d build contexts)", len(ship.Compose), len(ship.Contexts))
	rel := releaseDir(proj, version)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ship.Tar(pw)) }()
	err = c.Run(ctx, then(sh("rm", "-rf", rel), sh("mkdir", "-p", rel), sh("tar", "-x", "-C", rel)), pr, out.stdout, out.stderr)
	pr.Close() // unblocks Tar if the remote side stopped reading early
	if err != nil {
		return res, fmt.Errorf("shipping the stack: %w", err)
	}

	d.step("delivering %d secrets", len(p.secrets))
	names := make([]string, 0, len(p.secrets))
	for n := range p.secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	if err := c.Run(ctx, sh("install", "-d", "-m", "0700", secretsDir(proj)), nil, out.stdout, out.stderr); err != nil {
		return res, err
	}
	for _, n := range names {
		if err := c.WriteFile(ctx, path.Join(secretsDir(proj), n), 0o600, strings.NewReader(p.secrets[n])); err != nil {
			return res, fmt.Errorf("delivering secret %s: %w", n, err)
		}
	}

	env := []string{"FLEET_VERSION=" + version, "FLEET_PROJECT=" + proj, "FLEET_SECRETS_DIR=" + secretsDir(proj)}
	for _, e := range d.Spec.Stack.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	words := []string{"docker", "compose", "-p", proj}
	for _, f := range p.bundle.Compose {
		words = append(words, "-f", f)
	}
	d.step("resolving the compose files")
	if err := c.Run(ctx, then(sh("cd", rel), replace(withEnv(sh(append(words, "config")...), env...), composeFile(proj))), nil, out.stdout, out.stderr); err != nil {
		return res, fmt.Errorf("docker compose config: %w", err)
	}
	if d.Spec.Stack.Build == "remote" {
		d.step("building images on %s", dr.Name)
		if err := c.Run(ctx, ComposeCmd(proj, "build"), nil, out.stdout, out.stderr); err != nil {
			return res, fmt.Errorf("docker compose build: %w", err)
		}
	}
	timeout := d.Spec.Stack.Health.Timeout
	up := []string{"up", "-d", "--wait", "--wait-timeout", strconv.Itoa(int(math.Ceil(timeout.Seconds())))}
	if d.Spec.Stack.Build == "local" {
		if res.shipped, err = d.shipLocalBuild(ctx, c, dr, version, p, out, live); err != nil {
			return res, err
		}
		up = append(up, "--no-build")
	}
	d.step("starting the stack")
	if err := c.Run(ctx, ComposeCmd(proj, up...), nil, out.stdout, out.stderr); err != nil {
		return res, fmt.Errorf("docker compose up: the stack did not become healthy: %w", err)
	}
	if data := d.Spec.Stack.Data; data != nil && live != nil && live.ID != dr.ID {
		if res.carried, err = d.carryData(ctx, live, c, dr.Name, out); err != nil {
			return res, err
		}
		d.noteSync(ctx, c, res.carried, 0) // the freeze budget's estimate at promote
	}
	return res, nil
}

// carryData restores the live droplet's current backup onto the
// candidate. The live site keeps taking writes: promote's final sync
// carries those.
func (d *Deployer) carryData(ctx context.Context, live *Member, cand *remote.Client, candName string, out outputs) (*Transfer, error) {
	d.step("connecting to live %s", live.Name)
	lc, err := d.Remote.Dial(ctx, &live.Droplet, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("the live droplet's data: %w", err)
	}
	defer lc.Close()
	if err := d.notForwarding(ctx, lc, live.Name); err != nil {
		return nil, err
	}
	d.step("carrying the data over from %s (backup → restore, checksummed)", live.Name)
	return d.transfer(ctx, lc, live.Name, cand, candName, out)
}

// checkHTTP asks every health path through the droplet's public address
// with the site's Host header until all answer 2xx or timeout passes.
func (d *Deployer) checkHTTP(ctx context.Context, ip string, timeout time.Duration) error {
	h := d.health()
	if len(h.Paths) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var last string
	for wait := 500 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		last = ""
		for _, p := range h.Paths {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+p, nil)
			if h.Host != "" {
				req.Host = h.Host
			}
			resp, err := client.Do(req)
			if err != nil {
				last = fmt.Sprintf("GET %s: %v", p, err)
				break
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				last = fmt.Sprintf("GET %s (Host %s) answered %s", p, h.Host, resp.Status)
				break
			}
		}
		if last == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return &cloud.TimeoutError{What: "the health paths to answer 2xx on " + ip, After: timeout, Last: last}
		case <-time.After(wait):
		}
	}
}

// outputs streams remote commands' output to the log with secrets
// redacted. stdout and stderr are copied by separate goroutines, so each
// gets its own redactor: one shared redactor could release the held-back
// start of a secret when the other stream writes.
type outputs struct{ stdout, stderr remote.Redactor }

func (d *Deployer) outputs(p *prepared) outputs {
	w := &lockedWriter{mu: &logMu, w: d.log()}
	return outputs{remote.NewRedactor(w, p.values()), remote.NewRedactor(w, p.values())}
}

func (o outputs) flush() {
	o.stdout.Flush()
	o.stderr.Flush()
}

// logMu serializes every command's output to the log (a Deployer is
// copied by value, so the lock cannot live in it).
var logMu sync.Mutex

// lockedWriter serializes writes to the log: from the two streams of a
// command, and from commands run at once (both freezes of a switch).
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (d *Deployer) log() io.Writer {
	if d.Remote != nil && d.Remote.Log != nil {
		return d.Remote.Log
	}
	return io.Discard
}

func (d *Deployer) warn(format string, args ...any) {
	w := d.Warnings
	if w == nil {
		w = d.log()
	}
	// The log's lock: a warning may come while a command's output streams
	// (the move warns while the forward runs).
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(w, "warning: "+format+"\n", args...)
}
