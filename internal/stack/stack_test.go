package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/spec"
)

// gitEnv isolates git from the user's configuration.
func gitEnv(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (stacks come from git tags): %v", err)
	}
	for k, v := range map[string]string{
		"GIT_CONFIG_GLOBAL": os.DevNull, "GIT_CONFIG_NOSYSTEM": "1",
		"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
		"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
	} {
		t.Setenv(k, v)
	}
}

func run(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// write creates files (slash paths; a value starting with "->" makes a
// symlink to the rest).
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(body, "->"); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(body, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// commit writes files, commits everything and tags the commit (if tag != "").
func commit(t *testing.T, dir string, files map[string]string, tag string) {
	t.Helper()
	write(t, dir, files)
	run(t, dir, "git", "add", "-A")
	run(t, dir, "git", "commit", "-q", "--allow-empty", "-m", "c")
	if tag != "" {
		run(t, dir, "git", "tag", tag)
	}
}

func newRepo(t *testing.T) string {
	t.Helper()
	gitEnv(t)
	dir := t.TempDir()
	run(t, dir, "git", "init", "-q", "-b", "main")
	return dir
}

const helloCompose = `x-common: &common
  restart: unless-stopped
services:
  app:
    <<: *common
    build: ./app
    image: hello-app:${FLEET_VERSION:-dev}
    secrets: [hello_token]
  nginx:
    build:
      context: nginx
      dockerfile: Dockerfile.nginx
    image: hello-nginx
    secrets:
      - source: hello_token
  db:
    image: postgres:17
secrets:
  hello_token:
    file: ${FLEET_SECRETS_DIR:-./secrets}/hello_token
  api_key:
    environment: API_KEY
  shared:
    external: true
`

var helloFiles = map[string]string{
	"droplets.yaml":                        "project: hello\n",
	".gitignore":                           "secrets.env\n*.log\n",
	"stacks/hello/compose.yaml":            helloCompose,
	"stacks/hello/README.md":               "not shipped\n",
	"stacks/hello/notes/todo.txt":          "not shipped\n",
	"stacks/hello/app/Dockerfile":          "FROM debian:trixie-slim\n",
	"stacks/hello/app/app.py":              "#!/usr/bin/env python3\n",
	"stacks/hello/app/static/index.html":   "<p>hi</p>\n",
	"stacks/hello/app/link":                "->app.py",
	"stacks/hello/nginx/Dockerfile.nginx":  "FROM debian:trixie-slim\n",
	"stacks/hello/nginx/conf.d/hello.conf": "server {}\n",
	"stacks/hello/nginx/conf.d/extra.conf": "# x\n",
	"stacks/hello/compose.other.yaml":      "services: {}\n",
	"stacks/hello/secrets/hello_token.txt": "not a real secret, not shipped\n",
	"stacks/other/file.txt":                "outside the stack\n",
}

var helloTar = []string{
	"app/", "app/Dockerfile", "app/app.py", "app/link", "app/static/", "app/static/index.html",
	"compose.yaml",
	"nginx/", "nginx/Dockerfile.nginx", "nginx/conf.d/", "nginx/conf.d/extra.conf", "nginx/conf.d/hello.conf",
}

func stackSpec(files ...string) *spec.Stack {
	if len(files) == 0 {
		files = []string{"compose.yaml"}
	}
	return &spec.Stack{Dir: "stacks/hello", Compose: files, Build: spec.BuildRemote}
}

// tarEntries lists a tar's entry names (symlinks as name->target) and
// checks the headers are normalized.
func tarEntries(t *testing.T, b *Bundle) ([]string, map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if err := b.Tar(&buf); err != nil {
		t.Fatalf("Tar: %v", err)
	}
	var again bytes.Buffer
	if err := b.Tar(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("Tar is not deterministic")
	}
	tr := tar.NewReader(&buf)
	var names []string
	bodies := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: header not normalized: uid %d gid %d mtime %v", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		names = append(names, h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			bodies[h.Name] = string(data)
			if want := int64(0o644); strings.HasSuffix(h.Name, ".py") {
				if h.Mode != 0o755 {
					t.Errorf("%s: mode %o, want 755", h.Name, h.Mode)
				}
			} else if h.Mode != want {
				t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, want)
			}
		case tar.TypeSymlink:
			bodies[h.Name] = "->" + h.Linkname
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("tar entries are not sorted: %v", names)
	}
	return names, bodies
}

