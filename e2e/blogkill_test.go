//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// killAfter runs fleet args and SIGKILLs it delay after a line of its
// stderr contains marker (piped, fleet prints no progress steps, but it
// passes on the stack's stderr): a runner lost mid-switch.
// It returns what fleet printed and whether the kill came before fleet
// exited on its own.
func (r *runner) killAfter(marker string, delay time.Duration, args ...string) (string, bool) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Dir, cmd.Env = r.dir, append(os.Environ(), r.env...)
	cmd.Stdout = io.Discard
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	var out strings.Builder
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), marker) {
				once = true
				close(seen)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case <-seen:
		time.Sleep(delay)
		killed := cmd.Process.Signal(syscall.SIGKILL) == nil
		err := <-exited
		var ee *exec.ExitError
		killed = killed && errors.As(err, &ee) && !ee.Exited()
		return out.String(), killed
	case err := <-exited:
		r.t.Fatalf("fleet %v exited (%v) before printing %q:\n%s", args, err, marker, out.String())
	}
	return "", false
}

// promoteKilled: the promote is killed (SIGKILL) delay after a line of
// the stack's own stderr (its timing lines) that contains marker: after
// the forward ended ("fleet-data: timing forward:"), with the IP's move,
// begun with it, maybe still under way, which is past the commit point;
// or after the candidate's unfreeze, as the forward and the move begin.
// A re-run converges: the candidate is live, with the data as of the
// freeze. Past the commit point it must not carry data again (it would
// overwrite writes the candidate acknowledged); before it (pastCommit
// false), it may start over from the freeze.
func (e *blogEnv) promoteKilled(marker string, delay time.Duration, pastCommit bool) {
	t := e.t
	t.Helper()
	before := e.r.status()
	out, killed := e.r.killAfter(marker, delay, "promote")
	if !killed {
		t.Fatalf("fleet promote finished before the kill:\n%s", out)
	}
	start := time.Now()
	rerun, errOut, code := e.r.run("promote", "--json")
	if code != 0 {
		t.Fatalf("re-run of the killed promote: exit %d\n%s%s\nkilled run:\n%s", code, rerun, errOut, out)
	}
	var res map[string]any
	json.Unmarshal([]byte(rerun), &res)
	path := "redone from the freeze"
	switch {
	case res["resumed"] == true:
		path = "the IP had moved: finished the bookkeeping"
	case res["data"] == nil && res["freeze_seconds"] == 0.0:
		path = "found the forward: only the IP moved"
	}
	t.Logf("promote killed %v after %q, re-run in %.1fs: %s (data %v)", delay, marker, time.Since(start).Seconds(), path, res["data"])
	if path == "redone from the freeze" && pastCommit {
		// The forward had ended: its marker must send the re-run to the move.
		t.Errorf("the re-run of a promote killed past its forward carried the data again:\n%s", errOut)
	}
	after := e.r.status()
	live := ""
	for _, d := range after.Droplets {
		if d.Role == "live" {
			live = d.Version
		}
	}
	for _, d := range before.Droplets {
		if d.Role == "candidate" && d.Version != live {
			t.Fatalf("after the re-run %s is live, want the candidate %s", live, d.Version)
		}
	}
}
