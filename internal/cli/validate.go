package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/spec"
	"github.com/spf13/cobra"
)

// ValidateOptions are the inputs of `fleet validate`.
type ValidateOptions struct {
	IO   *IOStreams
	JSON bool
	Path string
}

// NewCmdValidate builds `fleet validate`.
func NewCmdValidate(f *Factory, runF func(context.Context, *ValidateOptions) error) *cobra.Command {
	opts := &ValidateOptions{IO: f.IOStreams}
	return &cobra.Command{
		Use:   "validate",
		Short: "Check droplets.yaml and print every problem",
		Long: `Check droplets.yaml offline: strict keys, slugs, tags, the reserved IP, keep,
timeouts, SSH key files, and the rendered cloud-init (64 KiB at most).
Every problem is printed as file:line:col: message; the exit code is 3 if
there is any.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Path = f.JSON, f.SpecPath
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return validateRun(cmd.Context(), opts)
		},
	}
}

func validateRun(_ context.Context, opts *ValidateOptions) error {
	s, err := spec.Load(opts.Path)
	var errs *spec.Errors
	if err != nil && !errors.As(err, &errs) {
		return err
	}
	if err != nil {
		fmt.Fprintln(opts.IO.ErrOut, err)
		if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "%d problem(s) in %s\n", errs.Total(), opts.Path)
		}
	}
	if opts.JSON {
		out := validateJSON{File: opts.Path, Valid: err == nil, Errors: []string{}}
		if errs != nil {
			for _, e := range *errs {
				out.Errors = append(out.Errors, e.Error())
			}
			detail := newErrorDetail(err)
			out.Error = &detail
		}
		if perr := printJSON(opts.IO.Out, out); perr != nil {
			return perr
		}
	}
	if err != nil {
		return &silentError{err}
	}
	if !opts.JSON {
		fmt.Fprintf(opts.IO.Out, "%s is valid: project %s, %s in %s, keep %d\n", opts.Path, s.Project, s.Droplet.Size, s.Droplet.Region, s.Keep)
	}
	return nil
}
