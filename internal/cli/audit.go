package cli

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// audited are the commands that change a project: each is written to the
// audit journal (`fleet history`) when it ends, whatever the outcome.
var audited = map[string]bool{"up": true, "promote": true, "rollback": true, "prune": true, "destroy": true, "restore": true, "backup": true}

// auditCommands wraps the RunE of every audited command of root.
func auditCommands(f *Factory, root *cobra.Command) {
	for _, c := range root.Commands() {
		if !audited[c.Name()] || c.RunE == nil {
			continue
		}
		run := c.RunE
		c.RunE = func(cmd *cobra.Command, args []string) error {
			e := &deploy.Entry{ID: deploy.NewEntryID(), Who: Who(f.Getenv), Command: cmd.Name(), Start: time.Now().UTC()}
			if cmd.Name() == "up" && len(args) > 0 {
				e.Version = args[0]
			}
			f.audit = e
			err := run(cmd, args)
			f.audit = nil
			if recordable(err) {
				f.record(cmd, e, err)
			}
			return err
		}
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
	if derr != nil || d.Remote == nil {
		return
	}
	if rerr := d.Record(cmd.Context(), e); rerr != nil {
		fmt.Fprintf(f.IOStreams.ErrOut, "warning: the audit journal was not written: %v\n", rerr)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Who names the operator for the journal: the CI's actor and run, else
// git's user, else $USER@host.
func Who(getenv func(string) string) string {
	if a := getenv("GITHUB_ACTOR"); a != "" {
		return a + " (" + getenv("GITHUB_SERVER_URL") + "/" + getenv("GITHUB_REPOSITORY") + "/actions/runs/" + getenv("GITHUB_RUN_ID") + ")"
	}
	if a := getenv("GITLAB_USER_LOGIN"); a != "" {
		return a + " (" + getenv("CI_JOB_URL") + ")"
	}
	name, _ := exec.Command("git", "config", "user.name").Output()
	mail, _ := exec.Command("git", "config", "user.email").Output()
	if n := strings.TrimSpace(string(name)); n != "" {
		if m := strings.TrimSpace(string(mail)); m != "" {
			n += " <" + m + ">"
		}
		return n
	}
	host, _ := os.Hostname()
	return getenv("USER") + "@" + host
}
