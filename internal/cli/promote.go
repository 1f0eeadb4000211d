package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// PromoteOptions are the inputs of `fleet promote`.
type PromoteOptions struct {
	IO       *IOStreams
	JSON     bool
	Force    bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdPromote builds `fleet promote`.
func NewCmdPromote(f *Factory, runF func(context.Context, *PromoteOptions) error) *cobra.Command {
	opts := &PromoteOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Move the reserved IP to the candidate",
		Long: `Move the reserved IP to the candidate droplet. The candidate becomes live and
the droplet that was live becomes previous, ready for fleet rollback. Then
previous droplets beyond spec.keep are destroyed.

With reserved_ip: auto and no reserved IP yet, the first promote reserves one.
With a stack, a candidate that did not pass the health gate is refused
unless --force is given.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer = f.JSON, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return promoteRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "promote a candidate that has not passed the health gate")
	return cmd
}

func promoteRun(ctx context.Context, opts *PromoteOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Promote(ctx, opts.Force)
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, map[string]any{
			"reserved_ip": res.ReservedIP, "live": toJSON(&res.Live), "previous": toJSON(res.Previous),
			"reserved_ip_created": res.Created, "pruned": toJSONs(res.Pruned),
		})
	}
	fmt.Fprintf(opts.IO.Out, "%s (%s) is live on %s\n", res.Live.Name, res.Live.Version, res.ReservedIP)
	if res.Previous != nil {
		fmt.Fprintf(opts.IO.Out, "%s (%s) is previous: fleet rollback moves the IP back\n", res.Previous.Name, res.Previous.Version)
	}
	for _, m := range res.Pruned {
		fmt.Fprintf(opts.IO.Out, "destroyed %s (%s, beyond keep)\n", m.Name, m.Role)
	}
	if res.Created {
		fmt.Fprintf(opts.IO.ErrOut, "reserved %s for this project: pin it in droplets.yaml with `reserved_ip: %s`\n", res.ReservedIP, res.ReservedIP)
	}
	return nil
}
