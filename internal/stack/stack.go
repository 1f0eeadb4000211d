// Package stack prepares a release of a compose stack on the operator's
// (or CI's) machine, before any droplet exists: the stack directory as of
// the release's git tag (or the work tree), what its compose files need
// (build contexts, secrets, images), the secret values, and the tar that is
// shipped to the droplet.
package stack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/fleetdeploy/fleet/internal/spec"
)

// ErrNoTag is wrapped by Prepare's error when the release's git tag does not
// exist.
var ErrNoTag = errors.New("git tag does not exist")

// Bundle is a release's stack directory, extracted into a temporary
// directory, and what its compose files need.
type Bundle struct {
	Version      string
	FromWorktree bool
	Root         string   // temp dir holding the stack dir's files as of the tag
	Compose      []string // compose file paths relative to Root, in merge order
	Contexts     []string // build context dirs (relative to Root) the compose files reference; only these are shipped
	Secrets      []string // secret names the compose files need (sorted)
	Images       []string // services' image names (sorted)

	stackDir    string // the stack dir, relative to the repository's top level (slash-separated, "." = top)
	secretsFile string // the secrets file relative to the stack dir, if it lies inside it ("" otherwise)
}

// Prepare extracts the stack directory of st into a temporary directory:
// as of git tag version, or from the work tree (tracked and untracked, not
// ignored, files) with fromWorktree. It parses the compose files for the
// build contexts, secrets and images they need. repoDir is the spec's
// directory (st.Dir is relative to it) and lies in a git repository.
// Close removes the temporary directory.
func Prepare(ctx context.Context, repoDir string, st *spec.Stack, version string, fromWorktree bool) (*Bundle, error) {
	if st == nil {
		return nil, errors.New("stack: the spec has no stack: section")
	}
	if err := spec.ParseVersion(version); err != nil {
		return nil, err
	}
	if len(st.Compose) == 0 {
		return nil, errors.New("stack: no compose files")
	}
	top, stackDir, err := locate(ctx, repoDir, st.Dir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "fleet-stack-")
	if err != nil {
		return nil, err
	}
	b := &Bundle{Version: version, FromWorktree: fromWorktree, Root: tmp, stackDir: stackDir}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	if b.secretsFile, err = secretsInStack(repoDir, st); err != nil {
		return nil, err
	}
	if fromWorktree {
		// The secrets file never lands in the temp copy, even briefly.
		err = copyWorktree(ctx, top, stackDir, root, b.secretsFile)
	} else {
		err = extractTag(ctx, top, stackDir, version, root)
	}
	if err != nil {
		return nil, err
	}
	if err := checkSymlinks(tmp, root); err != nil {
		return nil, err
	}
	if err := b.parse(root, st.Compose); err != nil {
		return nil, err
	}
	if err := b.checkSecretsFile(); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

// Close removes the bundle's temporary directory.
func (b *Bundle) Close() error {
	if b == nil || b.Root == "" {
		return nil
	}
	return os.RemoveAll(b.Root)
}

// where names the release's source in errors: "at tag v1.2.0" or "in the
// work tree".
func (b *Bundle) where() string {
	if b.FromWorktree {
		return "in the work tree"
	}
	return "at tag " + b.Version
}

// locate finds the top level of the git repository holding repoDir and the
// stack dir relative to it.
func locate(ctx context.Context, repoDir, dir string) (top, stackDir string, err error) {
	out, err := git(ctx, repoDir, "rev-parse", "--show-toplevel")
	if err != nil {
		return "", "", fmt.Errorf("the stack must live in a git repository: %s is not in one (%v)", repoDir, err)
	}
	top = strings.TrimSpace(out)
	realTop, err := filepath.EvalSymlinks(top)
	if err != nil {
		return "", "", err
	}
	base, err := filepath.Abs(repoDir)
	if err != nil {
		return "", "", err
	}
	if r, err := filepath.EvalSymlinks(base); err == nil {
		base = r
	}
	rel, err := filepath.Rel(realTop, filepath.Join(base, filepath.FromSlash(dir)))
	if err != nil {
		return "", "", err
	}
	rel = filepath.ToSlash(rel)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", "", fmt.Errorf("stack dir %s is outside the git repository %s", dir, top)
	}
	return top, rel, nil
}

