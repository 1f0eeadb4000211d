// Package cli is fleet's command line: cobra commands over the deploy
// lifecycle, with output through IOStreams.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = "dev"

// Main runs fleet and returns the process exit code.
func Main() int {
	ctx, stop := interruptible(context.Background())
	defer stop()
	return run(ctx, NewFactory(Version), os.Args[1:])
}

// run is one fleet process: the command tree on f, args, and the exit
// code, with the error reported (as JSON too with --json).
func run(ctx context.Context, f *Factory, args []string) int {
	cmd := NewCmdRoot(f)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		err = &UsageError{Msg: err.Error()} // cobra's, before any RunE
	}
	if ctx.Err() != nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %v", context.Canceled, err)
	}
	return printError(f.IOStreams.Out, f.IOStreams.ErrOut, f.JSON || jsonFlag(args), err)
}

// silentError has already been reported, on stderr and with --json on
// stdout (validate prints its own report).
type silentError struct{ err error }

func (e *silentError) Error() string { return e.err.Error() }
func (e *silentError) Unwrap() error { return e.err }

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Ship a docker-compose stack to a fresh DigitalOcean droplet for every release",
		Long: `fleet creates a new droplet for every release, moves the reserved IP to it
once it is ready, and throws old droplets away. State lives in the cloud:
droplet tags and the reserved IP assignment say which droplet is live.

Environment:
  DIGITALOCEAN_TOKEN   API token (or DIGITALOCEAN_ACCESS_TOKEN)
  FLEET_API_URL        API base URL, e.g. a local cloud (same as --api-url)
  FLEET_SSH_KEY        SSH private key for droplets (CI; never written to disk)
  FLEET_LOCK_TTL       how long the project lock outlives its holder (default 60s)
`,
		PersistentPreRun: func(cmd *cobra.Command, args []string) { f.Context = cmd.Context() },
		SilenceUsage:     true,
		SilenceErrors:    true,
		Version:          f.Version,
	}
	cmd.SetOut(f.IOStreams.Out)
	cmd.SetErr(f.IOStreams.ErrOut)
	cmd.SetUsageTemplate(cmd.UsageTemplate() + "\n" + exitCodesHelp)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Msg: err.Error()} })

	pf := cmd.PersistentFlags()
	pf.StringVarP(&f.SpecPath, "file", "f", "droplets.yaml", "droplet spec to read")
	pf.StringVar(&f.APIURL, "api-url", "", "DigitalOcean API base URL (env FLEET_API_URL)")
	pf.BoolVar(&f.JSON, "json", false, "print a JSON result for scripts")
	pf.BoolVarP(&f.Yes, "yes", "y", false, "do not ask before destructive actions (required without a TTY)")
	pf.DurationVar(&f.LockWait, "lock-wait", 0, "wait up to this long while another fleet holds the project's lock (default: refuse at once)")

	cmd.AddCommand(
		NewCmdInit(f, nil),
		NewCmdValidate(f, nil),
		NewCmdUp(f, nil),
		NewCmdPromote(f, nil),
		NewCmdRollback(f, nil),
		NewCmdStatus(f, nil),
		NewCmdHistory(f, nil),
		NewCmdDestroy(f, nil),
		NewCmdPrune(f, nil),
		NewCmdImage(f),
		NewCmdBackup(f, nil),
		NewCmdRestore(f, nil),
		NewCmdSSH(f),
		NewCmdLogs(f),
		NewCmdExec(f),
		NewCmdLocal(f),
		NewCmdVersion(f),
	)
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &UsageError{Msg: fmt.Sprintf("%s: expected %s, got %d arguments (see `fleet %s --help`)", cmd.CommandPath(), what, len(args), cmd.Name())}
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 0 {
		return &UsageError{Msg: fmt.Sprintf("%s takes no arguments, got %q", cmd.CommandPath(), args)}
	}
	return nil
}
