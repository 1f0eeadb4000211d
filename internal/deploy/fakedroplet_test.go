package deploy

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// The stack's data contract as the abort tests script it: each command is
// recognised on the droplet by its `sh -c` argument.
var abortData = spec.Data{
	Service:  "db",
	Backup:   "fleet-data backup",
	Restore:  "fleet-data restore",
	Freeze:   "fleet-data freeze",
	Unfreeze: "fleet-data unfreeze",
	Writes:   "fleet-data writes",
}

// stateData is the state command of tests that give the stack one
// (abortData has none): `state` prints fakeDroplet.state.
const stateData = "fleet-data state"

// promotedAt is what a droplet's promoted-at file says.
const promotedAt = "1767225600"

// step scripts one kind of command on a fake droplet; the zero value
// succeeds.
type step struct {
	code   int    // exit status (backup midway: 1 when 0)
	stderr string // written before exiting
	stdout string // replaces the default output (writes, since)
	midway bool   // backup: half the payload, then exit code (1 if 0)
	badSum bool   // backup/restore: report a sha256 of something else
	drop   bool   // drop the connection (backup: after half the payload)
	hang   bool   // hang (backup: after half the payload) until the client gives up
	// restore: exit before reading stdin, as the wrapper does when its
	// mkfifo fails
	noRead bool
	gone   bool          // with drop: refuse every login after (the droplet is gone)
	delay  time.Duration // wait this long first (or until the client gives up)
}

func (s step) fails() bool { return s.code != 0 || s.midway || s.drop || s.hang }

// fakeDroplet is a droplet's sshd: a remotetest server answering fleet's
// data commands.
type fakeDroplet struct {
	cloud.Droplet
	srv     *remotetest.Server
	payload []byte // what its backup writes

	mu     sync.Mutex
	steps  map[string]step
	writes string // what `writes` prints (default 0)
	state  string // what `state` prints (default none)
	// writesSeq scripts the next `writes` runs, one step each, before
	// steps["writes"] applies.
	writesSeq []step
	journal   []byte // the audit journal file
	// lastSync is the freeze budget's record of the last sync onto it.
	lastSync string
}

func (fd *fakeDroplet) script(kind string, s step) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.steps[kind] = s
}

func (fd *fakeDroplet) step(kind string) step {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return fd.steps[kind]
}

// kind names the data command a command line runs: freeze, unfreeze,
// backup, restore, writes, mark (promoted-at written), since
// (promoted-at read), or "?<line>".
func kind(c remotetest.Command) string {
	if k := kindOf(c.Calls); k != "" {
		return k
	}
	return "?" + c.Line
}

func kindOf(calls []remotetest.Call) string {
	// makeWritable's one run: promoted-at, then the unfreeze.
	if len(calls) > 1 && calls[0].Args[0] == "date" && kindOf(calls[len(calls)-1:]) == "unfreeze" {
		return "mark+unfreeze"
	}
	for _, c := range calls {
		a := c.Args
		switch {
		case len(a) >= 3 && a[0] == "bash" && a[1] == "-c":
			// backup and restore run inside the sha256 wrappers
			if inner, err := remotetest.Parse(a[2]); err == nil {
				if k := kindOf(inner); k != "" {
					return k
				}
			}
		case len(a) >= 3 && a[0] == "sh" && a[1] == "-c":
			switch a[2] {
			case abortData.Freeze:
				return "freeze"
			case abortData.Unfreeze:
				return "unfreeze"
			case abortData.Backup:
				return "backup"
			case abortData.Restore:
				return "restore"
			case abortData.Writes:
				return "writes"
			case stateData:
				return "state"
			case holdHold:
				return "hold"
			case holdForward:
				return "forward"
			}
		case len(a) == 2 && a[0] == "date" && len(calls) == 1:
			return "clock" // the live droplet's time before a rollback's pre-sync
		case len(a) >= 1 && a[0] == "date":
			return "mark"
		case len(a) == 2 && a[0] == "cat" && a[1] == carriedFile("blog"):
			return "carried-read"
		case len(a) == 3 && a[0] == "mv" && a[2] == carriedFile("blog"):
			return "carried-write"
		case len(a) == 2 && a[0] == "cat" && a[1] == promotedAtFile("blog"):
			return "since"
		case len(a) == 2 && a[0] == "cat" && a[1] == forwardMarkerFile("blog"):
			return "fwd-read"
		case len(a) >= 1 && a[0] == "tail" && a[len(a)-1] == journalFile("blog"):
			return "journal-read"
		case len(a) == 3 && a[0] == "mv" && a[2] == journalFile("blog"):
			return "journal-write"
		case len(a) >= 1 && a[0] == "head" && a[len(a)-1] == lastSyncFile("blog"):
			return "last-sync"
		case len(a) == 3 && a[0] == "mv" && a[2] == lastSyncFile("blog"):
			return "note-sync"
		}
	}
	return ""
}

