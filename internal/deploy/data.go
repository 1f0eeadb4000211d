package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// The stack's data contract (spec.Data) as run on droplets. fleet knows
// nothing of the application: it runs the stack's commands, streams
// archives between them and checks that every byte arrived.

// promotedAtFile records, on a droplet, when it last became live (its own
// clock, unix seconds): a rollback counts the writes made since then.
func promotedAtFile(project string) string { return "/etc/fleet/" + project + "/promoted-at" }

// dataCmd is a stack data command as run on a droplet: in the project's
// directory, with compose pointed at the resolved file so a bare
// `docker compose exec` reaches the stack.
func dataCmd(project, cmd string, env ...string) string {
	e := append([]string{"COMPOSE_PROJECT_NAME=" + project, "COMPOSE_FILE=" + composeFile(project)}, env...)
	return then(sh("cd", projectDir(project)), withEnv(sh("sh", "-c", cmd), e...))
}

// sumMarker prefixes the line on stderr where the droplet reports the
// sha256 of the stream it produced or consumed.
const sumMarker = "fleet-sha256 "

// summed runs pipeline under bash with a fifo "$f" whose reader hashes
// what pipeline tees into it, then reports that sha256 on stderr after
// sumMarker and exits with the pipeline's status.
func summed(options, pipeline string) string {
	return "bash -c " + remote.ShellQuote(options+`f=$(mktemp -u /tmp/fleet-sum.XXXXXX) && mkfifo -m 0600 "$f" || exit 1
sha256sum <"$f" >"$f.sum" & p=$!
`+pipeline+`; rc=$?
wait $p; read -r s _ <"$f.sum"; rm -f "$f" "$f.sum"
echo "`+sumMarker+`$s" >&2
exit $rc`)
}

// backupScript runs backup (with env, such as FLEET_BASE) and reports the
// sha256 of what it wrote. pipefail: a backup that fails midway must fail
// the run.
func backupScript(project, backup string, env ...string) string {
	return summed("set -o pipefail\n", dataCmd(project, backup, env...)+` | tee "$f"`)
}

// restoreScript feeds stdin to restore and reports the sha256 of all of
// stdin. tee -p keeps reading (and hashing) after the restore stops
// reading (tar leaves its trailing padding), so the sum covers every byte
// sent; the exit status is restore's own.
func restoreScript(project, restore string) string {
	return summed("", `tee -p "$f" | { `+dataCmd(project, restore)+`; } >&2`)
}

// sumCatcher passes a command's stderr on, except the sum marker line,
// which it keeps.
type sumCatcher struct {
	w   io.Writer
	buf []byte
	sum string
}

func (s *sumCatcher) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			break
		}
		line := s.buf[:i+1]
		if v, ok := strings.CutPrefix(string(line), sumMarker); ok {
			s.sum = strings.TrimSpace(v)
		} else if s.w != nil {
			s.w.Write(line)
		}
		s.buf = s.buf[i+1:]
	}
	return len(p), nil
}

func (s *sumCatcher) Flush() {
	if len(s.buf) > 0 && s.w != nil {
		s.w.Write(s.buf)
	}
	s.buf = nil
}

// Transfer is one archive streamed from a droplet's backup to another's
// restore (or to or from a file here).
type Transfer struct {
	From     string        `json:"from"`
	To       string        `json:"to"`
	Bytes    int64         `json:"bytes"`
	SHA256   string        `json:"sha256"`
	Duration time.Duration `json:"-"`
}

// MarshalJSON adds the duration in seconds.
func (t *Transfer) MarshalJSON() ([]byte, error) {
	type plain Transfer
	return json.Marshal(struct {
		*plain
		Seconds float64 `json:"seconds"`
	}{(*plain)(t), t.Duration.Seconds()})
}

// BytesPerSecond is the transfer's throughput.
func (t *Transfer) BytesPerSecond() float64 {
	if t.Duration <= 0 {
		return 0
	}
	return float64(t.Bytes) / t.Duration.Seconds()
}

// IncompatibleDataError is a restore the target release refused (exit 3):
// it cannot read data the archive holds, such as a newer schema.
type IncompatibleDataError struct {
	Droplet string
	Detail  string
}

