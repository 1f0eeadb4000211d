package cli

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/spf13/cobra"
)

// startAudit begins the journal entry of a command that changes the
// project (those that take the lock); the command fills in what only it
// knows (freeze window, version) through f.audit.
func (f *Factory) startAudit(cmd *cobra.Command, args []string) *deploy.Entry {
	e := &deploy.Entry{ID: deploy.NewEntryID(), Who: lock.Who(f.Getenv), Command: commandName(cmd), Start: time.Now().UTC()}
	if cmd.Name() == "up" && len(args) > 0 {
		e.Version = args[0]
	}
	f.audit = e
	return e
}

// finishAudit records the entry, still under the lock, unless the
// command was refused before it did anything.
func (f *Factory) finishAudit(cmd *cobra.Command, e *deploy.Entry, err error) {
	f.audit = nil
	if recordable(err) {
		f.record(cmd, e, err)
	}
}

// recordable: a command that was refused before it did anything (bad
// flags, a bad spec, no token) leaves no trace.
func recordable(err error) bool {
	switch exitCode(err) {
	case ExitUsage, ExitSpec, ExitConfig:
		return false
	}
	return true
}

func (f *Factory) record(cmd *cobra.Command, e *deploy.Entry, err error) {
	e.End = time.Now().UTC()
	e.Exit = exitCode(err)
	switch e.Exit {
	case ExitOK:
		e.Outcome = "ok"
	case ExitRefused:
		e.Outcome = "refused"
	case ExitInterrupted:
		e.Outcome = "interrupted"
	default:
		e.Outcome = "failed"
	}
	if err != nil {
		e.Error = truncate(err.Error(), 300)
	}
	d, derr := f.Deployer(nil)
	if derr != nil || d.Remote == nil || d.Spec.Stack == nil {
		return
	}
	if rerr := d.Record(cmd.Context(), e); rerr != nil {
		fmt.Fprintf(f.IOStreams.ErrOut, "warning: the audit journal was not written: %v\n", rerr)
	}
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
