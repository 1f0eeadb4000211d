package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// withLock runs run holding the project's lock, and releases it on every
// way out (errors, Ctrl-C, panics). The commands that change the project
// (up, promote, rollback, prune, destroy, backup, restore) call it; the
// read-only ones (status, logs, ssh, validate, local) and exec never do.
func withLock(cmd *cobra.Command, f *Factory, args []string, run func(context.Context) error) (err error) {
	l, err := f.Lock(cmd.Context(), lockCmd(cmd, args))
	var held *lock.HeldError
	if errors.As(err, &held) && held.Waited == 0 {
		return fmt.Errorf("%w; retry when it is done, or wait for it with --lock-wait DURATION", err)
	}
	if err != nil {
		return err
	}
	defer func() {
		if rerr := l.Release(); rerr != nil {
			fmt.Fprintf(f.IOStreams.ErrOut, "warning: %v\n", rerr)
		}
		if lost := l.Lost(); lost != nil {
			if err == nil { // it finished anyway: say so, keep its result
				fmt.Fprintf(f.IOStreams.ErrOut, "warning: %v\n", lost)
				return
			}
			// %v: the command's own error (often "context canceled")
			// is not why it stopped.
			err = fmt.Errorf("%w; %s stopped: %v", lost, cmd.Name(), err)
		}
	}()
	e := f.startAudit(cmd, args)
	err = run(l.Context())
	f.finishAudit(cmd, e, err)
	return err
}

// commandName is the command without "fleet": "up", "image bake".
func commandName(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// lockCmd is the command as the lock records it, with the flags given to
// it: "up v1.2.0", "prune --keep=0".
func lockCmd(cmd *cobra.Command, args []string) string {
	parts := append([]string{commandName(cmd)}, args...)
	local := cmd.LocalFlags()
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if local.Lookup(fl.Name) == nil {
			return // global: --file, --json, --yes
		}
		if fl.Value.Type() == "bool" && fl.Value.String() == "true" {
			parts = append(parts, "--"+fl.Name)
		} else {
			parts = append(parts, "--"+fl.Name+"="+fl.Value.String())
		}
	})
	return strings.Join(parts, " ")
}