func TestPrepare(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		setup    func(t *testing.T, repo string) // after the tagged helloFiles commit
		repoDir  string                          // relative to the repository ("" = top)
		st       *spec.Stack
		version  string
		worktree bool
		wantErr  string // substring; "" = success
		check    func(t *testing.T, b *Bundle)
	}{
		{
			name: "tag", version: "v1.0.0",
			setup: func(t *testing.T, repo string) {
				// Work-tree changes after the tag are not in the release.
				write(t, repo, map[string]string{"stacks/hello/app/new.txt": "later\n", "stacks/hello/app/app.py": "#!changed\n"})
			},
			check: func(t *testing.T, b *Bundle) {
				want := Bundle{
					Compose:  []string{"compose.yaml"},
					Contexts: []string{"app", "nginx"},
					Secrets:  []string{"api_key", "hello_token"},
					Images:   []string{"hello-app:${FLEET_VERSION:-dev}", "hello-nginx", "postgres:17"},
				}
				if !slices.Equal(b.Compose, want.Compose) || !slices.Equal(b.Contexts, want.Contexts) ||
					!slices.Equal(b.Secrets, want.Secrets) || !slices.Equal(b.Images, want.Images) {
					t.Errorf("bundle = %+v, want %+v", *b, want)
				}
				names, bodies := tarEntries(t, b)
				if !slices.Equal(names, helloTar) {
					t.Errorf("tar entries:\n got %q\nwant %q", names, helloTar)
				}
				if bodies["app/app.py"] != "#!/usr/bin/env python3\n" || bodies["app/link"] != "->app.py" {
					t.Errorf("tar bodies: %q", bodies)
				}
				if _, err := os.Stat(filepath.Join(b.Root, "README.md")); err != nil {
					t.Errorf("Root lacks the stack's other files: %v", err)
				}
			},
		},
		{
			name: "tag missing", version: "v1.2.0",
			wantErr: "git tag v1.2.0 does not exist in ",
			check:   func(t *testing.T, b *Bundle) {},
		},
		{
			name: "stack dir missing at tag", version: "v0.1.0",
			setup: func(t *testing.T, repo string) {
				run(t, repo, "git", "tag", "v0.1.0", "HEAD~1")
			},
			wantErr: "stack dir stacks/hello does not exist at tag v0.1.0",
		},
		{
			name: "from worktree", version: "v2.0.0", worktree: true,
			setup: func(t *testing.T, repo string) {
				write(t, repo, map[string]string{
					"stacks/hello/app/new.txt":    "untracked\n",
					"stacks/hello/app/app.log":    "ignored\n",
					"stacks/hello/api/Dockerfile": "FROM x\n",
					"stacks/hello/compose.yaml":   helloCompose + "\n" + "  # edited\n",
				})
				if err := os.Remove(filepath.Join(repo, "stacks/hello/app/static/index.html")); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, b *Bundle) {
				names, bodies := tarEntries(t, b)
				want := []string{"app/", "app/Dockerfile", "app/app.py", "app/link", "app/new.txt", "compose.yaml",
					"nginx/", "nginx/Dockerfile.nginx", "nginx/conf.d/", "nginx/conf.d/extra.conf", "nginx/conf.d/hello.conf"}
				if !slices.Equal(names, want) {
					t.Errorf("tar entries:\n got %q\nwant %q", names, want)
				}
				if !strings.Contains(bodies["compose.yaml"], "# edited") {
					t.Error("the work tree's compose.yaml was not used")
				}
			},
		},
		{
			name: "override file and project-relative paths",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{
					"stacks/hello/prod/compose.prod.yaml": "services:\n  app:\n    build:\n      context: ./app2\n    image: hello-app:prod\n  nginx:\n    build: !reset null\n",
					"stacks/hello/app2/Dockerfile":        "FROM x\n",
				}, "")
				run(t, repo, "git", "tag", "-a", "-m", "annotated", "v1.1.0")
			},
			st: stackSpec("compose.yaml", "prod/compose.prod.yaml"), version: "v1.1.0",
			check: func(t *testing.T, b *Bundle) {
				// Like docker compose, paths in every file resolve against
				// the first file's directory.
				if !slices.Equal(b.Contexts, []string{"app2"}) || !slices.Contains(b.Images, "hello-app:prod") {
					t.Errorf("contexts %v images %v", b.Contexts, b.Images)
				}
				names, _ := tarEntries(t, b)
				want := []string{"app2/", "app2/Dockerfile", "compose.yaml", "prod/", "prod/compose.prod.yaml"}
				if !slices.Equal(names, want) {
					t.Errorf("tar entries:\n got %q\nwant %q", names, want)
				}
			},
		},
		{
			name: "spec in a subdirectory", version: "v3.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{
					"ops/droplets.yaml":         "project: hello\n",
					"ops/stack/compose.yaml":    "services:\n  web:\n    build: .\n",
					"ops/stack/Dockerfile":      "FROM x\n",
					"ops/stack/sub/file.txt":    "x\n",
					"stacks/hello/compose.yaml": "bad: [\n",
				}, "v3.0.0")
			},
			repoDir: "ops", st: &spec.Stack{Dir: "stack", Compose: []string{"compose.yaml"}},
			check: func(t *testing.T, b *Bundle) {
				names, _ := tarEntries(t, b)
				want := []string{"Dockerfile", "compose.yaml", "sub/", "sub/file.txt"}
				if !slices.Equal(names, want) || !slices.Equal(b.Contexts, []string{"."}) {
					t.Errorf("tar entries %q contexts %q, want %q", names, b.Contexts, want)
				}
			},
		},
		{
			name: "stack dir missing in the work tree", version: "v1.0.0", worktree: true,
			st:      &spec.Stack{Dir: "stacks/nope", Compose: []string{"compose.yaml"}},
			wantErr: "stack dir stacks/nope does not exist in the work tree of ",
		},
		{
			name: "stack dir is a file at tag", version: "v1.0.0",
			st:      &spec.Stack{Dir: "droplets.yaml", Compose: []string{"compose.yaml"}},
			wantErr: "stack dir droplets.yaml at tag v1.0.0 is not a directory",
		},
		{
			name: "missing compose file", version: "v1.0.0", st: stackSpec("compose.yaml", "compose.prod.yaml"),
			wantErr: "compose file compose.prod.yaml does not exist in stacks/hello at tag v1.0.0",
		},
		{
			name: "invalid yaml", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "services:\n  app:\n    build: [\n"}, "v4.0.0")
			},
			wantErr: "stacks/hello/compose.yaml:3: did not find expected node content",
		},
		{
			name: "services not a mapping", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "# c\nservices: [app]\n"}, "v4.0.0")
			},
			wantErr: "stacks/hello/compose.yaml:2: services: expected a mapping",
		},
		{
			name: "context outside the stack dir", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "services:\n  app:\n    build: ../../other\n"}, "v4.0.0")
			},
			wantErr: "compose.yaml:3: services.app.build.context: ../../other is outside the stack dir stacks/hello",
		},
		{
			name: "context missing", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "services:\n  app:\n    build:\n      context: ./nope\n"}, "v4.0.0")
			},
			wantErr: "compose.yaml:4: services.app.build.context: ./nope does not exist in stacks/hello at tag v4.0.0",
		},
		{
			name: "env_file outside every context", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "services:\n  app:\n    build: ./app\n    env_file: [app.env, {path: opt.env, required: false}]\n"}, "v4.0.0")
			},
			wantErr: "compose.yaml:4: services.app.env_file: app.env is not shipped",
		},
		{
			name: "undefined secret", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/compose.yaml": "services:\n  app:\n    image: x\n    secrets: [nope]\n"}, "v4.0.0")
			},
			wantErr: `compose.yaml:4: secret "nope" is not defined`,
		},
		{
			name: "symlink escaping", version: "v4.0.0",
			setup: func(t *testing.T, repo string) {
				commit(t, repo, map[string]string{"stacks/hello/app/evil": "->../../../droplets.yaml"}, "v4.0.0")
			},
			wantErr: "symlink app/evil points outside the stack dir",
		},
		{
			name: "secrets file in a build context", version: "v1.0.0", worktree: true,
			setup: func(t *testing.T, repo string) {
				write(t, repo, map[string]string{"stacks/hello/app/secrets.env": "hello_token=x\n"})
			},
			st:      &spec.Stack{Dir: "stacks/hello", Compose: []string{"compose.yaml"}, Secrets: spec.Secrets{File: "stacks/hello/app/secrets.env"}},
			wantErr: "the secrets file stacks/hello/app/secrets.env is inside the build context stacks/hello/app",
		},
		{
			name: "secrets file in the stack dir, outside contexts", version: "v1.0.0", worktree: true,
			setup: func(t *testing.T, repo string) {
				write(t, repo, map[string]string{"stacks/hello/secrets.env": "hello_token=x\n"})
			},
			st: &spec.Stack{Dir: "stacks/hello", Compose: []string{"compose.yaml"}, Secrets: spec.Secrets{File: "stacks/hello/secrets.env"}},
			check: func(t *testing.T, b *Bundle) {
				names, _ := tarEntries(t, b)
				if !slices.Equal(names, helloTar) {
					t.Errorf("tar entries:\n got %q\nwant %q", names, helloTar)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newRepo(t)
			commit(t, repo, map[string]string{"README": "first\n"}, "")
			commit(t, repo, helloFiles, "v1.0.0")
			if tt.setup != nil {
				tt.setup(t, repo)
			}
			st := tt.st
			if st == nil {
				st = stackSpec()
			}
			if f := st.Secrets.File; f != "" && !filepath.IsAbs(f) {
				c := *st
				c.Secrets.File = filepath.Join(repo, tt.repoDir, f) // as spec.Load resolves it
				st = &c
			}
			b, err := Prepare(ctx, filepath.Join(repo, tt.repoDir), st, tt.version, tt.worktree)
			if tt.wantErr != "" {
				if err == nil {
					b.Close()
					t.Fatalf("Prepare succeeded, want an error with %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare: %v", err)
			}
			if b.Version != tt.version || b.FromWorktree != tt.worktree {
				t.Errorf("version %q worktree %v", b.Version, b.FromWorktree)
			}
			tt.check(t, b)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(b.Root); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Close left %s behind", b.Root)
			}
		})
	}
}

