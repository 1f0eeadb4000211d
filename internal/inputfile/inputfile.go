// Package inputfile reads the files an operator points fleet at (the spec,
// the cloud-init template, SSH public keys, the secrets file) safely: only
// regular files, never blocking on a named pipe or a device, and never more
// than a cap, so a typo like /dev/zero is an error and not an OOM or a hang.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular and ErrTooLarge are what Read's errors wrap (errors.Is).
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("too large")
)

// Error is Read's refusal of a file: "PATH: not a regular file (a named
// pipe)", "PATH: is a directory" or "PATH: larger than 64 KiB".
type Error struct {
	Path string
	Mode fs.FileMode // the file's type, for a file that is not regular
	Max  int64       // the cap, for a file too large
	Err  error       // ErrNotRegular or ErrTooLarge
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason() }

// Reason is the error without the path: "not a regular file (a named
// pipe)", "is a directory" or "larger than 64 KiB".
func (e *Error) Reason() string {
	switch {
	case e.Err == ErrTooLarge && e.Max%1024 == 0:
		return fmt.Sprintf("larger than %d KiB", e.Max>>10)
	case e.Err == ErrTooLarge:
		return fmt.Sprintf("larger than %d bytes", e.Max)
	case e.Mode.IsDir():
		return "is a directory"
	}
	return fmt.Sprintf("%v (%s)", ErrNotRegular, kind(e.Mode))
}

func (e *Error) Unwrap() error { return e.Err }

// Read returns the contents of the regular file at path, which must be at
// most max bytes. It opens the file without blocking (a named pipe without
// a writer would block open(2) forever), checks its type on the open file
// (so it cannot be swapped in between), and reads at most max+1 bytes (a
// file in /proc reports size 0 but may be longer). Errors other than
// *Error are the *fs.PathError of open or read.
func Read(path string, max int64) ([]byte, error) {
	f, err := openNonblock(path)
	if err != nil {
		// Opening a socket fails (ENXIO): say what it is.
		if fi, serr := os.Stat(path); serr == nil && !fi.Mode().IsRegular() {
			return nil, &Error{Path: path, Mode: fi.Mode().Type(), Err: ErrNotRegular}
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{Path: path, Mode: fi.Mode().Type(), Err: ErrNotRegular}
	}
	if fi.Size() > max {
		return nil, &Error{Path: path, Max: max, Err: ErrTooLarge}
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > max {
		return nil, &Error{Path: path, Max: max, Err: ErrTooLarge}
	}
	return data, nil
}

// Check does Read's checks without reading: path is a regular file of at
// most max bytes. It follows symlinks and never opens the file.
func Check(path string, max int64) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return &Error{Path: path, Mode: fi.Mode().Type(), Err: ErrNotRegular}
	case fi.Size() > max:
		return &Error{Path: path, Max: max, Err: ErrTooLarge}
	}
	return nil
}

// kind names a file type the way ls -l's manual does.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a special file"
}
