//go:build e2e

package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// repoCopy copies this work tree's files (see workTreeCopy) into a new git
// repository with one commit, so a test builds what is here now, not what
// was last committed.
func repoCopy(t testing.TB) string {
	t.Helper()
	dst := workTreeCopy(t)
	gitIn(t, dst, "init", "-q", "-b", "main")
	gitIn(t, dst, "add", "-A")
	gitIn(t, dst, "commit", "-q", "-m", "copy of the work tree")
	return dst
}

// workTreeCopy copies this work tree's files (tracked, and untracked but
// not ignored: what would be committed) into a new directory.
func workTreeCopy(t testing.TB) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	src := strings.TrimSpace(string(top))
	list, err := exec.Command("git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, rel := range strings.Split(strings.TrimRight(string(list), "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(src, rel))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(filepath.Join(src, rel))
			if err == nil {
				err = os.Symlink(target, to)
			}
			if err != nil {
				t.Fatal(err)
			}
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(filepath.Join(src, rel))
			if err == nil {
				err = os.WriteFile(to, data, fi.Mode().Perm())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return dst
}

// TestMakeRelease: `make release` at a tag builds four static binaries
// named after it, and a SHA256SUMS that sha256sum -c accepts; each binary
// carries the tag, and the linux/amd64 one prints it.
func TestMakeRelease(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("this test runs the linux/amd64 binary: run it on linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	const tag = "v1.8.7" // v2 and up would need a /vN module path for go version -m
	dir := repoCopy(t)
	gitIn(t, dir, "tag", tag)
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("make", "release")

	want := []string{"SHA256SUMS"}
	for _, p := range []string{"linux_amd64", "linux_arm64", "darwin_amd64", "darwin_arm64"} {
		want = append(want, "fleet_"+tag+"_"+p)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "dist"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("dist/ holds %v, want %v", got, want)
	}

	// sha256sum -c checks each line's file; a file it does not list would
	// go unchecked, so the list must name all four.
	out := run("sh", "-c", "cd dist && sha256sum -c SHA256SUMS")
	if n := strings.Count(out, ": OK"); n != 4 {
		t.Errorf("sha256sum -c: %d OK, want 4:\n%s", n, out)
	}

	if out := run("./dist/fleet_" + tag + "_linux_amd64"); !strings.Contains(out, "fleet") {
		t.Errorf("fleet with no arguments printed %q", out)
	}
	if out := run("./dist/fleet_"+tag+"_linux_amd64", "version"); out != "fleet "+tag+"\n" {
		t.Errorf("fleet version printed %q, want %q", out, "fleet "+tag)
	}
	for _, bin := range want[1:] {
		info := run("go", "version", "-m", filepath.Join("dist", bin))
		goos, arch := parsePlatform(bin)
		for _, w := range []string{
			"mod\tgithub.com/fleetdeploy/fleet\t" + tag,
			"CGO_ENABLED=0", "-trimpath=true", "GOOS=" + goos, "GOARCH=" + arch,
		} {
			if !containsLine(info, w) {
				t.Errorf("%s: no %q in go version -m:\n%s", bin, w, info)
			}
		}
		// -trimpath keeps -ldflags out of the build info: look for the
		// version the linker wrote (stripped binaries have no symbols).
		data, err := os.ReadFile(filepath.Join(dir, "dist", bin))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), tag) {
			t.Errorf("%s does not hold the string %s", bin, tag)
		}
	}
}

func parsePlatform(bin string) (string, string) {
	f := strings.Split(bin, "_")
	return f[len(f)-2], f[len(f)-1]
}

func containsLine(s, sub string) bool {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			return true
		}
	}
	return false
}
