//go:build unix

package inputfile

import (
	"os"
	"syscall"
)

// openNonblock opens path for reading with O_NONBLOCK, which makes open(2)
// of a named pipe return at once instead of waiting for a writer; it does
// not change how a regular file is read.
func openNonblock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
