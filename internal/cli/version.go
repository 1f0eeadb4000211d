package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

// NewCmdVersion builds `fleet version`.
func NewCmdVersion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print fleet's version",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.JSON {
				return printJSON(f.IOStreams.Out, versionJSON{Version: f.Version})
			}
			_, err := fmt.Fprintf(f.IOStreams.Out, "fleet %s\n", f.Version)
			return err
		},
	}
}
