package inputfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", "abc"), link); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, path string
		max        int64
		want       string // content, or the error
		is         error
	}{
		{name: "regular", path: write("ok", "hello"), max: 5, want: "hello"},
		{name: "empty", path: write("empty", ""), max: 5, want: ""},
		{name: "symlink to a regular file", path: link, max: 5, want: "abc"},
		{name: "one byte over", path: write("big", "hello!"), max: 5, want: filepath.Join(dir, "big") + ": larger than 5 bytes", is: ErrTooLarge},
		{name: "KiB in the message", path: write("big2", strings.Repeat("x", 3000)), max: 2048, want: filepath.Join(dir, "big2") + ": larger than 2 KiB", is: ErrTooLarge},
		// /proc files say size 0 and are longer: the read is capped.
		{name: "proc file longer than its size", path: "/proc/self/status", max: 16, want: "/proc/self/status: larger than 16 bytes", is: ErrTooLarge},
		{name: "fifo", path: fifo, max: 5, want: fifo + ": not a regular file (a named pipe)", is: ErrNotRegular},
		{name: "character device", path: "/dev/zero", max: 5, want: "/dev/zero: not a regular file (a character device)", is: ErrNotRegular},
		{name: "socket", path: sock, max: 5, want: sock + ": not a regular file (a socket)", is: ErrNotRegular},
		{name: "directory", path: dir, max: 5, want: dir + ": is a directory", is: ErrNotRegular},
		{name: "missing", path: filepath.Join(dir, "nope"), max: 5, want: "open " + filepath.Join(dir, "nope") + ": no such file or directory", is: fs.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() {
				defer close(done)
				data, err = Read(tt.path, tt.max)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Read blocked")
			}
			if tt.is == nil {
				if err != nil || string(data) != tt.want {
					t.Fatalf("Read = %q, %v; want %q", data, err, tt.want)
				}
				return
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, tt.is) || data != nil {
				t.Fatalf("Read = %q, %v; want error %q (%v)", data, err, tt.want, tt.is)
			}
			if tt.is != fs.ErrNotExist {
				if cerr := Check(tt.path, tt.max); tt.name != "proc file longer than its size" && (cerr == nil || cerr.Error() != tt.want) {
					t.Errorf("Check = %v, want %q", cerr, tt.want)
				}
			}
		})
	}
}
