package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// A fleet built by `go install <module>/cmd/fleet@vX` has no ldflags
// version, but the go command records the module's version: use it.
func init() {
	if Version == "dev" {
		Version = moduleVersion(debug.ReadBuildInfo)
	}
}

// moduleVersion is the main module's version from the build info, or
// "dev" for a build from a work tree ("(devel)") or without build info.
func moduleVersion(read func() (*debug.BuildInfo, bool)) string {
	bi, ok := read()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "dev"
	}
	return bi.Main.Version
}

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
