package stack

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"time"
)

// Tar writes what is shipped to the droplet: the compose files and the
// build contexts, and nothing else of the stack dir, with paths relative to
// the stack dir. The output depends only on the files: entries are sorted
// by path, owned by 0:0, with modes 0644/0755 and a fixed modification time.
// A bundle whose shipped files would include the secrets file is refused.
func (b *Bundle) Tar(w io.Writer) error {
	if err := b.checkSecretsFile(); err != nil {
		return err
	}
	root, err := os.OpenRoot(b.Root)
	if err != nil {
		return err
	}
	defer root.Close()

	// Collect every shipped path with its parent directories.
	set := map[string]bool{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			set[d] = true
		}
	}
	for _, c := range b.Compose {
		set[c] = true
		addParents(c)
	}
	for _, c := range b.Contexts {
		if c != "." {
			set[c] = true
			addParents(c)
		}
		err := fs.WalkDir(root.FS(), c, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != "." {
				set[p] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("reading build context %s: %w", c, err)
		}
	}
	paths := make([]string, 0, len(set))
	for p := range set {
		paths = append(paths, p)
	}
	slices.Sort(paths)

	tw := tar.NewWriter(w)
	for _, p := range paths {
		if p == b.secretsFile {
			return fmt.Errorf("refusing to ship the secrets file %s", path.Join(b.stackDir, p))
		}
		if err := addEntry(tw, root, p, slices.Contains(b.Compose, p)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// epoch is the modification time of every entry, so the tar depends only
// on the files' contents.
var epoch = time.Unix(0, 0).UTC()

func addEntry(tw *tar.Writer, root *os.Root, p string, follow bool) error {
	fi, err := root.Lstat(p)
	if err != nil {
		return err
	}
	if follow && fi.Mode()&fs.ModeSymlink != 0 {
		// A compose file that is a symlink is shipped as the file it names.
		if fi, err = root.Stat(p); err != nil {
			return err
		}
	}
	h := &tar.Header{Name: p, ModTime: epoch, Format: tar.FormatPAX}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, p+"/", 0o755
	case fi.Mode().IsRegular():
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, fi.Size()
		if fi.Mode()&0o111 != 0 {
			h.Mode = 0o755
		}
	case fi.Mode()&fs.ModeSymlink != 0:
		if h.Linkname, err = root.Readlink(p); err != nil {
			return err
		}
		h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
	default:
		return fmt.Errorf("%s: not a regular file, directory or symlink", p)
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := root.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("%s changed while it was read", p)
	}
	return nil
}