func TestPrepareTagMissingError(t *testing.T) {
	repo := newRepo(t)
	commit(t, repo, helloFiles, "")
	_, err := Prepare(context.Background(), repo, stackSpec(), "v1.2.0", false)
	top, _ := filepath.EvalSymlinks(repo)
	want := "git tag v1.2.0 does not exist in " + top + ": create and push it, or use --from-worktree"
	if err == nil || !errors.Is(err, ErrNoTag) || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %v, want %q wrapping ErrNoTag", err, want)
	}
}

func TestTarRefusesSecretsFile(t *testing.T) {
	b := &Bundle{Root: t.TempDir(), Compose: []string{"compose.yaml"}, Contexts: []string{"."}, stackDir: "s", secretsFile: "secrets.env"}
	write(t, b.Root, map[string]string{"compose.yaml": "services: {}\n", "secrets.env": "a=b\n"})
	err := b.Tar(io.Discard)
	if err == nil || !strings.Contains(err.Error(), "the secrets file s/secrets.env is inside the build context s,") {
		t.Fatalf("Tar: %v", err)
	}
}

// TestHelloStack prepares the repository's own test stack from the work tree.
func TestHelloStack(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (stacks come from git tags): %v", err)
	}
	if err := exec.Command("git", "-C", "../..", "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not in a git work tree")
	}
	b, err := Prepare(context.Background(), "../..", &spec.Stack{Dir: "stacks/hello", Compose: []string{"compose.yaml"}}, "v0.0.1", true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !slices.Equal(b.Contexts, []string{"app", "nginx"}) || !slices.Equal(b.Secrets, []string{"hello_token"}) ||
		!slices.Equal(b.Images, []string{"hello-app", "hello-nginx"}) {
		t.Errorf("bundle = %+v", *b)
	}
	names, _ := tarEntries(t, b)
	for _, want := range []string{"compose.yaml", "app/Dockerfile", "app/app.py", "nginx/Dockerfile", "nginx/hello.conf"} {
		if !slices.Contains(names, want) {
			t.Errorf("tar lacks %s: %q", want, names)
		}
	}
}