func (e *IncompatibleDataError) Error() string {
	return fmt.Sprintf("%s cannot read the data: %s", e.Droplet, e.Detail)
}

// ChecksumError is an archive that changed on the way.
type ChecksumError struct {
	What       string
	Want, Have string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch: %s: sha256 %s, expected %s", e.What, short(e.Have), short(e.Want))
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	if s == "" {
		return "(none)"
	}
	return s
}

// restoreFrom streams r into the stack's restore on c and checks that the
// droplet received exactly what was sent.
func (d *Deployer) restoreFrom(ctx context.Context, c *remote.Client, name string, r io.Reader, out outputs) (n int64, sum string, err error) {
	sr := &sumReader{r: r, h: sha256.New()}
	sc := &sumCatcher{w: out.stderr}
	err = c.Run(ctx, restoreScript(d.Spec.Project, d.Spec.Stack.Data.Restore), sr, out.stdout, sc)
	sc.Flush()
	n, sum = sr.finish()
	var ee *remote.ExitError
	if errors.As(err, &ee) && ee.Code == 3 {
		return n, sum, &IncompatibleDataError{Droplet: name, Detail: stackSaid(ee.Stderr, 3)}
	}
	if errors.As(err, &ee) && ee.Code == 4 {
		return n, sum, &BaseMismatchError{Droplet: name, Detail: stackSaid(ee.Stderr, 2)}
	}
	if err != nil {
		return n, sum, fmt.Errorf("restore on %s: %w", name, err)
	}
	if sc.sum != sum {
		return n, sum, &ChecksumError{What: "archive as received by " + name, Want: sum, Have: sc.sum}
	}
	return n, sum, nil
}

// backupTo streams the stack's backup on c into w and checks that what
// arrived is what the droplet sent.
func (d *Deployer) backupTo(ctx context.Context, c *remote.Client, name string, w io.Writer, out outputs) (n int64, sum string, err error) {
	return d.backupFrom(ctx, c, name, "", w, out)
}

// backupFrom is backupTo with FLEET_BASE=base when base is not "".
func (d *Deployer) backupFrom(ctx context.Context, c *remote.Client, name, base string, w io.Writer, out outputs) (n int64, sum string, err error) {
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, h)}
	sc := &sumCatcher{w: out.stderr}
	var env []string
	if data := d.Spec.Stack.Data; base != "" || data.State != "" {
		// Set even when empty: `docker compose exec -e FLEET_BASE` then
		// passes "" rather than depending on how compose treats an unset
		// variable.
		env = append(env, "FLEET_BASE="+base)
	}
	err = c.Run(ctx, backupScript(d.Spec.Project, d.Spec.Stack.Data.Backup, env...), nil, cw, sc)
	sc.Flush()
	n, sum = cw.n, hex.EncodeToString(h.Sum(nil))
	if err != nil {
		return n, sum, fmt.Errorf("backup on %s: %w", name, err)
	}
	if sc.sum != sum {
		return n, sum, &ChecksumError{What: "archive from " + name, Want: sc.sum, Have: sum}
	}
	return n, sum, nil
}

// transfer streams a backup of from into the restore of to, through this
// machine, and checks the sha256 at all three points. When the stack says
// what data `to` holds (stack.data.state), the backup gets it as FLEET_BASE
// and may send only what changed since; if to's restore then says the base
// is not what it holds (exit 4), a full archive follows (delta.go).
func (d *Deployer) transfer(ctx context.Context, from *remote.Client, fromName string, to *remote.Client, toName string, out outputs) (*Transfer, error) {
	return d.transferDelta(ctx, from, fromName, to, toName, out)
}