// extractTag extracts the stack dir as of tag version into root.
func extractTag(ctx context.Context, top, stackDir, version string, root *os.Root) error {
	ref := "refs/tags/" + version
	if _, err := git(ctx, top, "rev-parse", "--verify", "--quiet", ref+"^{commit}"); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("git tag %s does not exist in %s: create and push it, or use --from-worktree: %w", version, top, ErrNoTag)
	}
	treePath := stackDir
	if treePath == "." {
		treePath = ""
	}
	kind, err := git(ctx, top, "cat-file", "-t", ref+":"+treePath)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("stack dir %s does not exist at tag %s (was it committed before the tag?)", stackDir, version)
	}
	if k := strings.TrimSpace(kind); k != "tree" {
		return fmt.Errorf("stack dir %s at tag %s is not a directory (a %s)", stackDir, version, k)
	}
	args := []string{"archive", "--format=tar", ref}
	if treePath != "" {
		args = append(args, "--", treePath)
	}
	cmd := gitCmd(ctx, top, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("git archive: %w", err)
	}
	xerr := extract(tar.NewReader(out), stackDir, root)
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	if werr != nil {
		return fmt.Errorf("git archive %s -- %s: %v: %s", version, stackDir, werr, strings.TrimSpace(stderr.String()))
	}
	if xerr != nil {
		return fmt.Errorf("extracting %s at tag %s: %w", stackDir, version, xerr)
	}
	return nil
}

// extract writes the entries of tr under prefix (the stack dir) into root,
// relative to prefix.
func extract(tr *tar.Reader, prefix string, root *os.Root) error {
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := strings.TrimSuffix(h.Name, "/")
		if prefix != "." {
			if name == prefix || !strings.HasPrefix(name, prefix+"/") {
				continue // the stack dir itself, or one of its parents
			}
			name = strings.TrimPrefix(name, prefix+"/")
		}
		rel, err := cleanRel(name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(rel, 0o755)
		case tar.TypeReg:
			err = writeFile(root, rel, tr, h.FileInfo().Mode())
		case tar.TypeSymlink:
			err = symlink(root, rel, h.Linkname)
		default:
			err = fmt.Errorf("%s: unsupported tar entry type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// copyWorktree copies the files git knows about (tracked, and untracked
// but not ignored) under stackDir of the work tree at top into root.
// skip (relative to stackDir) is left out: the secrets file.
func copyWorktree(ctx context.Context, top, stackDir string, root *os.Root, skip string) error {
	out, err := git(ctx, top, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", stackDir)
	if err != nil {
		return fmt.Errorf("listing %s in the work tree: %w", stackDir, err)
	}
	seen := map[string]bool{}
	n := 0
	for _, p := range strings.Split(out, "\x00") {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		name := p
		if stackDir != "." {
			if !strings.HasPrefix(p, stackDir+"/") {
				continue
			}
			name = strings.TrimPrefix(p, stackDir+"/")
		}
		rel, err := cleanRel(name)
		if err != nil {
			return err
		}
		if skip != "" && rel == skip {
			continue
		}
		src := filepath.Join(top, filepath.FromSlash(p))
		fi, err := os.Lstat(src)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, still in the index
		}
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsRegular():
			if err := copyFile(root, rel, src, fi.Mode()); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := symlink(root, rel, target); err != nil {
				return err
			}
		default:
			continue // a submodule (git archive leaves them out too)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("stack dir %s does not exist in the work tree of %s (or holds no files git knows about)", stackDir, top)
	}
	return nil
}

func copyFile(root *os.Root, rel, src string, mode fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeFile(root, rel, f, mode)
}

// writeFile writes r to rel in root: 0755 if mode has any execute bit,
// 0644 otherwise (as git records it).
func writeFile(root *os.Root, rel string, r io.Reader, mode fs.FileMode) error {
	if d := path.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	perm := fs.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return root.Chmod(rel, perm)
}

// symlink makes rel a symbolic link to target, which must stay inside the
// stack dir.
func symlink(root *os.Root, rel, target string) error {
	if target == "" || path.IsAbs(target) || filepath.IsAbs(target) {
		return fmt.Errorf("symlink %s points outside the stack dir (to %s)", rel, target)
	}
	if to := path.Join(path.Dir(rel), target); to == ".." || strings.HasPrefix(to, "../") {
		return fmt.Errorf("symlink %s points outside the stack dir (to %s)", rel, target)
	}
	if d := path.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return root.Symlink(target, rel)
}

// checkSymlinks makes sure every symbolic link under dir that resolves
// resolves inside it (links through links can defeat the check made on
// each one alone).
func checkSymlinks(dir string, root *os.Root) error {
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		to, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return nil // dangling; its target was checked to be inside
		}
		if !within(realDir, to) {
			return fmt.Errorf("symlink %s points outside the stack dir", p)
		}
		return nil
	})
}

