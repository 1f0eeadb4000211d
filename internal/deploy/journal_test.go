package deploy

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseJournal(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	in := `{"id":"a","who":"ann","command":"up","version":"v1.0.0","start":"2026-11-30T12:00:00Z","end":"2026-11-30T12:01:00Z","outcome":"ok","exit":0}
ted":"2026-11-30T12:05:00Z","end":"2026-11-30T12:06:00Z","outcome":"ok","exit":0}
not json
{"who":"no id"}
{"id":"b","who":"bob","command":"promote","start":"2026-11-30T11:00:00Z","end":"2026-11-30T11:00:09Z","outcome":"ok","exit":0,"freeze_seconds":2.5}
` + strings.Repeat("x", journalMaxLine+10) + "\n"
	es := parseJournal([]byte(in))
	if len(es) != 2 || es[0].ID != "a" || es[1].Freeze != 2.5 {
		t.Fatalf("parsed %+v", es)
	}
	m := map[string]Entry{}
	for _, e := range es {
		m[e.ID] = e
	}
	m["c"] = Entry{ID: "c", Start: t0.Add(time.Hour)}
	got := sortedEntries(m)
	if ids := got[0].ID + got[1].ID + got[2].ID; ids != "bac" {
		t.Errorf("order %s, want bac (by start)", ids)
	}
}

func TestSortedEntriesKeepsTheNewest(t *testing.T) {
	m := map[string]Entry{}
	t0 := time.Now()
	for i := range journalKeep + 5 {
		id := NewEntryID()
		m[id] = Entry{ID: id, Start: t0.Add(time.Duration(i) * time.Second)}
	}
	got := sortedEntries(m)
	if len(got) != journalKeep || !got[0].Start.Equal(t0.Add(5*time.Second)) {
		t.Errorf("kept %d from %v", len(got), got[0].Start.Sub(t0))
	}
}

// Record merges the journals of the live droplet, the candidate and the
// newest previous droplet, adds the entry, and writes the result to the
// live droplet and the candidate: the next live droplet has it all.
func TestRecordMovesWithTheProject(t *testing.T) {
	w := newWorld(t, testIP,
		member{id: 1, version: "v1.0.0", tags: []string{TagPromoted}},
		member{id: 2, version: "v1.1.0", tags: []string{TagPromoted}, live: true},
		member{id: 3, version: "v1.2.0"})
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	line := func(id string, at time.Time) string {
		b, _ := json.Marshal(Entry{ID: id, Command: "up", Start: at, End: at})
		return string(b) + "\n"
	}
	w.drops[1].journal = []byte(line("old", t0)) // only on the previous droplet
	w.drops[2].journal = []byte(line("old", t0) + line("live", t0.Add(time.Hour)))
	w.drops[3].journal = []byte(line("cand", t0.Add(2*time.Hour)) + "torn lin")
	e := &Entry{ID: "new", Command: "promote", Start: t0.Add(3 * time.Hour)}
	if err := w.d.Record(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.Recorded, []string{w.drops[2].Name, w.drops[3].Name}) || e.Live != w.drops[2].Name {
		t.Errorf("recorded on %v, live %q", e.Recorded, e.Live)
	}
	for _, id := range []int{2, 3} {
		var ids []string
		for _, x := range parseJournal(w.drops[id].journal) {
			ids = append(ids, x.ID)
		}
		if strings.Join(ids, " ") != "old live cand new" {
			t.Errorf("droplet %d holds %v, want old live cand new", id, ids)
		}
	}
	if string(w.drops[1].journal) != line("old", t0) {
		t.Errorf("the previous droplet's journal was rewritten: %q", w.drops[1].journal)
	}
	es, from, err := w.d.History(t.Context())
	if err != nil || from != w.drops[2].Name || len(es) != 4 {
		t.Errorf("History: %d entries from %q, %v", len(es), from, err)
	}

	// A target that cannot be reached fails the record; an old droplet
	// that cannot be reached only adds nothing.
	w.unreachable(1)
	if err := w.d.Record(t.Context(), &Entry{ID: "n2", Start: t0.Add(4 * time.Hour)}); err != nil {
		t.Errorf("previous droplet unreachable: %v", err)
	}
	w.unreachable(3)
	if err := w.d.Record(t.Context(), &Entry{ID: "n3", Start: t0.Add(5 * time.Hour)}); err == nil || !strings.Contains(err.Error(), w.drops[3].Name) {
		t.Errorf("candidate unreachable: %v, want an error naming it", err)
	}
}
