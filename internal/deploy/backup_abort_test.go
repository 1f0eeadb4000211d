package deploy

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// backupWorld: droplet 1 (v1.0.0) is live, 2 (v1.1.0) a candidate.
func backupWorld(t *testing.T) *world {
	return newWorld(t, testIP,
		member{id: 1, version: "v1.0.0", tags: []string{P}, live: true},
		member{id: 2, version: "v1.1.0", tags: []string{H}})
}

// archiveFiles lists dir, and fails the test if a final archive lacks its
// manifest: a failed backup may leave a temporary file at most.
func archiveFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		if n := e.Name(); strings.HasPrefix(n, ".") && !strings.Contains(n, ".partial-") {
			t.Errorf("left behind: %s", n)
		}
		if n := e.Name(); strings.HasSuffix(n, ".tar.zst") && !strings.HasPrefix(n, ".") {
			if _, err := os.Stat(ManifestPath(filepath.Join(dir, n))); err != nil {
				t.Errorf("%s has no manifest", n)
			}
		}
	}
	return names
}

var backupAt = time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)

func TestBackupAbort(t *testing.T) {
	const archive = "20260203T040506Z.tar.zst"
	for _, tc := range []struct {
		name    string
		droplet string // "" = the live one
		setup   func(w *world, cancel context.CancelFunc)
		files   []string // what dir holds after, temporary files aside
		logs    map[int][]string
		err     string
	}{
		{name: "saved", files: []string{"20260203T040506Z.manifest.json", archive}, logs: map[int][]string{1: {"backup"}}},
		{name: "a named droplet", droplet: "2", files: []string{"20260203T040506Z.manifest.json", archive}, logs: map[int][]string{2: {"backup"}}},
		{name: "backup fails midway",
			setup: func(w *world, _ context.CancelFunc) {
				w.drops[1].script("backup", step{midway: true, stderr: "disk full\n"})
			},
			logs: map[int][]string{1: {"backup!"}}, err: "backup on {1}"},
		{name: "connection drops midway",
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("backup", step{drop: true}) },
			logs:  map[int][]string{1: {"backup!"}}, err: "backup on {1}"},
		{name: "Ctrl-C midway",
			setup: func(w *world, cancel context.CancelFunc) {
				w.drops[1].script("backup", step{hang: true})
				time.AfterFunc(300*time.Millisecond, cancel)
			},
			logs: map[int][]string{1: {"backup!"}}, err: "context canceled"},
		{name: "sha256 disagrees",
			setup: func(w *world, _ context.CancelFunc) { w.drops[1].script("backup", step{badSum: true}) },
			logs:  map[int][]string{1: {"backup"}}, err: "checksum mismatch: archive from {1}"},
		{name: "droplet unreachable",
			setup: func(w *world, _ context.CancelFunc) { w.unreachable(1) },
			err:   "authentication failed"},
		{name: "no such droplet", droplet: "blog-v9-abc", err: `no droplet "blog-v9-abc"`},
		{name: "no live droplet",
			setup: func(w *world, _ context.CancelFunc) { w.cloud.addIP(testIP, 0) },
			err:   "no live droplet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := backupWorld(t)
			dir := filepath.Join(t.TempDir(), "backups")
			ctx, cancel := runCtx(t)
			defer cancel()
			if tc.setup != nil {
				tc.setup(w, cancel)
			}
			res, err := w.d.Backup(ctx, tc.droplet, dir, backupAt)
			// A backup never moves the IP: its holder is not this test's point.
			e := end{holder: w.cloud.holder(testIP), logs: tc.logs}
			if tc.err != "" {
				e.err = []string{tc.err}
			}
			w.check(t, e, err)
			var files []string
			if _, serr := os.Stat(dir); serr == nil {
				for _, n := range archiveFiles(t, dir) {
					if !strings.HasPrefix(n, ".") {
						files = append(files, n)
					}
				}
			}
			if !slices.Equal(files, tc.files) {
				t.Errorf("%s holds %q, want %q", dir, files, tc.files)
			}
			if err != nil {
				return
			}
			// What was saved is what the droplet's backup wrote.
			src := w.drops[1]
			if tc.droplet != "" {
				src = w.drops[2]
			}
			man, ar, err := OpenArchive(res.Path)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			got.ReadFrom(ar)
			if err := ar.Close(); err != nil || !bytes.Equal(got.Bytes(), src.payload) || man.Droplet != src.Name {
				t.Errorf("archive of %s: %d bytes (%v), want %d of %s", man.Droplet, got.Len(), err, len(src.payload), src.Name)
			}
		})
	}
}