// within says whether path p is dir or lies under it (both clean, absolute).
func within(dir, p string) bool {
	r, err := filepath.Rel(dir, p)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) && !filepath.IsAbs(r)
}

// cleanRel checks that name is a relative path that stays inside its base,
// and cleans it.
func cleanRel(name string) (string, error) {
	c := path.Clean(name)
	if name == "" || path.IsAbs(name) || c == "." || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("refusing path %q: not a relative path inside the stack dir", name)
	}
	return c, nil
}

// secretsInStack is the spec's secrets file relative to the stack dir if
// it lies inside it, "" otherwise.
func secretsInStack(repoDir string, st *spec.Stack) (string, error) {
	if st.Secrets.File == "" {
		return "", nil
	}
	file := secretsPath(st)
	dir := filepath.Join(repoDir, filepath.FromSlash(st.Dir))
	file, dir = realish(file), realish(dir)
	if !within(dir, file) {
		return "", nil
	}
	r, err := filepath.Rel(dir, file)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(r), nil
}

// realish is p absolute with symbolic links resolved in as much of it as
// exists.
func realish(p string) string {
	p, _ = filepath.Abs(p)
	rest := ""
	for d := p; ; d = filepath.Dir(d) {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			return filepath.Join(r, rest)
		}
		if filepath.Dir(d) == d {
			return p
		}
		rest = filepath.Join(filepath.Base(d), rest)
	}
}

// checkSecretsFile refuses a bundle whose shipped files would include the
// secrets file.
func (b *Bundle) checkSecretsFile() error {
	s := b.secretsFile
	if s == "" {
		return nil
	}
	for _, c := range b.Contexts {
		if under(c, s) {
			return fmt.Errorf("the secrets file %s is inside the build context %s, which is shipped to the droplet (and may end up in an image): move it out of the context", path.Join(b.stackDir, s), path.Join(b.stackDir, c))
		}
	}
	for _, c := range b.Compose {
		if s == c {
			return fmt.Errorf("the secrets file %s is one of the compose files", path.Join(b.stackDir, s))
		}
	}
	return nil
}

func gitCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir, "--literal-pathspecs"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	return cmd
}

// git runs git in dir and returns its standard output; the error holds its
// standard error.
func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := gitCmd(ctx, dir, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return stdout.String(), &gitError{err: err, msg: msg}
		}
		return stdout.String(), err
	}
	return stdout.String(), nil
}

type gitError struct {
	err error
	msg string
}

func (e *gitError) Error() string { return e.msg }
func (e *gitError) Unwrap() error { return e.err }
