package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	c := newFixture(t).connect(t)
	for _, tc := range []struct {
		cmd        string
		stdin      string
		wantStdout string
		wantCode   int // 0: success
		wantStderr string
	}{
		{cmd: "echo hello", wantStdout: "hello\n"},
		{cmd: "cat", stdin: "s3cret via stdin\nsecond line", wantStdout: "s3cret via stdin\nsecond line"},
		{cmd: "cat", wantStdout: ""},
		{cmd: "exit 0"},
		{cmd: "exit 1", wantCode: 1, wantStderr: "failing with 1"},
		{cmd: "exit 42", wantCode: 42, wantStderr: "failing with 42"},
		{cmd: "no-such-command", wantCode: 127, wantStderr: "command not found"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			var stdin io.Reader
			if tc.stdin != "" {
				stdin = strings.NewReader(tc.stdin)
			}
			var stdout, stderr bytes.Buffer
			err := c.Run(t.Context(), tc.cmd, stdin, &stdout, &stderr)
			if stdout.String() != tc.wantStdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr %q, want %q in it", stderr.String(), tc.wantStderr)
			}
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("error %v (%T), want *ExitError", err, err)
			}
			if ee.Code != tc.wantCode || ee.Cmd != tc.cmd || !strings.Contains(ee.Stderr, tc.wantStderr) {
				t.Errorf("ExitError %+v, want code %d and stderr with %q", ee, tc.wantCode, tc.wantStderr)
			}
			if !strings.Contains(ee.Error(), tc.wantStderr) {
				t.Errorf("message %q lacks the stderr tail", ee.Error())
			}
		})
	}
}

func TestRunCancelSignalsAndCloses(t *testing.T) {
	f := newFixture(t)
	c := f.connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Run(ctx, "sleep", nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run returned after %s", d)
	}
	// The server may see the channel close before it gets to the signal.
	var signals []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if signals = f.srv.Signals(); len(signals) > 0 {
			break
		}
	}
	if len(signals) != 1 || signals[0] != "TERM" {
		t.Errorf("server got signals %q, want [TERM]", signals)
	}
	// The connection is still usable.
	if out, err := c.Output(t.Context(), "echo still here"); err != nil || string(out) != "still here\n" {
		t.Errorf("after a cancelled command: %q, %v", out, err)
	}
}

func TestExitErrorTail(t *testing.T) {
	for _, tc := range []struct {
		writes []string
		want   string
	}{
		{writes: []string{"abc", "def"}, want: "abcdef"},
		{writes: []string{"abcdefgh"}, want: "abcdefgh"},
		{writes: []string{"abc", "defgh", "ijk", "0123\n456789"}, want: "456789"},
		{writes: []string{"abc\ndef", "ghij"}, want: "defghij"},
		{writes: []string{"0123456789"}, want: ""},
	} {
		w := tailWriter{max: 8}
		for _, s := range tc.writes {
			w.Write([]byte(s))
		}
		if w.String() != tc.want {
			t.Errorf("writes %q: tail %q, want %q", tc.writes, w.String(), tc.want)
		}
	}
	e := &ExitError{Cmd: "set -e\nlong script", Code: 2, Stderr: "a\nb\n\nc\nd\ne\nf\ng\n"}
	want := "remote command \"set -e …\" exited with status 2:\n    c\n    d\n    e\n    f\n    g"
	if e.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", e.Error(), want)
	}
}

// modeAtFirstRead records the mode of the (only) temp file in dir when
// WriteFile first reads the content, i.e. before any of it is written.
type modeAtFirstRead struct {
	t    *testing.T
	dir  string
	r    io.Reader
	mode os.FileMode
	seen bool
}

func (m *modeAtFirstRead) Read(p []byte) (int, error) {
	if !m.seen {
		m.seen = true
		tmps, _ := filepath.Glob(filepath.Join(m.dir, ".*fleet-tmp-*"))
		if len(tmps) != 1 {
			m.t.Errorf("temp files at first read: %q, want one", tmps)
		} else if fi, err := os.Stat(tmps[0]); err == nil {
			m.mode = fi.Mode().Perm()
		}
	}
	return m.r.Read(p)
}

func TestWriteFile(t *testing.T) {
	f := newFixture(t)
	c := f.connect(t)
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		old     string // existing content, if any
		content string
	}{
		{name: "secret", mode: 0o600, content: "hunter2"},
		{name: "replaces", mode: 0o600, old: "old and world readable", content: "new"},
		{name: "script", mode: 0o755, content: "#!/bin/sh\necho hi\n"},
		{name: "empty", mode: 0o644, content: ""},
		{name: "large", mode: 0o640, content: strings.Repeat("0123456789abcdef", 1<<14)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remotePath := "/" + tc.name + "/etc/fleet/secrets/value"
			path := filepath.Join(f.srv.Root, filepath.FromSlash(remotePath)) // where SFTP put it
			dir := filepath.Dir(path)
			if tc.old != "" {
				os.MkdirAll(dir, 0o755)
				if err := os.WriteFile(path, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := &modeAtFirstRead{t: t, dir: dir, r: strings.NewReader(tc.content)}
			if err := c.WriteFile(t.Context(), remotePath, tc.mode, r); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			if r.mode != tc.mode {
				t.Errorf("temp file had mode %v before the content was written, want %v", r.mode, tc.mode)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.content {
				t.Fatalf("content %d bytes (%v), want %d bytes", len(got), err, len(tc.content))
			}
			assertMode(t, path, tc.mode)
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want just the file (temp file left?)", len(entries))
			}
		})
	}
}

