//go:build e2e

package blogkit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The layout ReleaseRepo reads, relative to the fleet repository.
const (
	BlogStackDir    = "stacks/blog"          // v1.0.0
	BlogReleasesDir = "stacks/blog-releases" // vX.Y.Z/ overlays
	FirstRelease    = "v1.0.0"
)

// ReleaseSetup runs in the new repository's directory before its first
// commit (v1.0.0): it adds what the deploy needs besides the stack, e.g.
// droplets.yaml, cloud-init/, keys/ and a .gitignore for the secrets, so
// they are part of every tag.
type ReleaseSetup func(dir string) error

// ReleaseRepo builds a throwaway git repository at dst (BuildReleaseRepo)
// and fails t if it cannot. It returns the tags made, oldest first.
func ReleaseRepo(t testing.TB, repoRoot, dst string, setup ReleaseSetup, versions ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tags, err := BuildReleaseRepo(ctx, repoRoot, dst, setup, versions...)
	if err != nil {
		t.Fatalf("release repository: %v", err)
	}
	return tags
}

var versionRE = regexp.MustCompile(`^v(\d+)\.(\d+)\.(\d+)$`)

// BlogReleases lists the versions of the blog: v1.0.0 and one per
// directory vX.Y.Z under <repoRoot>/stacks/blog-releases, in version order.
func BlogReleases(repoRoot string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(repoRoot, BlogReleasesDir))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	vs := []string{FirstRelease}
	for _, e := range ents {
		if e.IsDir() && versionRE.MatchString(e.Name()) && e.Name() != FirstRelease {
			vs = append(vs, e.Name())
		}
	}
	sortVersions(vs)
	return vs, nil
}

func sortVersions(vs []string) {
	key := func(v string) [3]int {
		m := versionRE.FindStringSubmatch(v)
		var k [3]int
		for i := range k {
			k[i], _ = strconv.Atoi(m[i+1])
		}
		return k
	}
	sort.Slice(vs, func(i, j int) bool {
		a, b := key(vs[i]), key(vs[j])
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
}

// BuildReleaseRepo makes a git repository at dst (which must not exist or
// be empty) with one commit and tag per release of the blog:
//
//  1. <repoRoot>/stacks/blog is copied to dst/stacks/blog (modes and
//     symlinks kept), setup runs in dst (may be nil), everything is
//     committed as "release v1.0.0" and tagged v1.0.0;
//  2. for each later release in version order, the paths listed in
//     stacks/blog-releases/<v>/DELETE (one per line, relative to
//     stacks/blog; blank lines and #-comments ignored; each must exist)
//     are removed, then the other files of stacks/blog-releases/<v>/ are
//     copied over dst/stacks/blog/ (added or replaced), and the result is
//     committed as "release <v>" and tagged <v>.
//
// versions picks the tags (default: all of BlogReleases); a release not
// picked but older than one picked is still applied, folded into the next
// picked one, so each tag's tree is what the overlays say it is. Commits
// have a fixed author and committer (fleet-e2e). It returns the tags made.
// stacks/blog-releases/make-repo.sh does the same in shell.
func BuildReleaseRepo(ctx context.Context, repoRoot, dst string, setup ReleaseSetup, versions ...string) ([]string, error) {
	all, err := BlogReleases(repoRoot)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	if len(versions) == 0 {
		versions = all
	}
	for _, v := range versions {
		if !versionRE.MatchString(v) {
			return nil, fmt.Errorf("version %q: want vX.Y.Z", v)
		}
		found := false
		for _, a := range all {
			found = found || a == v
		}
		if !found {
			return nil, fmt.Errorf("no release %s: %s has %v", v, filepath.Join(repoRoot, BlogReleasesDir), all)
		}
		want[v] = true
	}
	if !want[FirstRelease] {
		return nil, fmt.Errorf("the versions must include %s, the first commit", FirstRelease)
	}
	if ents, err := os.ReadDir(dst); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s exists and is not empty", dst)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dst
		cmd.Env = append(os.Environ(), gitIdentity...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	stack := filepath.Join(dst, filepath.FromSlash(BlogStackDir))
	if err := copyTree(filepath.Join(repoRoot, filepath.FromSlash(BlogStackDir)), stack, ""); err != nil {
		return nil, err
	}
	if setup != nil {
		if err := setup(dst); err != nil {
			return nil, fmt.Errorf("release repository setup: %w", err)
		}
	}
	if err := git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	var tags []string
	commit := func(v string) error {
		if err := git("add", "-A"); err != nil {
			return err
		}
		if err := git("commit", "-q", "--allow-empty", "-m", "release "+v); err != nil {
			return err
		}
		if err := git("tag", v); err != nil {
			return err
		}
		tags = append(tags, v)
		return nil
	}
	if err := commit(FirstRelease); err != nil {
		return nil, err
	}
	last := versions[0]
	for _, v := range versions {
		if laterVersion(v, last) {
			last = v
		}
	}
	for _, v := range all[1:] {
		if laterVersion(v, last) {
			break
		}
		overlay := filepath.Join(repoRoot, filepath.FromSlash(BlogReleasesDir), v)
		if err := applyDeletes(filepath.Join(overlay, "DELETE"), stack); err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		if err := copyTree(overlay, stack, "DELETE"); err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		if want[v] {
			if err := commit(v); err != nil {
				return nil, err
			}
		}
	}
	return tags, nil
}

// gitIdentity fixes who commits, so the same trees give the same commits
// whoever runs it.
var gitIdentity = []string{
	"GIT_AUTHOR_NAME=fleet-e2e", "GIT_AUTHOR_EMAIL=fleet-e2e@example.com",
	"GIT_COMMITTER_NAME=fleet-e2e", "GIT_COMMITTER_EMAIL=fleet-e2e@example.com",
	"GIT_CONFIG_NOSYSTEM=1",
}

// laterVersion says whether a > b.
func laterVersion(a, b string) bool {
	vs := []string{a, b}
	sortVersions(vs)
	return vs[0] == b && a != b
}

// applyDeletes removes the paths listed in file (if it exists) from stack.
func applyDeletes(file, stack string) error {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		clean := path.Clean(line)
		if path.IsAbs(line) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("%s:%d: %q is not a path inside stacks/blog", file, n, line)
		}
		p := filepath.Join(stack, filepath.FromSlash(clean))
		if _, err := os.Lstat(p); err != nil {
			return fmt.Errorf("%s:%d: %s: no such file to delete", file, n, line)
		}
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return sc.Err()
}

// copyTree copies the tree src over dst (files replaced, directories
// merged), keeping permission bits and symlinks; a top-level entry named
// skip is left out.
func copyTree(src, dst, skip string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if skip != "" && rel == skip {
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			if ti, err := os.Lstat(target); err == nil && !ti.IsDir() {
				if err := os.Remove(target); err != nil {
					return err
				}
			}
			return os.MkdirAll(target, fi.Mode().Perm()|0o700)
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.RemoveAll(target)
			return os.Symlink(link, target)
		case fi.Mode().IsRegular():
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			return os.Chmod(target, fi.Mode().Perm())
		default:
			return fmt.Errorf("%s: not a file, directory or symlink", p)
		}
	})
}

// TagTree is the git tree hash of tag in the repository at dir: equal
// trees, equal hashes.
func TagTree(ctx context.Context, dir, tag string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", tag+"^{tree}")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse %s^{tree} in %s: %v", tag, dir, err)
	}
	return string(bytes.TrimSpace(out)), nil
}
