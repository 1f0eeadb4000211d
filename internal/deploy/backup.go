package deploy

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// ManifestFormat names the manifest's layout.
const ManifestFormat = "fleet-backup 1"

// Manifest describes a saved backup: what the stack's backup wrote (the
// stream), the compressed file holding it, and, when the stream is a tar,
// each member. It sits beside the archive as <name>.manifest.json.
type Manifest struct {
	Format  string    `json:"format"`
	Project string    `json:"project"`
	Droplet string    `json:"droplet"`
	Version string    `json:"version"`
	Created time.Time `json:"created"`
	Archive FileSum   `json:"archive"` // the .tar.zst file
	Stream  FileSum   `json:"stream"`  // the uncompressed stream, as the stack wrote it
	Entries []FileSum `json:"entries,omitempty"`
}

// FileSum is a name with its size and sha256.
type FileSum struct {
	Name   string `json:"name,omitempty"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ManifestPath is where the manifest of archive lives.
func ManifestPath(archive string) string {
	return strings.TrimSuffix(archive, ".tar.zst") + ".manifest.json"
}

// BackupResult is a saved backup.
type BackupResult struct {
	Path     string
	Manifest *Manifest
	Duration time.Duration
}

// target picks the droplet a data command acts on: the named one, or the
// live droplet.
func (d *Deployer) target(ctx context.Context, name string) (*Member, error) {
	if d.Spec.Stack == nil || d.Spec.Stack.Data == nil {
		return nil, &ConfigError{Msg: "droplets.yaml has no stack.data section: fleet does not know how to back up or restore this stack"}
	}
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	if name == "" {
		if m := st.Live(); m != nil {
			return m, nil
		}
		return nil, &ConflictError{Msg: "no live droplet: name one with --droplet (" + strings.Join(st.Names(), ", ") + ")"}
	}
	m := st.Find(name)
	if m == nil {
		return nil, &ConflictError{Msg: fmt.Sprintf("no droplet %q in project %s (have: %s)", name, st.Project, strings.Join(st.Names(), ", "))}
	}
	return m, nil
}

// Backup saves the stack's backup of a droplet (the live one by default)
// as dir/<UTC time>.tar.zst with its manifest. Nothing is left behind on
// failure: the archive is written under a temporary name and renamed last.
func (d *Deployer) Backup(ctx context.Context, droplet, dir string, now time.Time) (*BackupResult, error) {
	m, err := d.target(ctx, droplet)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, err := d.dialMember(ctx, m)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	start := time.Now()
	d.step("backing up %s", m.Name)
	man := Manifest{Project: d.Spec.Project, Droplet: m.Name, Version: m.Version, Created: now.UTC()}
	path, err := writeArchive(dir, &man, func(w io.Writer) (int64, string, error) {
		return d.backupTo(ctx, c, m.Name, w, d.outputs(nil))
	})
	if err != nil {
		return nil, err
	}
	return &BackupResult{Path: path, Manifest: &man, Duration: time.Since(start)}, nil
}

// writeArchive saves what produce writes as dir/<man.Created>.tar.zst with
// its manifest, filling in the sums. produce returns the stream's size and
// sha256 as its source reported them. Nothing is left behind on failure:
// the archive is written under a temporary name and renamed last.
func writeArchive(dir string, man *Manifest, produce func(io.Writer) (int64, string, error)) (string, error) {
	name := man.Created.UTC().Format("20060102T150405Z") + ".tar.zst"
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return "", &ConflictError{Msg: path + " exists already"}
	}
	tmp, err := os.CreateTemp(dir, "."+name+".partial-*")
	if err != nil {
		return "", err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // a no-op after the rename
	}()
	fileSum := sha256.New()
	file := &countingWriter{w: io.MultiWriter(tmp, fileSum)}
	enc, err := zstd.NewWriter(file, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return "", err
	}
	entries := newTarSums()
	streamSum := sha256.New()
	n, sum, err := produce(io.MultiWriter(enc, entries, streamSum))
	entries.Close()
	if err == nil && sum != hex.EncodeToString(streamSum.Sum(nil)) {
		err = &ChecksumError{What: "backup stream", Want: sum, Have: hex.EncodeToString(streamSum.Sum(nil))}
	}
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err != nil {
		return "", err
	}
	man.Format = ManifestFormat
	man.Archive = FileSum{Name: name, Bytes: file.n, SHA256: hex.EncodeToString(fileSum.Sum(nil))}
	man.Stream = FileSum{Bytes: n, SHA256: sum}
	man.Entries = entries.Result()
	mb, _ := json.MarshalIndent(man, "", "  ")
	if err := writeFileAtomic(ManifestPath(path), append(mb, '\n')); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(ManifestPath(path))
		return "", err
	}
	return path, nil
}

// OpenArchive checks a saved archive against its manifest and returns
// the manifest with a reader of the uncompressed stream; Close checks the
// stream's own sha256 once it is read to the end.
func OpenArchive(path string) (*Manifest, *ArchiveReader, error) {
	mp := ManifestPath(path)
	mb, err := os.ReadFile(mp)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: the archive's manifest: %w", path, err)
	}
	var man Manifest
	if err := json.Unmarshal(mb, &man); err != nil || man.Format != ManifestFormat {
		return nil, nil, fmt.Errorf("%s: not a fleet backup manifest (want format %q)", mp, ManifestFormat)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != man.Archive.SHA256 || n != man.Archive.Bytes {
		f.Close()
		return nil, nil, &ChecksumError{What: path + " (against " + filepath.Base(mp) + ")", Want: man.Archive.SHA256, Have: got}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	dec, err := zstd.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return &man, &ArchiveReader{f: f, dec: dec, h: sha256.New(), want: man.Stream.SHA256, path: path}, nil
}

// ArchiveReader reads a saved archive's stream and checks its sha256. It
// is safe to Close while an SSH session's stdin copier, which outlives
// Run, is still reading it.
type ArchiveReader struct {
	mu     sync.Mutex
	closed bool
	f      *os.File
	dec    *zstd.Decoder
	h      hash.Hash
	n      int64
	want   string
	path   string
	eof    bool
}

func (a *ArchiveReader) Read(p []byte) (int, error) {
	a.mu.Lock() // a file read: never blocks for long
	defer a.mu.Unlock()
	if a.closed {
		return 0, os.ErrClosed
	}
	n, err := a.dec.Read(p)
	a.h.Write(p[:n])
	a.n += int64(n)
	if err == io.EOF {
		a.eof = true
	}
	return n, err
}

// Close releases the file; it fails when the stream was read to the end
// and does not match the manifest.
func (a *ArchiveReader) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.dec.Close()
	a.f.Close()
	if a.eof {
		if got := hex.EncodeToString(a.h.Sum(nil)); got != a.want {
			return &ChecksumError{What: a.path + " decompressed", Want: a.want, Have: got}
		}
	}
	return nil
}

// Verify restores a saved archive into a scratch container of the data
// service's image on a droplet (no volumes, no network) and runs the
// stack's verify command there. It returns what verify printed.
func (d *Deployer) Verify(ctx context.Context, path, droplet string) (string, error) {
	m, err := d.target(ctx, droplet)
	if err != nil {
		return "", err
	}
	data := d.Spec.Stack.Data
	if data.Verify == "" {
		return "", &ConfigError{Msg: "droplets.yaml: stack.data.verify is not set: fleet cannot check a backup without it"}
	}
	_, ar, err := OpenArchive(path)
	if err != nil {
		return "", err
	}
	defer ar.Close()
	c, err := d.dialMember(ctx, m)
	if err != nil {
		return "", err
	}
	defer c.Close()
	d.step("verifying %s in a scratch container on %s", filepath.Base(path), m.Name)
	var so bytes.Buffer
	out := d.outputs(nil)
	if err := c.Run(ctx, dataCmd(d.Spec.Project, verifyScript(data.Service, data.Verify)), ar, &so, out.stderr); err != nil {
		return so.String(), fmt.Errorf("verify of %s failed: %w", path, err)
	}
	if err := ar.Close(); err != nil {
		return so.String(), err
	}
	if !ar.eof {
		return so.String(), fmt.Errorf("verify of %s: the verify command stopped reading before the end of the archive", path)
	}
	return so.String(), nil
}

// verifyScript runs verify in a fresh container of service's image.
func verifyScript(service, verify string) string {
	return `id=$(docker compose ps -q ` + remote.ShellQuote(service) + ` | head -n 1)
[ -n "$id" ] || { echo "service ` + service + ` is not running" >&2; exit 1; }
img=$(docker inspect --format '{{.Image}}' "$id") || exit 1
# Read all of stdin even if verify stops early, so the sum covers it all.
{ docker run --rm -i --network none --entrypoint /bin/sh "$img" -c ` + remote.ShellQuote(verify) + `; rc=$?; cat >/dev/null; exit $rc; }`
}

// RestoreResult is a saved archive restored onto a droplet.
type RestoreResult struct {
	Droplet  Member
	Manifest *Manifest
	Transfer *Transfer
	Frozen   time.Duration
}

// Restore replaces a droplet's data (the live one by default) with a saved
// archive. The live droplet is frozen for the restore and unfrozen after
// its health gate passes; any other droplet keeps its freeze state.
func (d *Deployer) Restore(ctx context.Context, path, droplet string) (*RestoreResult, error) {
	m, err := d.target(ctx, droplet)
	if err != nil {
		return nil, err
	}
	man, ar, err := OpenArchive(path)
	if err != nil {
		return nil, err
	}
	defer ar.Close()
	c, err := d.dialMember(ctx, m)
	if err != nil {
		return nil, err
	}
	defer func() { c.Close() }() // unfreezeAfter may dial again
	data := d.Spec.Stack.Data
	out := d.outputs(nil)
	res := &RestoreResult{Droplet: *m, Manifest: man}
	live := m.Role == RoleLive
	start := time.Now()
	if live {
		d.step("freezing writes on %s", m.Name)
		if err := d.runData(ctx, c, "freeze", data.Freeze, out); err != nil {
			return nil, d.unfreezeAfter(ctx, &c, m, err, out)
		}
	}
	d.step("restoring %s onto %s", filepath.Base(path), m.Name)
	n, sum, err := d.restoreFrom(ctx, c, m.Name, ar, out)
	if err == nil {
		err = ar.Close()
	}
	if err == nil && sum != man.Stream.SHA256 {
		err = &ChecksumError{What: path + " as restored", Want: man.Stream.SHA256, Have: sum}
	}
	res.Transfer = &Transfer{From: filepath.Base(path), To: m.Name, Bytes: n, SHA256: sum, Duration: time.Since(start)}
	if err == nil {
		d.step("checking health of %s", m.Name)
		err = d.checkHTTP(ctx, m.PublicIPv4, d.Spec.Stack.Health.Timeout)
	}
	if live {
		// Unfrozen even on failure: the old data is still in place when
		// the restore refused, and a half-restored site is the operator's
		// call (the error says so), not a reason to stay read-only.
		err = d.unfreezeAfter(ctx, &c, m, err, out)
		res.Frozen = time.Since(start)
	}
	return res, err
}

func (d *Deployer) unfreezeAfter(ctx context.Context, c **remote.Client, m *Member, cause error, out outputs) error {
	uctx, cancel := detached(ctx)
	defer cancel()
	d.step("unfreezing %s", m.Name)
	if err := d.mustRunData(uctx, c, m, "unfreeze", d.Spec.Stack.Data.Unfreeze, out); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// tarSums reads a stream as a tar as it passes and sums each member; a
// stream that is not a tar yields no entries.
type tarSums struct {
	pw      *io.PipeWriter
	done    chan struct{}
	entries []FileSum
	failed  bool
}

func newTarSums() *tarSums {
	pr, pw := io.Pipe()
	t := &tarSums{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer io.Copy(io.Discard, pr) // never block the writer
		tr := tar.NewReader(pr)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.failed = true
				return
			}
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				t.failed = true
				return
			}
			if hdr.Typeflag == tar.TypeReg {
				t.entries = append(t.entries, FileSum{Name: hdr.Name, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))})
			}
		}
	}()
	return t
}

func (t *tarSums) Write(p []byte) (int, error) {
	t.pw.Write(p) // the reader drains whatever happens
	return len(p), nil
}

func (t *tarSums) Close() { t.pw.Close(); <-t.done }

func (t *tarSums) Result() []FileSum {
	if t.failed {
		return nil
	}
	return t.entries
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