// transferBase is one transfer with FLEET_BASE=base ("" = none).
func (d *Deployer) transferBase(ctx context.Context, from *remote.Client, fromName string, to *remote.Client, toName, base string, out outputs) (*Transfer, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var (
		bErr  error
		bSum  string
		bDone = make(chan struct{})
	)
	go func() {
		defer close(bDone)
		_, bSum, bErr = d.backupFrom(ctx, from, fromName, base, pw, out)
		if bErr != nil {
			// A restore must never finish on half an archive: stop it.
			cancel()
			pw.CloseWithError(bErr)
			return
		}
		pw.Close()
	}()
	n, rSum, rErr := d.restoreFrom(ctx, to, toName, pr, out)
	pr.CloseWithError(errors.New("restore ended")) // unblocks the backup if the restore stopped early
	<-bDone
	t := &Transfer{From: fromName, To: toName, Bytes: n, SHA256: rSum, Duration: time.Since(start)}
	switch {
	case bErr != nil:
		return t, bErr
	case rErr != nil:
		return t, rErr
	case bSum != rSum:
		return t, &ChecksumError{What: "archive relayed from " + fromName + " to " + toName, Want: bSum, Have: rSum}
	}
	return t, nil
}

// runData runs one data command (freeze, unfreeze) and logs its output.
func (d *Deployer) runData(ctx context.Context, c *remote.Client, what, cmd string, out outputs) error {
	if err := c.Run(ctx, dataCmd(d.Spec.Project, cmd), nil, out.stdout, out.stderr); err != nil {
		return fmt.Errorf("%s on %s: %w", what, c.Droplet(), err)
	}
	return nil
}

// writesSince asks the stack how many writes it took since the droplet
// became live; -1 = unknown (no writes command, or no record of when).
func (d *Deployer) writesSince(ctx context.Context, c *remote.Client, out outputs) (int, error) {
	return d.writesAfter(ctx, c, out, 0)
}

// writesAfter counts the writes on c since its promote or, if later, since
// floor (unix seconds by c's clock).
func (d *Deployer) writesAfter(ctx context.Context, c *remote.Client, out outputs, floor int64) (int, error) {
	data := d.Spec.Stack.Data
	if data.Writes == "" {
		return -1, nil
	}
	at, err := c.Output(ctx, sh("cat", promotedAtFile(d.Spec.Project))+" 2>/dev/null || true")
	if err != nil {
		return -1, err
	}
	since := strings.TrimSpace(string(at))
	t, err := strconv.ParseInt(since, 10, 64)
	if err != nil {
		return -1, nil
	}
	if floor > t {
		since = strconv.FormatInt(floor, 10)
	}
	var so bytes.Buffer
	if err := c.Run(ctx, dataCmd(d.Spec.Project, data.Writes, "FLEET_SINCE="+since), nil, &so, out.stderr); err != nil {
		return -1, fmt.Errorf("counting writes on %s: %w", c.Droplet(), err)
	}
	v := strings.TrimSpace(lastLine(so.String()))
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1, fmt.Errorf("counting writes on %s: %q is not a count (stack.data.writes must print one number)", c.Droplet(), v)
	}
	return n, nil
}

// recordLine writes value to file (one of the project's /etc/fleet
// records), making the directory first; a reader sees the old file or the
// new one.
func recordLine(project, file, value string) string {
	return then(sh("mkdir", "-p", "/etc/fleet/"+project), replace(sh("echo", value), file))
}

// markLine records on a droplet, by its own clock, that it is live from
// now.
func markLine(project string) string {
	return replace(sh("date", "+%s"), promotedAtFile(project))
}

// stackSaid is the last n lines a stack command wrote on stderr, without
// fleet's own sum marker, joined for one error message.
func stackSaid(stderr string, n int) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, sumMarker) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 {
		return "its restore exited 3 (this release cannot read the archive)"
	}
	return strings.Join(lines, "; ")
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// sumReader counts and hashes what is read through it until finish. The
// SSH session's stdin copier may still be inside a Read when Run returns
// (x/crypto does not wait for it): what it gets after finish is dropped,
// never counted or hashed while the caller reads the sum.
type sumReader struct {
	r    io.Reader
	mu   sync.Mutex
	h    hash.Hash
	n    int64
	done bool
}

func (s *sumReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p) // may block: outside the lock
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return 0, io.ErrClosedPipe
	}
	s.h.Write(p[:n])
	s.n += int64(n)
	return n, err
}

// finish stops the count and returns it with the sha256 of what was read.
func (s *sumReader) finish() (int64, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	return s.n, hex.EncodeToString(s.h.Sum(nil))
}
