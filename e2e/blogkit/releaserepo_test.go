//go:build e2e

package blogkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the fleet repository this test runs in.
func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// makeRepoScript runs root's stacks/blog-releases/make-repo.sh.
func makeRepoScript(t *testing.T, root, dst string, env []string, versions ...string) string {
	t.Helper()
	cmd := exec.Command("sh", append([]string{filepath.Join(root, BlogReleasesDir, "make-repo.sh"), dst}, versions...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make-repo.sh: %v\n%s", err, out)
	}
	return string(out)
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// sameTrees checks that two repositories have the same tags with the same
// trees.
func sameTrees(t *testing.T, a, b string, tags []string) {
	t.Helper()
	ctx := context.Background()
	if ta, tb := gitOut(t, a, "tag", "--sort=v:refname"), gitOut(t, b, "tag", "--sort=v:refname"); ta != tb || ta != strings.Join(tags, "\n") {
		t.Errorf("tags: Go %q, script %q, want %q", ta, tb, tags)
	}
	for _, tag := range tags {
		ha, err := TagTree(ctx, a, tag)
		if err != nil {
			t.Fatal(err)
		}
		hb, err := TagTree(ctx, b, tag)
		if err != nil {
			t.Fatal(err)
		}
		if ha != hb {
			t.Errorf("%s: Go tree %s, script tree %s\nGo:\n%s\nscript:\n%s", tag, ha, hb,
				gitOut(t, a, "ls-tree", "-r", tag), gitOut(t, b, "ls-tree", "-r", tag))
		}
		if msg := gitOut(t, a, "log", "-1", "--format=%s", tag); msg != "release "+tag {
			t.Errorf("%s: commit message %q", tag, msg)
		}
	}
}

// TestReleaseRepoSynthetic checks the overlay rules on a made-up stack:
// add, replace, DELETE (a file and a directory), modes and symlinks, a
// setup hook, folding an unpicked release; and that make-repo.sh agrees.
func TestReleaseRepoSynthetic(t *testing.T) {
	root := t.TempDir()
	write := func(p, s string, mode os.FileMode) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("stacks/blog/README.md", "v1\n", 0o644)
	write("stacks/blog/app/run", "#!/bin/sh\necho v1\n", 0o755)
	write("stacks/blog/app/old.py", "old\n", 0o644)
	write("stacks/blog/legacy/a.conf", "a\n", 0o644)
	os.Symlink("README.md", filepath.Join(root, "stacks/blog/LINK"))
	write("stacks/blog-releases/v1.1.0/app/new.py", "new\n", 0o644)
	write("stacks/blog-releases/v1.1.0/README.md", "v1.1\n", 0o644)
	write("stacks/blog-releases/v1.2.0/DELETE", "# gone in 1.2\napp/old.py\n\n  legacy  \n", 0o644)
	write("stacks/blog-releases/v1.2.0/app/run", "#!/bin/sh\necho v1.2\n", 0o755)
	write("stacks/blog-releases/v1.10.0/app/ten", "10\n", 0o600)
	script, err := os.ReadFile(filepath.Join(repoRoot(t), BlogReleasesDir, "make-repo.sh"))
	if err != nil {
		t.Fatal(err)
	}
	write("stacks/blog-releases/make-repo.sh", string(script), 0o755)

	vs, err := BlogReleases(root)
	if err != nil || strings.Join(vs, " ") != "v1.0.0 v1.1.0 v1.2.0 v1.10.0" {
		t.Fatalf("BlogReleases = %v, %v", vs, err)
	}
	setup := func(dir string) error {
		return os.WriteFile(filepath.Join(dir, "droplets.yaml"), []byte("provider: local\n"), 0o644)
	}
	goRepo := filepath.Join(t.TempDir(), "go")
	tags := ReleaseRepo(t, root, goRepo, setup)
	if strings.Join(tags, " ") != "v1.0.0 v1.1.0 v1.2.0 v1.10.0" {
		t.Fatalf("tags = %v", tags)
	}
	shRepo := filepath.Join(t.TempDir(), "sh")
	out := makeRepoScript(t, root, shRepo, []string{"MAKE_REPO_SETUP=echo 'provider: local' > droplets.yaml"})
	if strings.Fields(out)[3] != "v1.10.0" {
		t.Errorf("make-repo.sh printed %q", out)
	}
	sameTrees(t, goRepo, shRepo, tags)

	files := func(tag string) string {
		return gitOut(t, goRepo, "ls-tree", "-r", "--format=%(objectmode) %(path)", tag)
	}
	if f := files("v1.0.0"); !strings.Contains(f, "100644 droplets.yaml") || !strings.Contains(f, "120000 stacks/blog/LINK") ||
		!strings.Contains(f, "100755 stacks/blog/app/run") || !strings.Contains(f, "stacks/blog/legacy/a.conf") {
		t.Errorf("v1.0.0:\n%s", f)
	}
	if f := files("v1.2.0"); strings.Contains(f, "old.py") || strings.Contains(f, "legacy") || !strings.Contains(f, "stacks/blog/app/new.py") ||
		!strings.Contains(f, "droplets.yaml") {
		t.Errorf("v1.2.0 (DELETE applied, v1.1.0 kept):\n%s", f)
	}
	if s := gitOut(t, goRepo, "show", "v1.2.0:stacks/blog/app/run"); !strings.Contains(s, "v1.2") {
		t.Errorf("v1.2.0 app/run = %q", s)
	}

	// Picking versions: v1.1.0 is folded into v1.2.0.
	goPick := filepath.Join(t.TempDir(), "go")
	tags = ReleaseRepo(t, root, goPick, nil, "v1.0.0", "v1.2.0")
	shPick := filepath.Join(t.TempDir(), "sh")
	makeRepoScript(t, root, shPick, nil, "v1.0.0", "v1.2.0")
	sameTrees(t, goPick, shPick, tags)
	ha, _ := TagTree(context.Background(), goPick, "v1.2.0")
	if gitOut(t, goPick, "show", "v1.2.0:stacks/blog/README.md") != "v1.1" || strings.Join(tags, " ") != "v1.0.0 v1.2.0" || ha == "" {
		t.Errorf("picked v1.0.0 v1.2.0: tags %v, README %q", tags, gitOut(t, goPick, "show", "v1.2.0:stacks/blog/README.md"))
	}

	// A DELETE naming a missing path is an error, in both.
	write("stacks/blog-releases/v1.1.0/DELETE", "nope.txt\n", 0o644)
	if _, err := BuildReleaseRepo(context.Background(), root, filepath.Join(t.TempDir(), "x"), nil); err == nil || !strings.Contains(err.Error(), "nope.txt") {
		t.Errorf("missing DELETE path: %v", err)
	}
	cmd := exec.Command("sh", filepath.Join(root, BlogReleasesDir, "make-repo.sh"), filepath.Join(t.TempDir(), "x"))
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "nope.txt") {
		t.Errorf("make-repo.sh with a missing DELETE path: %v %s", err, out)
	}
}

// TestReleaseRepoBlog builds the real blog's releases both ways and
// compares every tag's tree.
func TestReleaseRepoBlog(t *testing.T) {
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, BlogStackDir, "docker-compose-common.yaml")); err != nil {
		t.Skipf("no blog stack yet: %v", err)
	}
	start := time.Now()
	goRepo := filepath.Join(t.TempDir(), "go")
	tags := ReleaseRepo(t, root, goRepo, nil)
	t.Logf("tags %v in %v", tags, time.Since(start).Round(time.Millisecond))
	shRepo := filepath.Join(t.TempDir(), "sh")
	makeRepoScript(t, root, shRepo, nil)
	sameTrees(t, goRepo, shRepo, tags)
	if f := gitOut(t, goRepo, "ls-tree", "-r", "--name-only", "v1.0.0"); !strings.Contains(f, "stacks/blog/docker-compose-common.yaml") {
		t.Errorf("v1.0.0 lacks the stack:\n%s", f)
	}
}
