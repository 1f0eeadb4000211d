package deploy

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, n := range []string{"MANIFEST", "app.tar"} {
		if c, ok := files[n]; ok {
			tw.WriteHeader(&tar.Header{Name: n, Mode: 0o600, Size: int64(len(c)), Typeflag: tar.TypeReg})
			tw.Write([]byte(c))
		}
	}
	tw.Close()
	return b.Bytes()
}

func produceOf(b []byte) func(io.Writer) (int64, string, error) {
	return func(w io.Writer) (int64, string, error) {
		n, err := w.Write(b)
		return int64(n), sha(b), err
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	stream := tarOf(t, map[string]string{"MANIFEST": "fleet-blog-backup 1\n", "app.tar": "pretend db"})
	man := &Manifest{Project: "blog", Droplet: "blog-v1-0-0-ab", Version: "v1.0.0", Created: time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)}
	path, err := writeArchive(dir, man, produceOf(stream))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "20261126T150405Z.tar.zst" {
		t.Errorf("path %s", path)
	}
	if len(man.Entries) != 2 || man.Entries[1].Name != "app.tar" || man.Entries[1].SHA256 != sha([]byte("pretend db")) {
		t.Errorf("entries %+v", man.Entries)
	}
	if man.Stream.Bytes != int64(len(stream)) || man.Stream.SHA256 != sha(stream) {
		t.Errorf("stream %+v", man.Stream)
	}
	got, ar, err := OpenArchive(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(ar)
	if err != nil || !bytes.Equal(b, stream) {
		t.Fatalf("read back %d bytes (%v), want %d", len(b), err, len(stream))
	}
	if err := ar.Close(); err != nil {
		t.Fatal(err)
	}
	if got.Droplet != man.Droplet || got.Archive != man.Archive {
		t.Errorf("manifest read back %+v", got)
	}
	// Same second again: refused, not overwritten.
	if _, err := writeArchive(dir, man, produceOf(stream)); err == nil {
		t.Error("second archive of the same second overwrote the first")
	}
	// Not a tar: saved, without entries.
	man2 := &Manifest{Created: man.Created.Add(time.Second)}
	if _, err := writeArchive(dir, man2, produceOf([]byte("plain bytes"))); err != nil || man2.Entries != nil {
		t.Errorf("non-tar stream: err %v, entries %v", err, man2.Entries)
	}
}

func TestArchiveFailures(t *testing.T) {
	stream := tarOf(t, map[string]string{"app.tar": "data"})
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("source failed: nothing left", func(t *testing.T) {
		dir := t.TempDir()
		_, err := writeArchive(dir, &Manifest{Created: created}, func(w io.Writer) (int64, string, error) {
			w.Write(stream[:100])
			return 100, "", errors.New("backup on x: exited with status 1")
		})
		if err == nil {
			t.Fatal("no error")
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})
	t.Run("source sum disagrees", func(t *testing.T) {
		_, err := writeArchive(t.TempDir(), &Manifest{Created: created}, func(w io.Writer) (int64, string, error) {
			n, _ := w.Write(stream)
			return int64(n), sha([]byte("something else")), nil
		})
		var ce *ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a checksum error", err)
		}
	})
	t.Run("archive changed on disk", func(t *testing.T) {
		dir := t.TempDir()
		path, err := writeArchive(dir, &Manifest{Created: created}, produceOf(stream))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(path)
		b[len(b)/2] ^= 0xff
		os.WriteFile(path, b, 0o600)
		var ce *ChecksumError
		if _, _, err := OpenArchive(path); !errors.As(err, &ce) {
			t.Fatalf("err = %v, want a checksum error", err)
		}
	})
	t.Run("no manifest", func(t *testing.T) {
		dir := t.TempDir()
		path, _ := writeArchive(dir, &Manifest{Created: created}, produceOf(stream))
		os.Remove(ManifestPath(path))
		if _, _, err := OpenArchive(path); err == nil {
			t.Fatal("opened without a manifest")
		}
	})
}
