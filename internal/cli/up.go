package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/spec"
	"github.com/spf13/cobra"
)

// UpOptions are the inputs of `fleet up`.
type UpOptions struct {
	IO       *IOStreams
	JSON     bool
	Version  string
	Worktree bool
	Plan     bool // --plan: say what up would do, change nothing (plan.go)
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdUp builds `fleet up VERSION`.
func NewCmdUp(f *Factory, runF func(context.Context, *UpOptions) error) *cobra.Command {
	opts := &UpOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "up VERSION",
		Short: "Create a candidate droplet for VERSION",
		Long: `Create a candidate droplet for VERSION, with the spec's cloud-init, and wait
until it is active with a public IPv4. The live droplet and the reserved IP
are never touched: run fleet promote to move traffic.

With a stack: in droplets.yaml, the stack comes from git tag VERSION (or the
working tree with --from-worktree), its secrets are checked before anything
is created, and the candidate must pass the health gate: every compose
healthcheck healthy and every health path answering 2xx.

A failed deploy keeps the candidate, tagged failed, for fleet logs and fleet
ssh; fleet rollback or fleet destroy removes it. Running up again for the
same version resumes an interrupted deploy.

With --plan, nothing is changed and no lock is taken: up checks its inputs
as it would, reads the project's state and the sizes' prices, and prints the
droplet it would create (or resume), the droplets it would destroy and
leave alone, the rendered user_data (host key and secrets redacted), the
API calls it would make, and the monthly cost before and after.`,
		Example: "  fleet up v1.2.0\n  fleet up v1.2.0 --json\n  fleet up v1.2.0 --plan",
		Args:    exactArgs(1, "one VERSION, like v1.2.0"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Version, opts.JSON = args[0], f.JSON
			if err := spec.ParseVersion(opts.Version); err != nil {
				return &UsageError{Msg: err.Error()}
			}
			opts.Deployer = f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			if opts.Plan { // reads only: no lock (a key on the account), no journal
				return planRun(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return upRun(ctx, opts) })
		},
	}
	cmd.Flags().BoolVar(&opts.Plan, "plan", false, "print what up would create and change, its API calls and the monthly cost; change nothing (no lock)")
	cmd.Flags().BoolVar(&opts.Worktree, "from-worktree", false, "deploy the working tree instead of git tag VERSION (tags the droplet "+deploy.TagWorktree+")")
	return cmd
}

func upRun(ctx context.Context, opts *UpOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Up(ctx, opts.Version, deploy.UpOptions{FromWorktree: opts.Worktree})
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toUpJSON(res))
	}
	if res.Image != nil && res.Image.Baked != nil {
		fmt.Fprintf(opts.IO.Out, "baked %s (image %d): the template or base image changed\n", res.Image.Baked.Image.Name, res.Image.Baked.Image.ID)
	}
	for _, m := range res.Duplicates {
		fmt.Fprintf(opts.IO.Out, "destroyed %s, a duplicate candidate left by an interrupted up\n", m.Name)
	}
	fmt.Fprintf(opts.IO.Out, "candidate %s (%s) is up at %s\n", res.Droplet.Name, opts.Version, res.Droplet.PublicIPv4)
	if res.Data != nil {
		fmt.Fprintf(opts.IO.Out, "data carried from %s: %s, sha256 %.12s\n", res.Data.From, humanBytes(res.Data.Bytes), res.Data.SHA256)
	}
	if opts.IO.StdoutTTY {
		fmt.Fprintln(opts.IO.Out, "next: fleet promote")
	}
	return nil
}
