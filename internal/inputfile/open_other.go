//go:build !unix

package inputfile

import "os"

// openNonblock checks the type before opening where O_NONBLOCK is not
// available; Read checks it again on the open file.
func openNonblock(path string) (*os.File, error) {
	if err := Check(path, 1<<62); err != nil {
		return nil, err
	}
	return os.Open(path)
}
