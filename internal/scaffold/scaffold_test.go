package scaffold

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/spec"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

func opts(dir string) Options {
	return Options{Dir: dir, Project: "web", CI: "github", FleetVersion: "v1.2.3", GoVersion: "1.26"}
}

func actions(r *Report) map[string]Action {
	m := map[string]Action{}
	for _, f := range r.Files {
		m[f.Path] = f.Action
	}
	return m
}

func TestInitFresh(t *testing.T) {
	dir := t.TempDir()
	r, err := Init(t.Context(), opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{GitIgnore, KeyFile, CloudInit, SpecFile, WorkflowFile} {
		if got := actions(r)[p]; got != Created {
			t.Errorf("%s: %q, want created", p, got)
		}
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", KeyFile, st.Mode().Perm())
	}
	// The key pair matches and is what ssh reads.
	priv, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	pub, _ := os.ReadFile(filepath.Join(dir, PubKeyFile))
	s, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatalf("private key: %v", err)
	}
	pk, comment, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	if !bytes.Equal(pk.Marshal(), s.PublicKey().Marshal()) || pk.Type() != ssh.KeyAlgoED25519 || comment != "fleet-deploy@web" {
		t.Errorf("public key %s %q does not match the private ed25519 key", pk.Type(), comment)
	}
	// fleet validate's check.
	sp, err := spec.Load(filepath.Join(dir, SpecFile))
	if err != nil {
		t.Fatalf("generated spec: %v", err)
	}
	if sp.Project != "web" || sp.Provider != "digitalocean" || sp.Droplet.Image != "debian-13-x64" || sp.Stack != nil {
		t.Errorf("spec: project %q provider %q image %q stack %v", sp.Project, sp.Provider, sp.Droplet.Image, sp.Stack)
	}
}

// TestInitConverges: a second run keeps everything; a run interrupted
// after any file is finished by the next.
func TestInitConverges(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(t.Context(), opts(dir)); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	r, err := Init(t.Context(), opts(dir))
	if err != nil {
		t.Fatal(err)
	}
	for p, a := range actions(r) {
		if a != Kept {
			t.Errorf("second run: %s %s, want kept", p, a)
		}
	}
	if after := snapshot(t, dir); !maps(before, after) {
		t.Error("second run changed files")
	}

	// Each file lost (as if the run stopped before writing it) comes back;
	// the others stay byte for byte.
	for _, lost := range []string{PubKeyFile, CloudInit, SpecFile, WorkflowFile, GitIgnore} {
		t.Run(lost, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Init(t.Context(), opts(dir)); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			if err := os.Remove(filepath.Join(dir, lost)); err != nil {
				t.Fatal(err)
			}
			if _, err := Init(t.Context(), opts(dir)); err != nil {
				t.Fatal(err)
			}
			after := snapshot(t, dir)
			if !maps(before, after) {
				t.Errorf("after losing %s, the re-run made a different project", lost)
			}
		})
	}
}

func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestWorkflow: the workflow is YAML with what CI needs, and passes one
// FLEET_SECRET_* per secret of the stack.
func TestWorkflow(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "stacks", "hello"), os.DirFS("../../stacks/hello")); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	o := opts(dir)
	o.StackDir = "stacks/hello"
	r, err := Init(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"FLEET_SECRET_HELLO_TOKEN"}; !slices.Equal(r.Secrets, want) {
		t.Errorf("secrets %v, want %v (warnings %v)", r.Secrets, want, r.Warnings)
	}
	data, err := os.ReadFile(filepath.Join(dir, WorkflowFile))
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		On struct {
			Push struct{ Tags []string } `yaml:"push"`
		} `yaml:"on"`
		Concurrency struct {
			Group            string `yaml:"group"`
			CancelInProgress *bool  `yaml:"cancel-in-progress"`
		}
		Defaults struct{ Run struct{ Shell string } }
		Jobs     map[string]struct {
			Env   map[string]string
			Steps []struct {
				Name string
				Uses string
				If   string
				Run  string
				Env  map[string]string
				With map[string]any
			}
		}
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("workflow: %v\n%s", err, data)
	}
	if !slices.Equal(wf.On.Push.Tags, []string{"v*"}) {
		t.Errorf("on.push.tags %v", wf.On.Push.Tags)
	}
	if wf.Concurrency.Group != "fleet-deploy-web" || wf.Concurrency.CancelInProgress == nil || *wf.Concurrency.CancelInProgress {
		t.Errorf("concurrency %+v", wf.Concurrency)
	}
	if wf.Defaults.Run.Shell != "bash" {
		t.Errorf("defaults.run.shell %q, want bash (pipefail)", wf.Defaults.Run.Shell)
	}
	job := wf.Jobs["deploy"]
	if len(job.Env) != 0 {
		t.Errorf("job env %v: secrets belong to fleet's steps only", job.Env)
	}
	fleetSteps := 0
	for _, s := range job.Steps {
		isFleet := strings.Contains(s.Run, "fleet up") || strings.Contains(s.Run, "fleet promote")
		if !isFleet {
			if len(s.Env) != 0 {
				t.Errorf("step %q gets env %v", s.Name, s.Env)
			}
			continue
		}
		fleetSteps++
		for _, k := range []string{"DIGITALOCEAN_TOKEN", "FLEET_SSH_KEY", "FLEET_SECRET_HELLO_TOKEN"} {
			if s.Env[k] != "${{ secrets."+k+" }}" {
				t.Errorf("step %q: env %s = %q", s.Name, k, s.Env[k])
			}
		}
	}
	if fleetSteps != 2 {
		t.Errorf("%d fleet steps, want up and promote", fleetSteps)
	}
	var uses, runs []string
	for _, s := range job.Steps {
		if s.Uses != "" {
			uses = append(uses, s.Uses)
		}
		if s.Run != "" {
			runs = append(runs, s.Run)
		}
	}
	if !slices.Equal(uses, []string{"actions/checkout@v4", "actions/setup-go@v5", "actions/upload-artifact@v4"}) {
		t.Errorf("uses %v", uses)
	}
	all := strings.Join(runs, "\n")
	for _, want := range []string{
		"go install github.com/fleetdeploy/fleet/cmd/fleet@v1.2.3",
		`fleet up "$GITHUB_REF_NAME" --json`, "| tee up.json",
		"fleet promote --json", "| tee promote.json", "set -o pipefail",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the run steps:\n%s", want, all)
		}
	}
	last := job.Steps[len(job.Steps)-1]
	if last.If != "always()" || last.Uses != "actions/upload-artifact@v4" {
		t.Errorf("last step %+v, want the upload with if: always()", last)
	}
	if co := job.Steps[0]; co.With["fetch-depth"] != 0 || co.With["fetch-tags"] != true {
		t.Errorf("checkout with %v: want the history and tags", co.With)
	}
}

