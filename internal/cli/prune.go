package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// PruneOptions are the inputs of `fleet prune`.
type PruneOptions struct {
	IO       *IOStreams
	JSON     bool
	Yes      bool
	Keep     int // -1: the spec's keep
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdPrune builds `fleet prune`.
func NewCmdPrune(f *Factory, runF func(context.Context, *PruneOptions) error) *cobra.Command {
	opts := &PruneOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Destroy all but the N newest previous droplets, and failed ones",
		Long: `Destroy all but the --keep newest previous droplets (default: the spec's keep),
and every failed droplet except a failed candidate that is the newest droplet
(fleet rollback removes that one). The live droplet and the candidate are
never touched, nor, for a minute after the reserved IP moved, a droplet
that forwards to the live one (stack.data.forward) while its connections
drain. Without a terminal, --yes is required.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Keep < -1 || opts.Keep > 20 {
				return &UsageError{Msg: fmt.Sprintf("--keep %d: must be between 0 and 20", opts.Keep)}
			}
			opts.JSON, opts.Yes, opts.Deployer = f.JSON, f.Yes, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return pruneRun(ctx, opts) })
		},
	}
	cmd.Flags().IntVar(&opts.Keep, "keep", -1, "previous droplets to keep (default: keep from the spec)")
	return cmd
}

func pruneRun(ctx context.Context, opts *PruneOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	keep := opts.Keep
	if keep < 0 {
		keep = d.Spec.Keep
	}
	if err := confirm(opts.IO, opts.Yes, fmt.Sprintf("destroy all but the %d newest previous droplets, and failed ones", keep)); err != nil {
		return err
	}
	done, err := d.Prune(ctx, keep)
	p.Stop(err == nil)
	if err == nil && len(done) == 0 && !opts.JSON {
		fmt.Fprintln(opts.IO.ErrOut, "nothing to prune")
	}
	return reportDestroyed(opts.IO, opts.JSON, done, err)
}
