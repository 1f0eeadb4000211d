package remotetest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/pkg/sftp"
)

func TestParse(t *testing.T) {
	type calls = []remotetest.Call
	for _, tc := range []struct {
		line string
		want calls
	}{
		{line: "echo hello", want: calls{{Args: []string{"echo", "hello"}}}},
		{line: `cd /srv/fleet/p && COMPOSE_PROJECT_NAME=p COMPOSE_FILE='/srv/fleet/p/compose.yaml' sh -c 'echo it'\''s "frozen"'`,
			want: calls{
				{Args: []string{"cd", "/srv/fleet/p"}},
				{Assigns: []string{"COMPOSE_PROJECT_NAME=p", "COMPOSE_FILE=/srv/fleet/p/compose.yaml"}, Args: []string{"sh", "-c", `echo it's "frozen"`}},
			}},
		{line: `tee -p "$f" | { restore; } >&2`,
			want: calls{{Args: []string{"tee", "-p", `"$f"`}}, {Args: []string{"restore"}}}},
		{line: "f=$(mktemp -u /tmp/x.XXXXXX) && mkfifo -m 0600 \"$f\" || exit 1\nwait $p",
			want: calls{{Args: []string{"mktemp", "-u", "/tmp/x.XXXXXX"}}, {Args: []string{"mkfifo", "-m", "0600", `"$f"`}}, {Args: []string{"exit", "1"}}, {Args: []string{"wait", "$p"}}}},
		{line: `rm -f a\ b "c d" ~/e '' * x{1,2}`, want: calls{{Args: []string{"rm", "-f", "a b", "c d", "~/e", "", "*", "x1", "x2"}}}},
		{line: `A=a\ b B= env`, want: calls{{Assigns: []string{"A=a b", "B="}, Args: []string{"env"}}}},
	} {
		got, err := remotetest.Parse(tc.line)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q)\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
	if _, err := remotetest.Parse("echo 'unterminated"); err == nil {
		t.Error("Parse accepted an unterminated quote")
	}
}

// dial connects a remote.Client to srv as droplet "web-1".
func dial(t *testing.T, srv *remotetest.Server) *remote.Client {
	t.Helper()
	kh := remote.KnownHosts{Dir: t.TempDir()}
	if err := kh.Pin("web-1", srv.Addr, srv.HostKey); err != nil {
		t.Fatal(err)
	}
	d := &remote.Dialer{KnownHosts: kh, KeyFiles: []string{srv.ClientKeyFile}}
	c, err := d.Dial(t.Context(), "web-1", srv.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestScript(t *testing.T) {
	srv := remotetest.NewServer(t, remotetest.Options{Exec: remotetest.Script(
		remotetest.Rule{Match: remotetest.Runs("sh", "-c", "freeze"), Reply: remotetest.Reply{Stdout: "frozen\n"}},
		remotetest.Rule{Match: remotetest.Runs("restore"), Reply: remotetest.Reply{ReadStdin: true, Stderr: "cannot read it\n", Code: 3}},
		remotetest.Rule{Match: remotetest.Runs("hang"), Reply: remotetest.Reply{Stdout: "started\n", Hang: true}},
		remotetest.Rule{Match: remotetest.Runs("vanish"), Reply: remotetest.Reply{Stdout: "half", Drop: true}},
		remotetest.Rule{Match: remotetest.Contains("oom"), Reply: remotetest.Reply{Signal: "KILL"}},
	)})
	c := dial(t, srv)

	for _, tc := range []struct {
		cmd, stdin string
		timeout    time.Duration
		wantOut    string
		check      func(t *testing.T, err error)
	}{
		{cmd: "cd /srv/p && A=1 sh -c " + remote.ShellQuote("freeze"), wantOut: "frozen\n",
			check: func(t *testing.T, err error) {
				if err != nil {
					t.Fatal(err)
				}
			}},
		{cmd: "restore", stdin: "archive bytes",
			check: func(t *testing.T, err error) {
				var ee *remote.ExitError
				if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(ee.Stderr, "cannot read it") {
					t.Fatalf("Run: %v, want exit 3 with the stderr", err)
				}
			}},
		{cmd: "sh -c 'freeze; rm -rf /'", check: func(t *testing.T, err error) {
			var ee *remote.ExitError
			if !errors.As(err, &ee) || ee.Code != 127 {
				t.Fatalf("Run: %v, want exit 127 for a command no rule matches", err)
			}
		}},
		{cmd: "hang", timeout: 300 * time.Millisecond, wantOut: "started\n", check: func(t *testing.T, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Run: %v, want the context's error", err)
			}
		}},
		{cmd: "vanish", wantOut: "half", check: func(t *testing.T, err error) {
			if err == nil || !strings.Contains(err.Error(), "without an exit status") {
				t.Fatalf("Run: %v, want a lost connection", err)
			}
		}},
		{cmd: "oom", check: func(t *testing.T, err error) {
			var ee *remote.ExitError
			if !errors.As(err, &ee) || ee.Signal != "KILL" || ee.Code != -1 {
				t.Fatalf("Run: %v, want killed by KILL", err)
			}
		}},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			if tc.cmd == "oom" { // the connection was dropped by "vanish"
				c = dial(t, srv)
			}
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			var stdout bytes.Buffer
			err := c.Run(ctx, tc.cmd, strings.NewReader(tc.stdin), &stdout, nil)
			tc.check(t, err)
			if stdout.String() != tc.wantOut {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantOut)
			}
		})
	}

	cmds := srv.Commands()
	if len(cmds) != 6 {
		t.Fatalf("recorded %d commands, want 6", len(cmds))
	}
	if got := cmds[0].Find("sh"); got == nil || !reflect.DeepEqual(got.Assigns, []string{"A=1"}) || !reflect.DeepEqual(got.Args, []string{"sh", "-c", "freeze"}) {
		t.Errorf("calls of %q: %+v", cmds[0].Line, cmds[0].Calls)
	}
	if string(cmds[1].Stdin) != "archive bytes" || cmds[1].StdinBytes != 13 || cmds[1].Result.Code != 3 {
		t.Errorf("restore recorded stdin %q (%d bytes), result %+v", cmds[1].Stdin, cmds[1].StdinBytes, cmds[1].Result)
	}
	// The hang ends with the client's signal, or with the session's close.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !srv.Commands()[3].Done; {
		time.Sleep(10 * time.Millisecond)
	}
	if h := srv.Commands()[3]; !h.Done || !reflect.DeepEqual(h.Signals, []string{"TERM"}) || h.Result.Signal != "TERM" {
		t.Errorf("hang: done %v, signals %q, result %+v; want it ended by TERM", h.Done, h.Signals, h.Result)
	}
}

