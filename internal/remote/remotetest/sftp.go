package remotetest

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
)

// rootHandlers serve SFTP from root: every path is taken relative to it,
// and os.Root keeps symlinks and ".." from reaching outside.
func rootHandlers(root *os.Root) sftp.Handlers {
	h := rootFS{root}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

type rootFS struct{ root *os.Root }

// rel is p, an absolute SFTP path, relative to the root.
func rel(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return p[1:]
}

func (h rootFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return h.root.Open(rel(r.Filepath))
}

func (h rootFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return h.OpenFile(r)
}

// OpenFile creates files 0644, as sftp-server does under umask 022.
func (h rootFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	p := r.Pflags()
	flag := os.O_RDONLY
	switch {
	case p.Read && p.Write:
		flag = os.O_RDWR
	case p.Write:
		flag = os.O_WRONLY
	}
	for _, f := range []struct {
		on   bool
		flag int
	}{{p.Append, os.O_APPEND}, {p.Creat, os.O_CREATE}, {p.Trunc, os.O_TRUNC}, {p.Excl, os.O_EXCL}} {
		if f.on {
			flag |= f.flag
		}
	}
	return h.root.OpenFile(rel(r.Filepath), flag, 0o644)
}

func (h rootFS) Filecmd(r *sftp.Request) error {
	name := rel(r.Filepath)
	switch r.Method {
	case "Setstat":
		a, st := r.AttrFlags(), r.Attributes()
		if a.Permissions {
			if err := h.root.Chmod(name, st.FileMode().Perm()); err != nil {
				return err
			}
		}
		if a.Size {
			f, err := h.root.OpenFile(name, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			err = f.Truncate(int64(st.Size))
			f.Close()
			if err != nil {
				return err
			}
		}
		if a.Acmodtime {
			return h.root.Chtimes(name, time.Unix(int64(st.Atime), 0), time.Unix(int64(st.Mtime), 0))
		}
		return nil // owners are left alone
	case "Rename":
		// SFTP v3 rename, as OpenSSH does it: refuse to replace.
		if _, err := h.root.Lstat(rel(r.Target)); err == nil {
			return &fs.PathError{Op: "rename", Path: r.Target, Err: fs.ErrExist}
		}
		return h.root.Rename(name, rel(r.Target))
	case "Rmdir", "Remove":
		fi, err := h.root.Lstat(name)
		if err != nil {
			return err
		}
		if fi.IsDir() != (r.Method == "Rmdir") {
			return &fs.PathError{Op: r.Method, Path: r.Filepath, Err: errors.New("wrong file type")}
		}
		return h.root.Remove(name)
	case "Mkdir":
		return h.root.Mkdir(name, 0o755)
	case "Symlink":
		// Filepath is the link's target, kept as given.
		return h.root.Symlink(r.Filepath, rel(r.Target))
	case "Link":
		return h.root.Link(name, rel(r.Target))
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename replaces the target, as posix-rename@openssh.com does.
func (h rootFS) PosixRename(r *sftp.Request) error {
	return h.root.Rename(rel(r.Filepath), rel(r.Target))
}

func (h rootFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	name := rel(r.Filepath)
	switch r.Method {
	case "List":
		d, err := h.root.Open(name)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		fis, err := d.Readdir(-1)
		if err != nil {
			return nil, err
		}
		return lister(fis), nil
	case "Stat":
		fi, err := h.root.Stat(name)
		if err != nil {
			return nil, err
		}
		return lister{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

func (h rootFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := h.root.Lstat(rel(r.Filepath))
	if err != nil {
		return nil, err
	}
	return lister{fi}, nil
}

func (h rootFS) Readlink(p string) (string, error) {
	return h.root.Readlink(rel(p))
}

type lister []os.FileInfo

func (l lister) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

var (
	_ sftp.OpenFileWriter       = rootFS{}
	_ sftp.PosixRenameFileCmder = rootFS{}
	_ sftp.LstatFileLister      = rootFS{}
	_ sftp.ReadlinkFileLister   = rootFS{}
)
