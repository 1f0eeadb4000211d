package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
)

// Flags reach the options (gh's runF half of a command test).
func TestNewCmdHistoryFlags(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		json    bool
		limit   int
		wantErr string
	}{
		{args: nil, limit: 20},
		{args: []string{"-n", "5"}, limit: 5},
		{args: []string{"--limit", "0"}, limit: 0},
		{args: []string{"--json"}, json: true, limit: 20},
		{args: []string{"--limit", "-1"}, wantErr: "--limit must be 0 (all) or more"},
		{args: []string{"extra"}, wantErr: "takes no arguments"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ios, _, _ := TestStreams()
			f := &Factory{IOStreams: ios, Getenv: func(string) string { return "" }}
			root := NewCmdRoot(f)
			var got *HistoryOptions
			for _, c := range root.Commands() {
				if c.Name() == "history" {
					root.RemoveCommand(c)
				}
			}
			root.AddCommand(NewCmdHistory(f, func(_ context.Context, o *HistoryOptions) error { got = o; return nil }))
			root.SetArgs(append([]string{"history"}, tt.args...))
			err := root.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Limit != tt.limit || got.JSON != tt.json || got.History == nil {
				t.Errorf("options %+v", got)
			}
		})
	}
}

func historyEntries() []deploy.Entry {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	return []deploy.Entry{
		{ID: "a1", Who: "alice (https://github.example/o/r/actions/runs/7)", Command: "up", Version: "v1.2.0", Start: t0, End: t0.Add(93 * time.Second), Outcome: "ok", Live: "blog-v1-1-0-aaaaaa"},
		{ID: "b2", Who: "Bob <bob@example.com>", Command: "promote", Version: "v1.2.0", Start: t0.Add(5 * time.Minute), End: t0.Add(5*time.Minute + 9*time.Second), Outcome: "ok", Freeze: 2.5, Live: "blog-v1-2-0-bbbbbb"},
		{ID: "c3", Who: "root@ci", Command: "rollback", Start: t0.Add(time.Hour), End: t0.Add(time.Hour + time.Second), Outcome: "interrupted", Exit: 130, Error: "interrupted"},
	}
}

// The run with a fake journal: --json is the documented contract
// (testdata/history-json.golden), --limit keeps the newest, the table has
// one row per entry.
func TestHistoryRun(t *testing.T) {
	fake := func(context.Context) ([]deploy.Entry, string, error) {
		return historyEntries(), "blog-v1-2-0-bbbbbb", nil
	}
	ios, out, _ := TestStreams()
	if err := historyRun(t.Context(), &HistoryOptions{IO: ios, JSON: true, History: fake}); err != nil {
		t.Fatal(err)
	}
	var back historyJSON
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil || len(back.Entries) != 3 || back.Entries[1].FreezeSeconds != 2.5 {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	golden := filepath.Join("testdata", "history-json.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("history --json changed (go test -run TestHistoryRun -update):\n%s\nwant:\n%s", out.Bytes(), want)
	}

	ios, out, _ = TestStreams()
	if err := historyRun(t.Context(), &HistoryOptions{IO: ios, Limit: 2, History: fake}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "promote") || !strings.Contains(lines[0], "2.5s") || !strings.Contains(lines[1], "interrupted") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestTruncateKeepsCharacters(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"abcdef", 3, "abc…"},
		{"ééé", 3, "é…"}, // 3 bytes would split the second é
	} {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