func TestSFTPStaysInRoot(t *testing.T) {
	srv := remotetest.NewServer(t, remotetest.Options{})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(srv.Root, "escape")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv)
	if err := c.WriteFile(t.Context(), "/etc/fleet/p/secrets/db", 0o600, strings.NewReader("s3cret")); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(srv.Root, "etc/fleet/p/secrets/db")); err != nil || string(b) != "s3cret" {
		t.Fatalf("file under the root: %q, %v", b, err)
	}
	fs, err := c.SFTP()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/escape/x", "/../../" + outside + "/x"} {
		f, err := fs.Create(p)
		if err == nil {
			f.Close()
			t.Errorf("created %s", p)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("SFTP wrote outside its root: %v", entries)
	}
	if _, err := fs.Stat("/escape/."); err == nil {
		t.Error("stat through a symlink out of the root succeeded")
	}
	// Plain rename refuses to replace, posix-rename replaces.
	fs.Create("/a")
	fs.Create("/b")
	if err := fs.Rename("/a", "/b"); err == nil {
		t.Error("rename replaced an existing file")
	}
	if err := fs.PosixRename("/a", "/b"); err != nil {
		t.Errorf("posix-rename: %v", err)
	}
	if _, err := fs.Stat("/a"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after posix-rename, /a: %v", err)
	}
	var se *sftp.StatusError
	if err := fs.Remove("/etc"); !errors.As(err, &se) {
		t.Errorf("remove of a directory: %v", err)
	}
}

func TestAuth(t *testing.T) {
	srv := remotetest.NewServer(t, remotetest.Options{User: "deploy"})
	kh := remote.KnownHosts{Dir: t.TempDir()}
	kh.Pin("web-1", srv.Addr, srv.HostKey)
	for _, user := range []string{"root", "deploy"} {
		d := &remote.Dialer{KnownHosts: kh, KeyFiles: []string{srv.ClientKeyFile}, User: user}
		c, err := d.Dial(t.Context(), "web-1", srv.Addr, time.Second)
		var ae *remote.AuthError
		switch {
		case user == "deploy" && err != nil:
			t.Errorf("%s: %v", user, err)
		case user == "root" && !errors.As(err, &ae):
			t.Errorf("%s: %v, want an AuthError", user, err)
		}
		if c != nil {
			c.Close()
		}
	}
	srv.Authorize()
	d := &remote.Dialer{KnownHosts: kh, KeyFiles: []string{srv.ClientKeyFile}, User: "deploy"}
	if _, err := d.Dial(t.Context(), "web-1", srv.Addr, time.Second); err == nil {
		t.Error("Dial succeeded with no key authorized")
	}
}
