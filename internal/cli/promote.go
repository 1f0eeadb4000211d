package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// PromoteOptions are the inputs of `fleet promote`.
type PromoteOptions struct {
	IO       *IOStreams
	JSON     bool
	Force    bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
	Audit    *deploy.Entry // the journal entry to complete, if any
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

With stack.data: the live droplet is frozen (read-only: reads go on, writes
get 503 with Retry-After), its final backup is restored onto the candidate
(which migrates it), the candidate is checked again and made writable, and
then the IP moves. The old droplet stays read-only as previous. The freeze
lasts from the freeze until the IP has moved; promote prints it, phase by
phase. Any failure before the move unfreezes the live droplet and leaves the
IP where it was. The window must fit in stack.data.freeze_budget (default
5s): promote refuses before the freeze when the last sync onto the candidate
says it cannot, and aborts before the move (the IP stays, the live droplet is
unfrozen; exit 5) when a phase reaches the budget less a reserve for the move.
Then stack.after_promote runs on the new live droplet (the first
certificate needs the reserved IP); its failure is reported, not undone.
With a stack, a candidate that did not pass the health gate is refused
unless --force is given.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer, opts.Audit = f.JSON, f.Deployer, f.audit
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return promoteRun(ctx, opts) })
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
	if opts.Audit != nil {
		opts.Audit.Freeze, opts.Audit.Version = res.Freeze.Seconds(), res.Live.Version
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toPromoteJSON(res))
	}
	if res.Resumed {
		fmt.Fprintln(opts.IO.Out, "an interrupted promote had already moved the IP: finished it")
	}
	fmt.Fprintf(opts.IO.Out, "%s (%s) is live on %s\n", res.Live.Name, res.Live.Version, res.ReservedIP)
	if res.Previous != nil {
		fmt.Fprintf(opts.IO.Out, "%s (%s) is previous: fleet rollback moves the IP back\n", res.Previous.Name, res.Previous.Version)
	}
	if res.Data != nil {
		fmt.Fprintf(opts.IO.Out, "final backup carried: %s, sha256 %.12s\n", humanBytes(res.Data.Bytes), res.Data.SHA256)
	}
	printWindow(opts.IO.Out, res.Freeze, res.FreezeBudget, res.Window)
	if h := res.Held; h != nil {
		fmt.Fprintf(opts.IO.Out, "%s held and forwarded (the longest waited %.1fs)\n", deploy.Plural(h.Count, "write"), float64(h.LongestMS)/1000)
	}
	if res.AfterPromoteError != "" {
		fmt.Fprintf(opts.IO.ErrOut, "warning: after_promote failed; the promote stands:\n%s\n", res.AfterPromoteError)
	}
	for _, m := range res.Pruned {
		fmt.Fprintf(opts.IO.Out, "destroyed %s (%s, beyond keep)\n", m.Name, m.Role)
	}
	if res.Created {
		fmt.Fprintf(opts.IO.ErrOut, "reserved %s for this project: pin it in droplets.yaml with `reserved_ip: %s`\n", res.ReservedIP, res.ReservedIP)
	}
	return nil
}

// printWindow is the freeze window, phase by phase: "writes were frozen
// for 2.4s (budget 5s: freeze 0.2s, sync 1.1s, ..., forward 0.3s
// alongside move 0.5s)".
func printWindow(w io.Writer, freeze, budget time.Duration, window []deploy.WindowPhase) {
	if freeze <= 0 {
		return
	}
	fmt.Fprintf(w, "writes were frozen for %.1fs", freeze.Seconds())
	if budget > 0 {
		phases := deploy.JoinPhases(window, func(p deploy.WindowPhase) string {
			return fmt.Sprintf("%s %.2fs", p.Name, p.Duration.Seconds())
		})
		fmt.Fprintf(w, " (budget %s: %s)", budget, phases)
	}
	fmt.Fprintln(w)
}