func TestKeyWithoutPublicHalf(t *testing.T) {
	dir := t.TempDir()
	priv, pub, err := NewDeployKey("web")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "keys"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, KeyFile), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Init(t.Context(), Options{Dir: dir, Project: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if actions(r)[KeyFile] != Kept {
		t.Errorf("key: %v", r.Files)
	}
	got, _ := os.ReadFile(filepath.Join(dir, PubKeyFile))
	if !bytes.Equal(got, pub) {
		t.Errorf("public half %q, want %q", got, pub)
	}
	// A file that is no key is never replaced.
	os.Remove(filepath.Join(dir, PubKeyFile))
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600)
	if _, err := Init(t.Context(), Options{Dir: dir, Project: "web"}); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Errorf("Init over a broken key: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, KeyFile)); string(b) != "not a key" {
		t.Error("the broken key file was replaced")
	}
}

// The embedded template is the repository's own: they must not drift.
func TestCloudInitTemplateIsTheRepos(t *testing.T) {
	repo, err := os.ReadFile("../../cloud-init/droplet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := Render("templates/cloud-init.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(repo, emb) {
		t.Error("internal/scaffold/templates/cloud-init.yaml differs from cloud-init/droplet.yaml: copy it over")
	}
}

func TestProjectName(t *testing.T) {
	for in, want := range map[string]string{
		"/src/My Blog":                    "my-blog",
		"/src/hello":                      "hello",
		"/src/2048-game":                  "game",
		"/src/a_very_long_project_name_x": "a-very-long-project",
		"/src/___":                        "",
	} {
		if got := ProjectName(in); got != want {
			t.Errorf("ProjectName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsRelease(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.2.3": true, "v1.0.0-rc.1": true, "v0.1.0": true,
		"dev": false, "v1.2": false, "1.2.3": false, "v1.2.3-dirty": false,
		"v1.2.3-4-gabcdef0": false, "v1.2.3-4-gabcdef0-dirty": false,
		"v0.0.0-20261201000000-abcdefabcdef": false, "(devel)": false, "v1.2.3+meta": false,
	} {
		if got := IsRelease(v); got != want {
			t.Errorf("IsRelease(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestHostileExistingFiles: a FIFO or an oversized file where init reads
// (.gitignore, keys/deploy) is a clear error, never a hang.
func TestHostileExistingFiles(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		fifo       bool
		size       int
	}{
		{name: "fifo gitignore", path: GitIgnore, fifo: true},
		{name: "huge gitignore", path: GitIgnore, size: 2 << 20},
		{name: "fifo key", path: KeyFile, fifo: true},
		{name: "huge key", path: KeyFile, size: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tc.path)
			os.MkdirAll(filepath.Dir(p), 0o700)
			if tc.fifo {
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(p, bytes.Repeat([]byte("x"), tc.size), 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := Init(t.Context(), Options{Dir: dir, Project: "web"})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.path) {
					t.Errorf("Init: %v, want an error naming %s", err, tc.path)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Init hangs on it")
			}
		})
	}
}
