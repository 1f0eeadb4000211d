package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// RollbackOptions are the inputs of `fleet rollback`.
type RollbackOptions struct {
	IO   *IOStreams
	JSON bool
	// DiscardWrites rolls back even when writes made since the promote
	// cannot be carried back.
	DiscardWrites bool
	// Further rolls back past the droplet the last rollback made live.
	Further  bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
	Audit    *deploy.Entry // the journal entry to complete, if any
}

// NewCmdRollback builds `fleet rollback`.
func NewCmdRollback(f *Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	opts := &RollbackOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Undo the last step: discard the candidate, or move the IP back",
		Long: `Undo the last step.
  - After fleet up (the newest droplet was never promoted, failed or not):
    destroy that candidate.
  - After fleet promote: move the reserved IP back to the newest previous
    droplet, and mark the droplet it leaves failed.

With stack.data, the live droplet is frozen (read-only) first and the writes
it took since its promote are counted. They are carried back (its backup
restored onto the previous droplet, which migrates it); when the previous
release cannot read that data, rollback refuses, says how many writes would
be lost, and leaves everything as it was, unless --discard-writes is given.
With stack.data.state, writes are counted and carried over (a pre-sync)
before the freeze, so the window carries only what changed since.

Rollback is undo, and running it again does not undo twice: the droplet a
rollback made live stays marked until the next promote, so a re-run (after
an interruption, or a success you did not see) says the rollback is done.
To go back one more release, pass --further.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer, opts.Audit = f.JSON, f.Deployer, f.audit
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return rollbackRun(ctx, opts) })
		},
	}
	cmd.Flags().BoolVar(&opts.Further, "further", false, "roll back one more release when the last step was already a rollback")
	cmd.Flags().BoolVar(&opts.DiscardWrites, "discard-writes", false, "roll back even if writes made since the promote cannot be carried back (they are lost)")
	return cmd
}

func rollbackRun(ctx context.Context, opts *RollbackOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Rollback(ctx, deploy.RollbackOptions{DiscardWrites: opts.DiscardWrites, Further: opts.Further})
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if opts.Audit != nil && res.Live != nil {
		opts.Audit.Freeze, opts.Audit.Version = res.Freeze.Seconds(), res.Live.Version
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toRollbackJSON(res))
	}
	if res.Destroyed != nil {
		fmt.Fprintf(opts.IO.Out, "destroyed candidate %s (%s)\n", res.Destroyed.Name, res.Destroyed.Version)
		return nil
	}
	if res.AlreadyDone {
		fmt.Fprintf(opts.IO.Out, "the last rollback is done: %s (%s) is live on %s\n", res.Live.Name, res.Live.Version, res.ReservedIP)
		fmt.Fprintln(opts.IO.ErrOut, "to roll back one more release, run `fleet rollback --further`")
		return nil
	}
	fmt.Fprintf(opts.IO.Out, "%s (%s) is live again on %s\n", res.Live.Name, res.Live.Version, res.ReservedIP)
	if res.Failed != nil {
		fmt.Fprintf(opts.IO.Out, "%s (%s) is marked failed\n", res.Failed.Name, res.Failed.Version)
	}
	switch {
	case res.Discarded:
		fmt.Fprintf(opts.IO.Out, "discarded %s made since the promote\n", deploy.Plural(res.Writes, "write"))
	case res.Data != nil:
		fmt.Fprintf(opts.IO.Out, "carried %s back (%s archive, sha256 %.12s)\n", deploy.Plural(res.Writes, "write"), humanBytes(res.Data.Bytes), res.Data.SHA256)
	}
	printWindow(opts.IO.Out, res.Freeze, res.FreezeBudget, res.Window)
	if h := res.Held; h != nil {
		fmt.Fprintf(opts.IO.Out, "%s held and forwarded (the longest waited %.1fs)\n", deploy.Plural(h.Count, "write"), float64(h.LongestMS)/1000)
	}
	return nil
}