func TestRestoreAbort(t *testing.T) {
	stream := tarOf(t, map[string]string{"MANIFEST": "fleet-blog-backup 1\n", "app.tar": "pretend db"})
	flip := func(path string) {
		b, _ := os.ReadFile(path)
		b[len(b)/2] ^= 0xff
		os.WriteFile(path, b, 0o600)
	}
	for _, tc := range []struct {
		name    string
		droplet string // "" = the live one
		setup   func(w *world, path string)
		logs    map[int][]string
		err     []string
		as      any
		refused bool // before connecting to any droplet
	}{
		{name: "restored onto the live droplet", logs: map[int][]string{1: {"freeze", "restore", "unfreeze"}}},
		{name: "restored onto a candidate: no freeze", droplet: "2", logs: map[int][]string{2: {"restore"}}},

		// A damaged archive is refused before any droplet is touched.
		{name: "archive damaged", setup: func(w *world, path string) { flip(path) },
			err: []string{"checksum mismatch", "against 20260203T040506Z.manifest.json"}, as: new(*ChecksumError), refused: true},
		{name: "archive truncated",
			setup: func(w *world, path string) { b, _ := os.ReadFile(path); os.WriteFile(path, b[:len(b)-10], 0o600) },
			err:   []string{"checksum mismatch"}, as: new(*ChecksumError), refused: true},
		{name: "archive of another backup",
			setup: func(w *world, path string) {
				other, err := writeArchive(t.TempDir(), &Manifest{Created: backupAt}, produceOf([]byte("other data")))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := os.ReadFile(other)
				os.WriteFile(path, b, 0o600)
			},
			err: []string{"checksum mismatch"}, as: new(*ChecksumError), refused: true},
		{name: "manifest missing", setup: func(w *world, path string) { os.Remove(ManifestPath(path)) },
			err: []string{"the archive's manifest"}, refused: true},
		{name: "manifest not a manifest", setup: func(w *world, path string) { os.WriteFile(ManifestPath(path), []byte("{\"format\": \"tar\"}"), 0o600) },
			err: []string{"not a fleet backup manifest"}, refused: true},
		{name: "manifest's sum edited",
			setup: func(w *world, path string) {
				b, _ := os.ReadFile(ManifestPath(path))
				i := bytes.Index(b, []byte(`"sha256": "`)) + len(`"sha256": "`)
				b[i] ^= 1
				os.WriteFile(ManifestPath(path), b, 0o600)
			},
			err: []string{"checksum mismatch"}, as: new(*ChecksumError), refused: true},

		// The live droplet is unfrozen whatever fails after its freeze.
		{name: "droplet unreachable", setup: func(w *world, _ string) { w.unreachable(1) }, err: []string{"authentication failed"}},
		{name: "freeze fails", setup: func(w *world, _ string) { w.drops[1].script("freeze", step{code: 1}) },
			logs: map[int][]string{1: {"freeze!", "unfreeze"}}, err: []string{"freeze on {1}"}},
		{name: "release cannot read the archive (exit 3)",
			setup: func(w *world, _ string) { w.drops[1].script("restore", step{code: 3, stderr: "schema too new\n"}) },
			logs:  map[int][]string{1: {"freeze", "restore!", "unfreeze"}}, err: []string{"{1} cannot read the data: schema too new"}, as: new(*IncompatibleDataError)},
		{name: "restore fails", setup: func(w *world, _ string) { w.drops[1].script("restore", step{code: 1}) },
			logs: map[int][]string{1: {"freeze", "restore!", "unfreeze"}}, err: []string{"restore on {1}"}},
		{name: "restore's sha256 disagrees", setup: func(w *world, _ string) { w.drops[1].script("restore", step{badSum: true}) },
			logs: map[int][]string{1: {"freeze", "restore", "unfreeze"}}, err: []string{"checksum mismatch: archive as received by {1}"}, as: new(*ChecksumError)},
		{name: "connection drops during the restore", setup: func(w *world, _ string) { w.drops[1].script("restore", step{drop: true}) },
			logs: map[int][]string{1: {"freeze", "restore!", "unfreeze"}}, err: []string{"restore on {1}"}},
		{name: "health check fails", setup: func(w *world, _ string) { w.unhealthy() },
			logs: map[int][]string{1: {"freeze", "restore", "unfreeze"}}, err: []string{"health paths"}},
		{name: "unfreeze fails", setup: func(w *world, _ string) { w.drops[1].script("unfreeze", step{code: 1}) },
			logs: map[int][]string{1: {"freeze", "restore", "unfreeze!"}}, err: []string{"unfreeze on {1}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := backupWorld(t)
			path, err := writeArchive(t.TempDir(), &Manifest{Format: ManifestFormat, Project: "blog", Droplet: w.name(1), Created: backupAt}, produceOf(stream))
			if err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(w, path)
			}
			ctx, cancel := runCtx(t)
			defer cancel()
			res, err := w.d.Restore(ctx, path, tc.droplet)
			w.check(t, end{holder: 1, logs: tc.logs, err: tc.err, as: tc.as}, err)
			if tc.refused {
				for id, fd := range w.drops {
					if n := fd.srv.Conns(); n != 0 {
						t.Errorf("droplet %d: %d connections, want none", id, n)
					}
				}
			}
			if err != nil {
				return
			}
			target := w.drops[1]
			if tc.droplet != "" {
				target = w.drops[2]
			}
			var got []byte
			for _, c := range target.srv.Commands() {
				if kind(c) == "restore" {
					got = c.Stdin
				}
			}
			if !bytes.Equal(got, stream) || res.Transfer.Bytes != int64(len(stream)) {
				t.Errorf("restore read %d bytes (transfer says %d), want the archive's %d", len(got), res.Transfer.Bytes, len(stream))
			}
		})
	}
}

