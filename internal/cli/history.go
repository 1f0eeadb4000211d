package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// HistoryOptions are the inputs of `fleet history`.
type HistoryOptions struct {
	IO    *IOStreams
	JSON  bool
	Limit int
	// History reads the journal and says which droplet it came from.
	History func(ctx context.Context) ([]deploy.Entry, string, error)
}

// NewCmdHistory builds `fleet history`.
func NewCmdHistory(f *Factory, runF func(context.Context, *HistoryOptions) error) *cobra.Command {
	opts := &HistoryOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the audit journal: who ran which command, when, and how it ended",
		Long: `Show the project's audit journal. Every up, promote, rollback, prune, destroy,
backup and restore is recorded when it ends: who ran it (the CI's actor and
run URL, git's user, or $USER@host), the command and version, start and end,
the outcome (ok, refused, failed, interrupted) and, for promote and rollback,
how long writes were frozen.

The journal lives on the droplets (/var/lib/fleet/<project>/journal.jsonl):
the live droplet and the candidate each hold a copy, merged at every record,
so it moves with the project from droplet to droplet. It needs SSH, so it is
kept for projects with a stack. history takes no lock.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Limit < 0 {
				return &UsageError{Msg: "--limit must be 0 (all) or more"}
			}
			opts.JSON = f.JSON
			opts.History = func(ctx context.Context) ([]deploy.Entry, string, error) {
				d, err := f.Deployer(nil)
				if err != nil {
					return nil, "", err
				}
				return d.History(ctx)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return historyRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVarP(&opts.Limit, "limit", "n", 20, "show the last N entries (0: all)")
	return cmd
}

func historyRun(ctx context.Context, opts *HistoryOptions) error {
	es, from, err := opts.History(ctx)
	if err != nil {
		return err
	}
	if opts.Limit > 0 && len(es) > opts.Limit {
		es = es[len(es)-opts.Limit:]
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toHistoryJSON(from, es))
	}
	if len(es) == 0 {
		fmt.Fprintln(opts.IO.ErrOut, "the journal is empty")
		return nil
	}
	t := &table{tty: opts.IO.StdoutTTY, header: []string{"START (UTC)", "WHO", "COMMAND", "VERSION", "OUTCOME", "TOOK", "FREEZE"}}
	for _, e := range es {
		freeze := ""
		if e.Freeze > 0 {
			freeze = fmt.Sprintf("%.1fs", e.Freeze)
		}
		t.add(e.Start.Format("2006-01-02 15:04:05"), e.Who, e.Command, dash(e.Version), e.Outcome, e.End.Sub(e.Start).Round(100*time.Millisecond).String(), dash(freeze))
	}
	return t.print(opts.IO.Out)
}
