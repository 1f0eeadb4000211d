//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/stack"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
	"gopkg.in/yaml.v3"
)

// The harness below runs a GitHub Actions workflow that `fleet init --ci
// github` wrote the way a GitHub-hosted runner would, as far as fleet can
// tell: each `run:` step verbatim, with the shell GitHub uses, no TTY,
// CI=true, the GITHUB_* variables of a tag push, the job's and step's env
// with ${{ secrets.X }} resolved from a map, and, harsher than GitHub, a
// fresh empty HOME and FLEET_HOME for every step, as if each ran on its
// own runner: nothing fleet keeps on disk survives from one to the next.
// `uses:` steps are emulated: checkout clones the project at the tag,
// setup-go puts this machine's go on PATH, upload-artifact collects the
// files. The install step's `go install <module>/cmd/fleet@<version>` is
// real: the module is served at that version from a file:// GOPROXY built
// from this work tree.

// ghWorkflow is what the harness reads of a workflow file.
type ghWorkflow struct {
	On struct {
		Push struct {
			Tags []string `yaml:"tags"`
		} `yaml:"push"`
	} `yaml:"on"`
	Concurrency struct {
		Group            string `yaml:"group"`
		CancelInProgress bool   `yaml:"cancel-in-progress"`
	} `yaml:"concurrency"`
	Defaults ghDefaults        `yaml:"defaults"`
	Env      map[string]string `yaml:"env"`
	Jobs     map[string]ghJob  `yaml:"jobs"`
}

type ghDefaults struct {
	Run struct {
		Shell            string `yaml:"shell"`
		WorkingDirectory string `yaml:"working-directory"`
	} `yaml:"run"`
}

type ghJob struct {
	RunsOn   string            `yaml:"runs-on"`
	Env      map[string]string `yaml:"env"`
	Defaults ghDefaults        `yaml:"defaults"`
	Steps    []ghStep          `yaml:"steps"`
}

type ghStep struct {
	Name             string            `yaml:"name"`
	If               string            `yaml:"if"`
	Uses             string            `yaml:"uses"`
	Run              string            `yaml:"run"`
	Shell            string            `yaml:"shell"`
	WorkingDirectory string            `yaml:"working-directory"`
	Env              map[string]string `yaml:"env"`
	With             map[string]any    `yaml:"with"`
}

func (s ghStep) title() string {
	if s.Name != "" {
		return s.Name
	}
	if s.Uses != "" {
		return s.Uses
	}
	return strings.SplitN(strings.TrimSpace(s.Run), "\n", 2)[0]
}

func readWorkflow(t testing.TB, path string) *ghWorkflow {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wf ghWorkflow
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&wf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &wf
}

// ciRunner runs workflow jobs.
type ciRunner struct {
	t testing.TB
	// origin is the project's git repository (with its tags): what
	// actions/checkout clones.
	origin string
	// secrets are the repository's secrets (${{ secrets.NAME }}).
	secrets map[string]string
	// vars go into every step's environment: FLEET_API_URL of the local
	// cloud, standing in for api.digitalocean.com.
	vars map[string]string
	// goproxy serves fleet's module to the install step.
	goproxy string
	// gobin is where go install puts fleet: on every step's PATH, as
	// setup-go puts GOPATH/bin there for the job.
	gobin string
	// stepTimeout bounds one step.
	stepTimeout time.Duration
}

type stepResult struct {
	Name           string
	Skipped        bool
	Code           int
	Stdout, Stderr string
}

type jobResult struct {
	Steps     []stepResult
	Failed    bool
	Artifacts map[string][]byte // uploaded files by path
}

func (j jobResult) step(name string) stepResult {
	for _, s := range j.Steps {
		if s.Name == name {
			return s
		}
	}
	return stepResult{Name: name, Skipped: true, Code: -1}
}

func (j jobResult) String() string {
	var b strings.Builder
	for _, s := range j.Steps {
		if s.Skipped {
			fmt.Fprintf(&b, "--- %s: skipped\n", s.Name)
			continue
		}
		fmt.Fprintf(&b, "--- %s: exit %d\nstdout:\n%s\nstderr:\n%s\n", s.Name, s.Code, s.Stdout, s.Stderr)
	}
	return b.String()
}

