package cli

import (
	"context"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// StatusOptions are the inputs of `fleet status`.
type StatusOptions struct {
	IO       *IOStreams
	JSON     bool
	Deployer func() (*deploy.Deployer, error)
}

// NewCmdStatus builds `fleet status`.
func NewCmdStatus(f *Factory, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the project's droplets and their roles",
		Long: `Show the project's droplets, newest first, with their roles:
  live       holds the reserved IP
  candidate  created by fleet up, not promoted yet
  previous   was live; a rollback target (fleet keeps spec.keep of them)
  failed     its deploy failed, or it was rolled back from`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			opts.Deployer = func() (*deploy.Deployer, error) { return f.Deployer(nil) }
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return statusRun(cmd.Context(), opts)
		},
	}
	return cmd
}

func statusRun(ctx context.Context, opts *StatusOptions) error {
	d, err := opts.Deployer()
	if err != nil {
		return err
	}
	st, err := d.State(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		out := statusJSON{Project: st.Project, Droplets: append(toJSONs(st.Members), toJSONs(bakeMembers(st))...)}
		if st.ReservedIP != nil {
			out.ReservedIP = &st.ReservedIP.IP
		}
		return printJSON(opts.IO.Out, out)
	}
	if opts.IO.StdoutTTY {
		ip := "none yet (reserved at the first promote)"
		if st.ReservedIP != nil {
			ip = st.ReservedIP.IP
		}
		fmt.Fprintf(opts.IO.Out, "project %s, reserved IP %s\n\n", st.Project, ip)
		if len(st.Members) == 0 && len(st.Bakes) == 0 {
			fmt.Fprintln(opts.IO.Out, "no droplets: run `fleet up VERSION`")
			return nil
		}
	}
	t := &table{tty: opts.IO.StdoutTTY, header: []string{"NAME", "VERSION", "ROLE", "STATUS", "IPV4", "AGE", "HEALTH"}}
	for i := range st.Members {
		m := &st.Members[i]
		t.add(m.Name, dash(m.Version), string(m.Role), m.Status, dash(m.PublicIPv4), age(m.CreatedAt), dash(health(m)))
	}
	for _, m := range bakeMembers(st) {
		t.add(m.Name, "-", string(m.Role), m.Status, dash(m.PublicIPv4), age(m.CreatedAt), "-")
	}
	return t.print(opts.IO.Out)
}

// bakeMembers shows the droplets of a running (or interrupted) bake with
// the role "bake"; they take no part in the lifecycle.
func bakeMembers(st *deploy.State) []deploy.Member {
	out := make([]deploy.Member, len(st.Bakes))
	for i, b := range st.Bakes {
		out[i] = deploy.Member{Droplet: b, Role: "bake"}
	}
	return out
}