// The SSH session's stdin copier may still be in a Read when Run returns
// (x/crypto does not wait for it): what it reads then must not touch the
// counts and sums restoreFrom has returned. Meaningful under -race.
func TestRestoreFromLateRead(t *testing.T) {
	w := backupWorld(t)
	w.drops[2].script("restore", step{code: 1, noRead: true})
	ctx, cancel := runCtx(t)
	defer cancel()
	c, err := w.d.dialMember(ctx, &Member{Droplet: w.drops[2].Droplet})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pr, pw := io.Pipe()
	late, returned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(late)
		// After restoreFrom returned; one that waits for its input gets it
		// after 5 s, and fails the byte count.
		select {
		case <-returned:
		case <-time.After(5 * time.Second):
		}
		pw.Write(bytes.Repeat([]byte("late"), 1000))
		pw.Close()
	}()
	n, _, err := w.d.restoreFrom(ctx, c, w.name(2), pr, w.d.outputs(nil))
	close(returned)
	if err == nil || !strings.Contains(err.Error(), "restore on "+w.name(2)) || n != 0 {
		t.Errorf("restoreFrom: %d bytes, %v; want 0 and the restore's failure", n, err)
	}
	<-late
	time.Sleep(100 * time.Millisecond) // the copier reads, then finds the session gone
}

// Restore's archive reader is closed while the session's stdin copier may
// still read it. Meaningful under -race.
func TestRestoreLateRead(t *testing.T) {
	stream := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	for range 20 {
		w := backupWorld(t)
		w.drops[1].script("restore", step{code: 1, noRead: true})
		path, err := writeArchive(t.TempDir(), &Manifest{Created: backupAt}, produceOf(stream))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := runCtx(t)
		_, err = w.d.Restore(ctx, path, "")
		cancel()
		if err == nil || !strings.Contains(err.Error(), "restore on "+w.name(1)) {
			t.Fatalf("Restore: %v", err)
		}
	}
	time.Sleep(100 * time.Millisecond)
}
