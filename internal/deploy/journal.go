package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// The audit journal: one JSON line per lifecycle command, kept on the
// droplets themselves so it moves with the project. Every record merges
// the journals of the live droplet, the newest candidate and the newest
// previous droplet, adds the entry, and writes the result to the live
// droplet and the candidate: whichever droplet is live next has it all.

// Entry is one command in the journal. Its JSON is the `fleet history
// --json` contract.
type Entry struct {
	ID       string    `json:"id"`
	Who      string    `json:"who"`
	Command  string    `json:"command"`
	Version  string    `json:"version,omitempty"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Outcome  string    `json:"outcome"` // ok, refused, failed, interrupted
	Exit     int       `json:"exit"`
	Error    string    `json:"error,omitempty"`
	Freeze   float64   `json:"freeze_seconds,omitempty"`
	Live     string    `json:"live,omitempty"` // the live droplet afterwards
	Recorded []string  `json:"-"`              // droplets it was written to
}

// Journal limits: what a droplet keeps and what fleet reads of it.
const (
	journalKeep    = 2000
	journalMaxRead = 4 << 20
	journalMaxLine = 8 << 10
)

func journalFile(project string) string { return "/var/lib/fleet/" + project + "/journal.jsonl" }

// NewEntryID is a random id for an entry.
func NewEntryID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Record writes e to the project's journal. It needs SSH (a stack); it
// runs on a context of its own, so an interrupted command is recorded too.
func (d *Deployer) Record(ctx context.Context, e *Entry) error {
	if d.Remote == nil || d.Spec.Stack == nil { // a bake's SSH alone is not enough
		return nil
	}
	ctx, cancel := detached(ctx)
	defer cancel()
	st, err := d.State(ctx)
	if err != nil {
		return err
	}
	targets, sources := journalDroplets(st)
	if len(targets) == 0 {
		return nil
	}
	if live := st.Live(); live != nil {
		e.Live = live.Name
	}
	all := map[string]Entry{}
	clients := map[int]*remote.Client{}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, m := range sources {
		c, err := d.Remote.Dial(ctx, &m.Droplet, 15*time.Second)
		if err != nil {
			if slices.Contains(targets, m) {
				return fmt.Errorf("journal on %s: %w", m.Name, err)
			}
			continue // an old droplet that cannot be reached adds nothing
		}
		clients[m.ID] = c
		es, err := readJournal(ctx, c, d.Spec.Project)
		if err != nil && slices.Contains(targets, m) {
			return fmt.Errorf("journal on %s: %w", m.Name, err)
		}
		for _, x := range es {
			all[x.ID] = x
		}
	}
	all[e.ID] = *e
	merged := sortedEntries(all)
	for _, m := range targets {
		if err := writeJournal(ctx, clients[m.ID], d.Spec.Project, merged); err != nil {
			return fmt.Errorf("journal on %s: %w", m.Name, err)
		}
		e.Recorded = append(e.Recorded, m.Name)
	}
	return nil
}

// journalDroplets: written to the live droplet and the newest candidate;
// read from those and the newest previous droplet.
func journalDroplets(st *State) (targets, sources []*Member) {
	for _, m := range []*Member{st.Live(), st.Candidate(), st.Previous()} {
		if m == nil || m.PublicIPv4 == "" || m.Status != "active" {
			continue
		}
		sources = append(sources, m)
		if m.Role != RolePrevious {
			targets = append(targets, m)
		}
	}
	return targets, sources
}

// History reads the journal from the live droplet, or, with none, from the
// newest droplet that has one.
func (d *Deployer) History(ctx context.Context) ([]Entry, string, error) {
	if d.Remote == nil || d.Spec.Stack == nil {
		return nil, "", &ConfigError{Msg: "the journal lives on the droplets and needs SSH: it is kept for projects with a stack"}
	}
	st, err := d.State(ctx)
	if err != nil {
		return nil, "", err
	}
	order := []*Member{}
	if l := st.Live(); l != nil {
		order = append(order, l)
	}
	for i := range st.Members {
		if st.Members[i].Role != RoleLive {
			order = append(order, &st.Members[i])
		}
	}
	var lastErr error
	for _, m := range order {
		if m.PublicIPv4 == "" {
			continue
		}
		c, err := d.Remote.Dial(ctx, &m.Droplet, 15*time.Second)
		if err != nil {
			lastErr = err
			continue
		}
		es, err := readJournal(ctx, c, d.Spec.Project)
		c.Close()
		if err != nil {
			lastErr = err
			continue
		}
		return es, m.Name, nil
	}
	if lastErr != nil {
		return nil, "", fmt.Errorf("no droplet's journal could be read: %w", lastErr)
	}
	return nil, "", nil
}

func readJournal(ctx context.Context, c *remote.Client, project string) ([]Entry, error) {
	f := journalFile(project)
	out, err := c.Output(ctx, "if [ -f "+remote.ShellQuote(f)+" ]; then "+sh("tail", "-c", strconv.Itoa(journalMaxRead), f)+"; fi")
	if err != nil {
		return nil, err
	}
	return parseJournal(out), nil
}

// parseJournal reads JSON lines, skipping what is not an entry (a line cut
// by tail -c, or damage): the journal is an audit aid, not a database.
func parseJournal(b []byte) []Entry {
	var es []Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), journalMaxLine)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.ID != "" {
			es = append(es, e)
		}
	}
	return es
}

func sortedEntries(m map[string]Entry) []Entry {
	es := make([]Entry, 0, len(m))
	for _, e := range m {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b Entry) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(es) > journalKeep {
		es = es[len(es)-journalKeep:]
	}
	return es
}

// writeJournal replaces the journal on the droplet in one rename.
func writeJournal(ctx context.Context, c *remote.Client, project string, es []Entry) error {
	var buf bytes.Buffer
	for _, e := range es {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if len(b) > journalMaxLine {
			continue
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	f := journalFile(project)
	return c.Run(ctx, then(sh("mkdir", "-p", path.Dir(f)), replace(sh("cat"), f)), &buf, nil, nil)
}