func sumLine(b []byte) string { return sumMarker + sha(b) + "\n" }

func (fd *fakeDroplet) handle(ctx context.Context, x *remotetest.Exec) remotetest.Result {
	k := kindOf(x.Calls)
	s := fd.step(k)
	if k == "writes" {
		fd.mu.Lock()
		if len(fd.writesSeq) > 0 {
			s, fd.writesSeq = fd.writesSeq[0], fd.writesSeq[1:]
		}
		fd.mu.Unlock()
	}
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return remotetest.Result{Signal: "TERM"}
		}
	}
	end := func() remotetest.Result {
		io.WriteString(x.Stderr, s.stderr)
		if s.hang {
			<-ctx.Done()
			return remotetest.Result{Signal: "TERM"}
		}
		if s.gone {
			fd.srv.Authorize()
		}
		return remotetest.Result{Code: s.code, Drop: s.drop}
	}
	switch k {
	case "":
		return remotetest.Result{Code: 127}
	case "journal-read":
		fd.mu.Lock()
		x.Stdout.Write(fd.journal)
		fd.mu.Unlock()
		return end()
	case "journal-write":
		b, _ := io.ReadAll(x.Stdin)
		fd.mu.Lock()
		fd.journal = b
		fd.mu.Unlock()
		return end()
	case "last-sync":
		fd.mu.Lock()
		io.WriteString(x.Stdout, fd.lastSync)
		fd.mu.Unlock()
		return end()
	case "note-sync":
		b, _ := io.ReadAll(x.Stdin)
		fd.mu.Lock()
		fd.lastSync = string(b)
		fd.mu.Unlock()
		return end()
	case "backup":
		out := fd.payload
		if s.midway || s.drop || s.hang {
			out = out[:len(out)/2]
			if s.midway && s.code == 0 {
				s.code = 1
			}
		}
		x.Stdout.Write(out)
		if s.badSum {
			out = []byte("something else")
		}
		if !s.drop && !s.hang {
			io.WriteString(x.Stderr, sumLine(out))
		}
		return end()
	case "restore":
		// Like restoreScript's tee -p: all of stdin is read and hashed,
		// whatever the restore itself does.
		if s.noRead {
			return end()
		}
		b, _ := io.ReadAll(x.Stdin)
		if s.badSum {
			b = []byte("something else")
		}
		io.WriteString(x.Stderr, sumLine(b))
		return end()
	case "since":
		out := promotedAt + "\n"
		if s.stdout != "" {
			out = s.stdout
		}
		io.WriteString(x.Stdout, out)
		return end()
	case "state":
		fd.mu.Lock()
		out := fd.state
		fd.mu.Unlock()
		if out == "" {
			out = "none\n"
		}
		io.WriteString(x.Stdout, out)
		return end()
	case "writes":
		fd.mu.Lock()
		out := fd.writes
		fd.mu.Unlock()
		if s.stdout != "" {
			out = s.stdout
		}
		io.WriteString(x.Stdout, out)
		return end()
	}
	io.WriteString(x.Stdout, s.stdout)
	return end()
}

// log is the data commands the droplet received, in order; a "!" marks
// one scripted to fail.
func (fd *fakeDroplet) log() []string {
	var out []string
	for _, c := range fd.srv.Commands() {
		k := kind(c)
		if fd.step(k).fails() {
			k += "!"
		}
		out = append(out, k)
	}
	return out
}

