package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// RollbackOptions are the inputs of `fleet rollback`.
type RollbackOptions struct {
	IO       *IOStreams
	JSON     bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdRollback builds `fleet rollback`.
func NewCmdRollback(f *Factory, runF func(context.Context, *RollbackOptions) error) *cobra.Command {
	opts := &RollbackOptions{IO: f.IOStreams}
	return &cobra.Command{
		Use:   "rollback",
		Short: "Undo the last step: discard the candidate, or move the IP back",
		Long: `Undo the last step.
  - After fleet up (the newest droplet was never promoted, failed or not):
    destroy that candidate.
  - After fleet promote: move the reserved IP back to the newest previous
    droplet, and mark the droplet it leaves failed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer = f.JSON, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return rollbackRun(cmd.Context(), opts)
		},
	}
}

func rollbackRun(ctx context.Context, opts *RollbackOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Rollback(ctx)
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, map[string]any{
			"destroyed": toJSON(res.Destroyed), "reserved_ip": res.ReservedIP,
			"live": toJSON(res.Live), "failed": toJSON(res.Failed),
		})
	}
	if res.Destroyed != nil {
		fmt.Fprintf(opts.IO.Out, "destroyed candidate %s (%s)\n", res.Destroyed.Name, res.Destroyed.Version)
		return nil
	}
	fmt.Fprintf(opts.IO.Out, "%s (%s) is live again on %s\n", res.Live.Name, res.Live.Version, res.ReservedIP)
	if res.Failed != nil {
		fmt.Fprintf(opts.IO.Out, "%s (%s) is marked failed\n", res.Failed.Name, res.Failed.Version)
	}
	return nil
}