var exprRE = regexp.MustCompile(`\$\{\{\s*([^}]*?)\s*\}\}`)

// expand resolves the expressions fleet's workflow uses; any other is a
// harness error rather than a silent empty string.
func (c *ciRunner) expand(s, tag string) string {
	return exprRE.ReplaceAllStringFunc(s, func(m string) string {
		e := strings.TrimSpace(exprRE.FindStringSubmatch(m)[1])
		switch {
		case strings.HasPrefix(e, "secrets."):
			return c.secrets[strings.TrimPrefix(e, "secrets.")] // an unset secret is "" on GitHub too
		case e == "github.ref_name":
			return tag
		}
		c.t.Fatalf("workflow harness: expression %q is not emulated", m)
		return ""
	})
}

// runJob runs job of wf for a push of tag, each step as on its own runner.
func (c *ciRunner) runJob(wf *ghWorkflow, jobName, tag string) jobResult {
	t := c.t
	t.Helper()
	job, ok := wf.Jobs[jobName]
	if !ok {
		t.Fatalf("workflow has no job %q", jobName)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	goEnv := func(k string) string {
		out, err := exec.Command(goBin, "env", k).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	gocache, gomodcache := goEnv("GOCACHE"), t.TempDir()

	workspace := filepath.Join(t.TempDir(), "workspace")
	var res jobResult
	res.Artifacts = map[string][]byte{}
	sha := ""
	for i, st := range job.Steps {
		name := st.title()
		switch st.If {
		case "", "success()":
			if res.Failed {
				res.Steps = append(res.Steps, stepResult{Name: name, Skipped: true})
				continue
			}
		case "always()":
		case "failure()":
			if !res.Failed {
				res.Steps = append(res.Steps, stepResult{Name: name, Skipped: true})
				continue
			}
		default:
			t.Fatalf("step %d %q: if: %q is not emulated", i, name, st.If)
		}
		home := t.TempDir()
		env := map[string]string{
			"PATH":              c.gobin + ":" + filepath.Dir(goBin) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME":              home,
			"FLEET_HOME":        filepath.Join(t.TempDir(), "fleet-home"),
			"LANG":              "C.UTF-8",
			"CI":                "true",
			"GITHUB_ACTIONS":    "true",
			"GITHUB_EVENT_NAME": "push",
			"GITHUB_REF":        "refs/tags/" + tag,
			"GITHUB_REF_NAME":   tag,
			"GITHUB_REF_TYPE":   "tag",
			"GITHUB_SHA":        sha,
			"GITHUB_WORKSPACE":  workspace,
			"GITHUB_REPOSITORY": "example/" + filepath.Base(c.origin),
			"GITHUB_SERVER_URL": "https://github.com",
			"GITHUB_RUN_ID":     "4242",
			"GITHUB_ACTOR":      "e2e-ci",
			"RUNNER_OS":         "Linux",
			"RUNNER_TEMP":       t.TempDir(),
			// setup-go's Go; the build cache is only a cache.
			"GOBIN":      c.gobin,
			"GOCACHE":    gocache,
			"GOMODCACHE": gomodcache,
			"GOFLAGS":    "-modcacherw",
			"GOPROXY":    c.goproxy,
			"GONOSUMDB":  "github.com/fleetdeploy/fleet",
			"GOTOOLCHAIN": func() string {
				if v := os.Getenv("GOTOOLCHAIN"); v != "" {
					return v
				}
				return "local"
			}(),
		}
		for k, v := range c.vars {
			env[k] = v
		}
		for _, m := range []map[string]string{wf.Env, job.Env, st.Env} {
			for k, v := range m {
				env[k] = c.expand(v, tag)
			}
		}
		r := stepResult{Name: name}
		switch {
		case st.Uses != "":
			r.Code = c.emulate(st, tag, workspace, &res)
			if strings.HasPrefix(st.Uses, "actions/checkout@") {
				out, err := exec.Command("git", "-C", workspace, "rev-parse", "HEAD").Output()
				if err != nil {
					t.Fatal(err)
				}
				sha = strings.TrimSpace(string(out))
			}
		case st.Run != "":
			shell := firstNonEmpty(st.Shell, job.Defaults.Run.Shell, wf.Defaults.Run.Shell)
			dir := workspace
			if wd := firstNonEmpty(st.WorkingDirectory, job.Defaults.Run.WorkingDirectory, wf.Defaults.Run.WorkingDirectory); wd != "" {
				dir = filepath.Join(workspace, wd)
			}
			r.Code, r.Stdout, r.Stderr = c.runScript(shell, c.expand(st.Run, tag), dir, env)
		default:
			t.Fatalf("step %d %q: neither uses: nor run:", i, name)
		}
		t.Logf("step %q: exit %d", name, r.Code)
		res.Steps = append(res.Steps, r)
		if r.Code != 0 {
			res.Failed = true
		}
	}
	return res
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// runScript runs a run: step as GitHub's runner does on Linux: the script
// in a file, `bash --noprofile --norc -eo pipefail FILE` for shell: bash,
// `bash -e FILE` when no shell is named; stdin is /dev/null, no TTY.
func (c *ciRunner) runScript(shell, script, dir string, env map[string]string) (int, string, string) {
	t := c.t
	var argv []string
	switch shell {
	case "bash":
		argv = []string{"bash", "--noprofile", "--norc", "-eo", "pipefail"}
	case "":
		argv = []string{"bash", "-e"}
	case "sh":
		argv = []string{"sh", "-e"}
	default:
		t.Fatalf("workflow harness: shell %q is not emulated", shell)
	}
	f := filepath.Join(env["RUNNER_TEMP"], "step.sh")
	if err := os.WriteFile(f, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.stepTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], f)...)
	cmd.Dir = dir
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Its own process group, ended as a whole on timeout (GitHub cancels
	// the same way).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Errorf("step timed out after %s", c.stepTimeout)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run step: %v", err)
	}
	return code, out.String(), errOut.String()
}

// emulate stands in for the actions fleet's workflow uses, checking that
// they are asked for what fleet needs.
func (c *ciRunner) emulate(st ghStep, tag, workspace string, res *jobResult) int {
	t := c.t
	action, _, _ := strings.Cut(st.Uses, "@")
	switch action {
	case "actions/checkout":
		// fleet takes the stack from the tag: the history and tags must
		// be fetched (checkout's default is one commit, no tags).
		if st.With["fetch-depth"] != 0 || st.With["fetch-tags"] != true {
			t.Errorf("checkout with %v: fleet needs fetch-depth: 0 and fetch-tags: true", st.With)
		}
		if out, err := exec.Command("git", "clone", "-q", c.origin, workspace).CombinedOutput(); err != nil {
			t.Fatalf("checkout: git clone: %v\n%s", err, out)
		}
		gitIn(t, workspace, "checkout", "-q", "--detach", "refs/tags/"+tag)
		return 0
	case "actions/setup-go":
		if st.With["go-version"] == nil {
			t.Errorf("setup-go without a go-version")
		}
		return 0
	case "actions/upload-artifact":
		p, _ := st.With["path"].(string)
		missing := 0
		for _, l := range strings.Split(strings.TrimSpace(p), "\n") {
			l = strings.TrimSpace(l)
			data, err := os.ReadFile(filepath.Join(workspace, l))
			if err != nil {
				missing++
				continue
			}
			res.Artifacts[l] = data
		}
		if missing > 0 && st.With["if-no-files-found"] == "error" {
			return 1
		}
		return 0
	}
	t.Fatalf("workflow harness: action %s is not emulated", st.Uses)
	return 1
}

// moduleProxy serves this work tree as version of fleet's module from a
// file:// GOPROXY directory, then whatever this machine's go uses (its
// module cache first, so no dependency is downloaded twice).
func moduleProxy(t testing.TB, version string) string {
	t.Helper()
	const path = "github.com/fleetdeploy/fleet"
	src := workTreeCopy(t)
	dir := t.TempDir()
	vdir := filepath.Join(dir, path, "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(vdir, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := modzip.CreateFromDir(f, module.Version{Path: path, Version: version}, src); err != nil {
		t.Fatalf("module zip: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]string{"Version": version, "Time": time.Now().UTC().Format(time.RFC3339)})
	for name, data := range map[string][]byte{
		version + ".mod":  gomod,
		version + ".info": info,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("go", "env", "GOPROXY", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return "file://" + dir + ",file://" + filepath.Join(lines[1], "cache", "download") + "," + lines[0]
}

// initProject makes a git repository, runs `fleet init --ci github` in it
// as an operator would, and commits the result (not the deploy key, which
// .gitignore keeps out).
func initProject(t testing.TB, bin, fleetVersion string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "site")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "init", "-q", "-b", "main")
	cmd := exec.Command(bin, append([]string{"init", "--ci", "github", "--fleet-version", fleetVersion}, extra...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fleet init: %v\n%s", err, out)
	}
	gitIn(t, dir, "add", "-A")
	out, err := exec.Command("git", "-C", dir, "ls-files").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"keys/deploy\n", ".env.secrets"} {
		if strings.Contains(string(out), secret) {
			t.Fatalf("git would commit %s:\n%s", strings.TrimSpace(secret), out)
		}
	}
	gitIn(t, dir, "commit", "-q", "-m", "fleet init")
	return dir
}

// TestWorkflowProvisionOnly: the workflow fleet init writes deploys a
// provision-only project on tag pushes, each step on a fresh runner: a
// failing fleet fails its step and the job (pipefail) while its JSON is
// still uploaded; v1.0.0 is brought up and promoted; v1.1.0 replaces it.
func TestWorkflowProvisionOnly(t *testing.T) {
	const fleetVersion = "v0.99.0" // served by moduleProxy; never a real release's
	const token = "e2e-workflow-token"
	bin := fleetBin(t)
	dir := initProject(t, bin, fleetVersion, "--project", "wf")
	gitIn(t, dir, "tag", "v1.0.0")
	wf := readWorkflow(t, filepath.Join(dir, ".github", "workflows", "deploy.yml"))
	if wf.Concurrency.Group != "fleet-deploy-wf" || wf.Concurrency.CancelInProgress {
		t.Errorf("concurrency %+v", wf.Concurrency)
	}
	key, err := os.ReadFile(filepath.Join(dir, "keys", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	api := serve(t, bin, token)
	c := &ciRunner{
		t:       t,
		origin:  dir,
		secrets: map[string]string{"DIGITALOCEAN_TOKEN": "wrong-token", "FLEET_SSH_KEY": string(key)},
		// The memory droplets answer SSH on a port of their own: the
		// runner's environment says which, as a cloud's network would.
		vars:        map[string]string{"FLEET_API_URL": api, "FLEET_SSH_PORT": os.Getenv("FLEET_SSH_PORT")},
		goproxy:     moduleProxy(t, fleetVersion),
		gobin:       t.TempDir(),
		stepTimeout: 15 * time.Minute,
	}
	cli := &runner{t: t, bin: bin, dir: dir, env: []string{"FLEET_API_URL=" + api, "DIGITALOCEAN_TOKEN=" + token, "FLEET_HOME=" + t.TempDir()}}

	// A bad token: fleet up exits 4 through `| tee`, the job fails, promote
	// is skipped, and up.json (fleet's JSON error) is still uploaded.
	res := c.runJob(wf, "deploy", "v1.0.0")
	install := res.step("Install fleet " + fleetVersion)
	if install.Code != 0 || !strings.Contains(install.Stdout, "fleet "+fleetVersion+"\n") {
		t.Fatalf("the install step did not install fleet %s:\n%s", fleetVersion, res)
	}
	if up := res.step("fleet up"); up.Code != 4 || !res.Failed {
		t.Fatalf("fleet up with a bad token: exit %d (job failed: %v), want 4 failing the job:\n%s", up.Code, res.Failed, res)
	}
	if p := res.step("fleet promote"); !p.Skipped {
		t.Errorf("promote ran after a failed up:\n%s", res)
	}
	var upErr struct {
		Error struct {
			Code string `json:"code"`
			Exit int    `json:"exit"`
		} `json:"error"`
	}
	if err := json.Unmarshal(res.Artifacts["up.json"], &upErr); err != nil || upErr.Error.Code != "config" || upErr.Error.Exit != 4 {
		t.Errorf("uploaded up.json %q (%v): want fleet's JSON error, exit 4", res.Artifacts["up.json"], err)
	}
	// The installed fleet is the module at the pinned version.
	if out, err := exec.Command("go", "version", "-m", filepath.Join(c.gobin, "fleet")).Output(); err != nil || !strings.Contains(string(out), "mod\tgithub.com/fleetdeploy/fleet\t"+fleetVersion) {
		t.Errorf("go version -m of the installed fleet: %v\n%s", err, out)
	}

	c.secrets["DIGITALOCEAN_TOKEN"] = token
	for _, tag := range []string{"v1.0.0", "v1.1.0"} {
		if tag != "v1.0.0" {
			gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", tag)
			gitIn(t, dir, "tag", tag)
		}
		res := c.runJob(wf, "deploy", tag)
		if res.Failed {
			t.Fatalf("deploy of %s failed:\n%s", tag, res)
		}
		for _, f := range []string{"up.json", "promote.json"} {
			var v map[string]any
			if err := json.Unmarshal(res.Artifacts[f], &v); err != nil {
				t.Fatalf("%s: uploaded %s is not JSON (%v):\n%s", tag, f, err, res.Artifacts[f])
			}
		}
		if got := roles(cli.status()); got[tag] != "live" {
			t.Fatalf("after the %s workflow: roles %v, want %s live", tag, got, tag)
		}
	}
	if got := roles(cli.status()); got["v1.0.0"] != "previous" {
		t.Errorf("after v1.1.0: roles %v, want v1.0.0 previous", got)
	}
}

// retag puts files (the spec, the workflow, .gitignore) into each release:
// a commit on top of each tag, and the tag moved to it, as if the
// operator had committed them before tagging. The blog's spec names
// addresses the test only knows once the local cloud runs, after the
// release repository was built.
func retag(t testing.TB, dir string, files []string, tags ...string) {
	t.Helper()
	saved := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		saved[f] = data
	}
	for _, tag := range tags {
		gitIn(t, dir, "checkout", "-q", "--detach", "refs/tags/"+tag)
		writeFiles(t, dir, saved)
		gitIn(t, dir, append([]string{"add", "--"}, files...)...)
		gitIn(t, dir, "commit", "-q", "--allow-empty", "-m", "fleet spec and workflow for "+tag)
		gitIn(t, dir, "tag", "-f", tag)
	}
	gitIn(t, dir, "checkout", "-q", "main")
	writeFiles(t, dir, saved) // main does not track them: checkout removed them
}

func writeFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for f, data := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWorkflowBlog is issue 11's done-when: the generated workflow, each
// step on a fresh runner, deploys the blog v1.0.0 (up + promote), then
// v1.1.0 with its data carried from the live droplet; then `fleet
// rollback` and `fleet ssh -- true`, each from yet another fresh home. No
// host-key pin is ever copied between homes: every fresh home must verify
// droplets against what the cloud records (h-ready's fleet-hostkey tags).
//
// The fresh runners for rollback and ssh have only the token and
// FLEET_SSH_KEY: fleet ssh hands the key to the system ssh through an
// agent of its own, never a file.
func TestWorkflowBlog(t *testing.T) {
	const fleetVersion = "v0.99.0"
	const port = 18515
	e := newBlogEnv(t, port)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	token, err := os.ReadFile(filepath.Join(e.home, "local", "token"))
	if err != nil {
		t.Fatal(err)
	}

	// The operator's fleet init keeps the blog's spec and writes the
	// workflow, with a FLEET_SECRET_* per secret the compose files declare.
	cmd := exec.Command(e.r.bin, "init", "--ci", "github", "--fleet-version", fleetVersion, "--json")
	cmd.Dir = e.dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleet init: %v\n%s", err, out)
	}
	var rep struct {
		Secrets []string `json:"secrets"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Secrets) == 0 {
		t.Fatalf("fleet init --json: %v, no secrets:\n%s", err, out)
	}
	retag(t, e.dir, []string{"droplets.yaml", ".gitignore", ".github/workflows/deploy.yml"}, "v1.0.0", "v1.1.0")
	wf := readWorkflow(t, filepath.Join(e.dir, ".github", "workflows", "deploy.yml"))

	// The repository's secrets: the token, the deploy key, and the values
	// of the operator's .env.secrets under their FLEET_SECRET_* names.
	key, err := os.ReadFile(filepath.Join(e.dir, "keys", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"DIGITALOCEAN_TOKEN": strings.TrimSpace(string(token)), "FLEET_SSH_KEY": string(key)}
	dotenv, err := os.ReadFile(filepath.Join(e.dir, ".env.secrets"))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(dotenv)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			secrets[stack.EnvVar(k)] = v
		}
	}
	for _, v := range rep.Secrets {
		if secrets[v] == "" {
			t.Fatalf("the workflow passes %s, which .env.secrets does not hold", v)
		}
	}
	c := &ciRunner{
		t: t, origin: e.dir, secrets: secrets,
		vars:        map[string]string{"FLEET_API_URL": api},
		goproxy:     moduleProxy(t, fleetVersion),
		gobin:       t.TempDir(),
		stepTimeout: 20 * time.Minute,
	}

	// v1.0.0 from CI.
	if res := c.runJob(wf, "deploy", "v1.0.0"); res.Failed {
		t.Fatalf("the v1.0.0 workflow failed:\n%s", res)
	}
	e.waitCert(time.Minute)
	s := e.site(false)
	if err := s.login("admin", e.adminPwd); err != nil {
		t.Fatal(err)
	}
	if err := s.addPost("Written before v1.1.0", "before-v110", "Carried by fleet.", "fleet", nil); err != nil {
		t.Fatal(err)
	}

	// v1.1.0 from CI: its up backs the live droplet up from a fresh home.
	res := c.runJob(wf, "deploy", "v1.1.0")
	if res.Failed {
		t.Fatalf("the v1.1.0 workflow failed:\n%s", res)
	}
	var up map[string]any
	if err := json.Unmarshal(res.Artifacts["up.json"], &up); err != nil || up["data"] == nil {
		t.Errorf("v1.1.0's up.json reports no data carried (%v):\n%s", err, res.Artifacts["up.json"])
	}
	if got := e.posts(e.site(false)).Posts; len(got) != 1 {
		t.Fatalf("v1.1.0 serves %d posts, want the 1 written on v1.0.0", len(got))
	}

	// rollback and ssh, each from a fresh home and a fresh checkout, with
	// only the secrets a runner has.
	fresh := func() *runner {
		ws := filepath.Join(t.TempDir(), "ws")
		// A job checks out the tag it runs for (main does not track the spec here).
		if out, err := exec.Command("git", "clone", "-q", "--branch", "v1.1.0", e.dir, ws).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		home := t.TempDir()
		return &runner{t: t, bin: filepath.Join(c.gobin, "fleet"), dir: ws, env: []string{
			"HOME=" + home, "FLEET_HOME=" + filepath.Join(home, "fleet"), "SSH_AUTH_SOCK=", "CI=true",
			"FLEET_API_URL=" + api, "DIGITALOCEAN_TOKEN=" + secrets["DIGITALOCEAN_TOKEN"], "FLEET_SSH_KEY=" + secrets["FLEET_SSH_KEY"],
		}}
	}
	fresh().ok("rollback", "--yes")
	if got := roles(e.r.status()); got["v1.0.0"] != "live" {
		t.Fatalf("after rollback: roles %v, want v1.0.0 live", got)
	}
	fresh().ok("ssh", "--", "true")
}