func TestWriteFileFailures(t *testing.T) {
	f := newFixture(t)
	c := f.connect(t)
	t.Run("relative path", func(t *testing.T) {
		if err := c.WriteFile(t.Context(), "etc/x", 0o600, strings.NewReader("x")); err == nil {
			t.Fatal("WriteFile with a relative path succeeded")
		}
	})
	t.Run("reader fails", func(t *testing.T) {
		dir := filepath.Join(f.srv.Root, "fails")
		err := c.WriteFile(t.Context(), "/fails/x", 0o600,
			io.MultiReader(strings.NewReader("partial"), errReader{errors.New("disk on fire")}))
		if err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("WriteFile: %v, want the reader's error", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left %d entries behind", len(entries))
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		dir := filepath.Join(f.srv.Root, "cancelled")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.WriteFile(ctx, "/cancelled/x", 0o600, strings.NewReader("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("WriteFile: %v, want context.Canceled", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("left %d entries behind", len(entries))
		}
	})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestSFTPIsSharedAndClosedWithClient(t *testing.T) {
	c := newFixture(t).connect(t)
	a, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.SFTP()
	if err != nil || a != b {
		t.Fatalf("second SFTP() = %p, %v; want the first, %p", b, err, a)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := a.Getwd(); err == nil {
		t.Error("SFTP client still works after Close")
	}
	if _, err := c.SFTP(); err == nil {
		t.Error("SFTP() after Close succeeded")
	}
	if err := c.Run(t.Context(), "echo x", nil, nil, nil); err == nil {
		t.Error("Run after Close succeeded")
	}
}

func TestExitErrorRedactsStderr(t *testing.T) {
	f := newFixture(t)
	c := f.connect(t)
	var screen bytes.Buffer
	out := NewRedactor(&screen, []string{"failing"})
	err := c.Run(t.Context(), "exit 5", nil, out, out)
	out.Flush()
	var ee *ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(ee.Error(), "failing") || !strings.Contains(ee.Error(), "[redacted] with 5") {
		t.Errorf("error leaks the secret or lost the line: %q", ee.Error())
	}
	if strings.Contains(screen.String(), "failing") {
		t.Errorf("screen shows the secret: %q", screen.String())
	}
}

func TestRunIgnoresUnreadStdin(t *testing.T) {
	c := newFixture(t).connect(t)
	if err := c.Run(t.Context(), "exit 0", strings.NewReader(strings.Repeat("x", 1<<20)), nil, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// pemKey is a fresh RSA private key in PEM: a multi-line secret.
func pemKey(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// leakedLines are the lines of secret (of at least 8 bytes) found in s.
func leakedLines(secret, s string) []string {
	var leaked []string
	for _, l := range strings.Split(secret, "\n") {
		if len(l) >= 8 && strings.Contains(s, l) {
			leaked = append(leaked, l)
		}
	}
	return leaked
}

// A failing command prints a PEM key on stderr: however the error's tail
// is cut, no line of the key may reach the error or the log.
func TestExitErrorRedactsMultilineSecret(t *testing.T) {
	f := newFixture(t)
	key := pemKey(t)
	c := f.connect(t)
	filler := strings.Repeat("some earlier output line\n", 250) // > the tail
	// after the key: from nothing to more than the tail minus the key, so
	// the tail's cut falls before, inside (on each line) and after the key.
	// Trailing lines: from none to more than the tail holds, so the tail's
	// cut falls before the key, inside it (on each of its lines) and after.
	for n := 0; n*11 <= stderrTail; n += 9 {
		f.fake.failStderr = filler + "loading key:\n" + key + strings.Repeat("later line\n", n) + "error: bad key\n"
		var screen bytes.Buffer
		out := NewRedactor(&screen, []string{key})
		var stderr io.Writer = out
		if n%2 == 1 {
			stderr = unwrapper{out} // a filter in front of the redactor
		}
		err := c.Run(t.Context(), "fail", nil, out, stderr)
		out.Flush()
		var ee *ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("Run: %v", err)
		}
		for what, s := range map[string]string{"error": ee.Error(), "ExitError.Stderr": ee.Stderr, "log": screen.String()} {
			if leaked := leakedLines(key, s); len(leaked) > 0 {
				t.Errorf("%d lines after the key: the %s shows %d line(s) of it, e.g. %q", n, what, len(leaked), leaked[0])
			}
		}
		if !strings.Contains(screen.String(), "error: bad key") || !strings.Contains(ee.Error(), "error: bad key") {
			t.Fatalf("%d lines after the key: lost the output around it:\n%s", n, ee.Error())
		}
	}
}

// unwrapper passes its writes on and says where to.
type unwrapper struct{ w io.Writer }

func (u unwrapper) Write(p []byte) (int, error) { return u.w.Write(p) }
func (u unwrapper) Unwrap() io.Writer           { return u.w }
