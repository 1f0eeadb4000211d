package cli

import (
	"context"
	"strings"
	"testing"
	"time"
)

// `fleet local serve` flags reach the options: --drain (default 0: a
// reserved IP's move cuts open connections, as on DigitalOcean),
// FLEET_LOCAL_DRAIN when the flag is not given, --burst-limit.
func TestNewCmdLocalServeFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		drain   time.Duration
		burst   int
		wantErr string
	}{
		{name: "defaults cut", args: nil},
		{name: "drain", args: []string{"--drain", "30s"}, drain: 30 * time.Second},
		{name: "drain from the environment", env: map[string]string{"FLEET_LOCAL_DRAIN": "5s"}, drain: 5 * time.Second},
		{name: "the flag wins", args: []string{"--drain", "0"}, env: map[string]string{"FLEET_LOCAL_DRAIN": "5s"}},
		{name: "negative drain", args: []string{"--drain", "-1s"}, wantErr: "--drain -1s: must be between 0 (cut) and 1h"},
		{name: "bad environment", env: map[string]string{"FLEET_LOCAL_DRAIN": "soon"}, wantErr: `FLEET_LOCAL_DRAIN="soon": not a duration`},
		{name: "burst limit", args: []string{"--burst-limit", "12"}, burst: 12},
		{name: "negative burst limit", args: []string{"--burst-limit", "-1"}, wantErr: "must not be negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _ := TestStreams()
			f := &Factory{IOStreams: ios, Getenv: func(k string) string { return tt.env[k] }}
			var got *LocalServeOptions
			cmd := NewCmdLocalServe(f, func(_ context.Context, o *LocalServeOptions) error { got = o; return nil })
			cmd.SetArgs(append([]string{"--token", "t", "--backend", "memory"}, tt.args...))
			cmd.SetOut(ios.Out)
			cmd.SetErr(ios.ErrOut)
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Drain != tt.drain || got.BurstLimit != tt.burst {
				t.Errorf("drain %v burst %d, want %v and %d", got.Drain, got.BurstLimit, tt.drain, tt.burst)
			}
		})
	}
}
