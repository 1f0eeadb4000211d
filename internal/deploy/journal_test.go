package deploy

import (
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
