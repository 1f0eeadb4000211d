package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// DestroyOptions are the inputs of `fleet destroy`.
type DestroyOptions struct {
	IO       *IOStreams
	JSON     bool
	Yes      bool
	Force    bool
	Names    []string
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdDestroy builds `fleet destroy NAME...`.
func NewCmdDestroy(f *Factory, runF func(context.Context, *DestroyOptions) error) *cobra.Command {
	opts := &DestroyOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "destroy NAME...",
		Short: "Destroy droplets of the project",
		Long: `Destroy the named droplets (names or IDs, see fleet status). Every name is
checked before anything is destroyed. The live droplet is refused unless
--force is given. Without a terminal, --yes is required.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &UsageError{Msg: "fleet destroy: name at least one droplet (see `fleet status`)"}
			}
			return nil
		},
		ValidArgsFunction: completeDroplets(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Names, opts.JSON, opts.Yes, opts.Deployer = args, f.JSON, f.Yes, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return destroyRun(ctx, opts) })
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "also destroy the live droplet")
	return cmd
}

func destroyRun(ctx context.Context, opts *DestroyOptions) error {
	if err := confirm(opts.IO, opts.Yes, "destroy "+strings.Join(opts.Names, ", ")); err != nil {
		return err
	}
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	done, err := d.Destroy(ctx, opts.Names, opts.Force)
	p.Stop(err == nil)
	return reportDestroyed(opts.IO, opts.JSON, done, err)
}

func reportDestroyed(io *IOStreams, asJSON bool, done []deploy.Member, err error) error {
	if asJSON && err == nil {
		return printJSON(io.Out, destroyedJSON{Destroyed: toJSONs(done)})
	}
	for _, m := range done {
		fmt.Fprintf(io.Out, "destroyed %s (%s, %s)\n", m.Name, dash(m.Version), m.Role)
	}
	return err
}

// completeDroplets completes droplet names from the cloud, when it can.
func completeDroplets(f *Factory) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		d, err := f.Deployer(nil)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		st, err := d.State(cmd.Context())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, m := range st.Members {
			names = append(names, m.Name+"\t"+string(m.Role)+" "+m.Version)
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