// world is a project on a fake cloud whose droplets are remotetest
// servers (PublicIPv4 "127.0.0.1:port", host keys pinned).
type world struct {
	t     *testing.T
	cloud *fakeCloud
	d     *Deployer
	drops map[int]*fakeDroplet
	warn  *bytes.Buffer
	log   *bytes.Buffer
	runs  int // commands run so far, for tests that vary their options
}

// member describes one droplet of a world.
type member struct {
	id      int
	version string
	tags    []string
	live    bool // holds the reserved IP
}

const testIP = "203.0.113.10"

// newWorld makes the droplets, newest last; reservedIP is the spec's
// ("auto": none exists yet, unless a member is live).
func newWorld(t *testing.T, reservedIP string, ms ...member) *world {
	t.Helper()
	data := abortData
	w := &world{t: t, cloud: newFakeCloud(), drops: map[int]*fakeDroplet{}, warn: &bytes.Buffer{}, log: &bytes.Buffer{}}
	kh := remote.KnownHosts{Dir: t.TempDir()}
	dialer := &remote.Dialer{KnownHosts: kh}
	var clientKey ssh.PublicKey
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, m := range ms {
		fd := &fakeDroplet{steps: map[string]step{}, writes: "0\n"}
		fd.srv = remotetest.NewServer(t, remotetest.Options{Exec: fd.handle})
		if clientKey == nil {
			// One client key for every droplet, as fleet has.
			dialer.KeyFiles = []string{fd.srv.ClientKeyFile}
			b, err := os.ReadFile(fd.srv.ClientKeyFile)
			if err != nil {
				t.Fatal(err)
			}
			signer, err := ssh.ParsePrivateKey(b)
			if err != nil {
				t.Fatal(err)
			}
			clientKey = signer.PublicKey()
		}
		fd.srv.Authorize(clientKey)
		fd.payload = bytes.Repeat([]byte(m.version+" data; "), 2000)
		fd.Droplet = cloud.Droplet{
			ID: m.id, Name: spec.DropletName("blog", m.version, "abc123"), Status: "active", Region: "fra1",
			Tags:       append([]string{ProjectTag("blog"), VersionTag(m.version)}, m.tags...),
			PublicIPv4: fd.srv.Addr, CreatedAt: base.Add(time.Duration(i) * time.Hour),
		}
		if err := kh.Pin(fd.Name, fd.PublicIPv4, fd.srv.HostKey); err != nil {
			t.Fatal(err)
		}
		w.cloud.addDroplet(fd.Droplet)
		if m.live {
			ip := reservedIP
			if ip == "auto" {
				ip = testIP
			}
			w.cloud.addIP(ip, m.id)
		}
		w.drops[m.id] = fd
	}
	if reservedIP != "auto" && w.cloud.holder(reservedIP) < 0 {
		w.cloud.addIP(reservedIP, 0)
	}
	w.d = &Deployer{
		Cloud: w.cloud,
		Spec: &spec.Spec{
			Project: "blog", ReservedIP: reservedIP, Keep: 1,
			Timeouts: spec.Timeouts{Create: time.Second, Active: time.Second, Assign: time.Second, SSH: time.Second},
			Stack:    &spec.Stack{Data: &data, Health: spec.Health{Host: "blog.example", Timeout: time.Second}},
		},
		Remote:   &Remote{Dialer: dialer, Log: w.log},
		Warnings: w.warn,
	}
	return w
}

// unreachable makes a droplet refuse every login.
func (w *world) unreachable(id int) { w.drops[id].srv.Authorize() }

// unhealthy gives the stack a health path: the droplets' address is an
// sshd, so no HTTP check can pass.
func (w *world) unhealthy() {
	w.d.Spec.Stack.Health.Paths = []string{"/healthz"}
	w.d.Spec.Stack.Health.Timeout = 200 * time.Millisecond
}

func (w *world) name(id int) string { return w.drops[id].Name }

// expand replaces {N} with droplet N's name.
func (w *world) expand(s string) string {
	for id, fd := range w.drops {
		s = strings.ReplaceAll(s, "{"+strconv.Itoa(id)+"}", fd.Name)
	}
	return s
}
