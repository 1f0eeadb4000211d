package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/fleetdeploy/fleet/internal/scaffold"
	"github.com/spf13/cobra"
)

// InitOptions are the inputs of `fleet init`.
type InitOptions struct {
	IO      *IOStreams
	JSON    bool
	Version string // the running fleet's
	scaffold.Options
}

// NewCmdInit builds `fleet init`.
func NewCmdInit(f *Factory, runF func(context.Context, *InitOptions) error) *cobra.Command {
	opts := &InitOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Start a project: droplets.yaml, cloud-init template, .gitignore, deploy key, CI workflow",
		Long: `Write what a new fleet project needs, in --dir (default: here):

  droplets.yaml             the spec (DigitalOcean, debian-13-x64; the stack
                            section commented out unless --stack DIR)
  cloud-init/droplet.yaml   the droplets' user_data template
  .gitignore                keeps .env.secrets, keys/deploy, *.pem and
                            fleet's local files (backups/, up.json,
                            promote.json) out of git
  keys/deploy, .pub         an ed25519 deploy key (0600), if there is none
  .github/workflows/deploy.yml   with --ci github: deploys on every pushed
                            tag v* (fleet up, then fleet promote)

An existing file is never replaced: it is listed as kept (an existing
.gitignore only gains the lines it lacks, and the deploy key is never
remade). Delete a file and run fleet init again to have it written afresh,
e.g. the workflow after the stack gained a secret. Files are written
atomically, so an interrupted run is finished by running it again.

The workflow installs fleet with go install at a pinned release: this
fleet's version when it is a release tag, else --fleet-version. Its env
passes DIGITALOCEAN_TOKEN, FLEET_SSH_KEY and one FLEET_SECRET_<NAME> per
secret of the stack (read from the compose files in the work tree) from the
repository's secrets; fleet init prints the gh commands that set them.`,
		Example: `  fleet init --project blog --region ams3
  fleet init --ci github
  fleet init --dir site --stack stacks/site --ci github --fleet-version v1.4.0`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Version = f.JSON, f.Version
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return initRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Dir, "dir", ".", "the project directory (made if missing)")
	fl.StringVar(&opts.Project, "project", "", "project name (default: from the directory's name)")
	fl.StringVar(&opts.Region, "region", scaffold.DefaultRegion, "DigitalOcean region slug")
	fl.StringVar(&opts.Size, "size", scaffold.DefaultSize, "DigitalOcean droplet size slug")
	fl.StringVar(&opts.StackDir, "stack", "", "write a stack section for the compose stack in this directory (relative to --dir)")
	fl.StringVar(&opts.CI, "ci", "", "also write a CI workflow: github")
	fl.StringVar(&opts.FleetVersion, "fleet-version", "", "the fleet release the workflow installs (default: this fleet's version, if a release)")
	return cmd
}

func initRun(ctx context.Context, opts *InitOptions) error {
	o := opts.Options
	if o.CI != "" {
		if o.FleetVersion == "" {
			if !scaffold.IsRelease(opts.Version) {
				return &UsageError{Msg: fmt.Sprintf("fleet init --ci %s: this fleet (%s) is not a release, and the workflow must install a pinned one: give --fleet-version vX.Y.Z", o.CI, opts.Version)}
			}
			o.FleetVersion = opts.Version
		}
		o.GoVersion = goLine(runtime.Version())
	}
	r, err := scaffold.Init(ctx, o)
	var ue *scaffold.UsageError
	if errors.As(err, &ue) {
		return &UsageError{Msg: ue.Msg}
	}
	if err != nil {
		return err
	}
	next := nextSteps(r, o)
	for _, w := range r.Warnings {
		fmt.Fprintf(opts.IO.ErrOut, "warning: %s\n", w)
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toInitJSON(r, next))
	}
	w := opts.IO.Out
	for _, f := range r.Files {
		note := ""
		if f.Note != "" {
			note = " (" + f.Note + ")"
		}
		fmt.Fprintf(w, "%-8s %s%s\n", f.Action, f.Path, note)
	}
	fmt.Fprintln(w, "\nNext steps:")
	printSteps(w, next)
	return nil
}

// goLine is setup-go's go-version for the Go that built this fleet:
// "go1.26.8" → "1.26" (its newest patch release).
func goLine(v string) string {
	parts := strings.SplitN(strings.TrimPrefix(v, "go"), ".", 3)
	if len(parts) < 2 || !strings.HasPrefix(v, "go1") {
		return "stable"
	}
	minor, _, _ := strings.Cut(parts[1], "rc") // go1.27rc1
	return parts[0] + "." + minor
}

// nextSteps are shell lines (with comments) for the operator.
func nextSteps(r *scaffold.Report, o scaffold.Options) []string {
	var s []string
	if o.Dir != "" && o.Dir != "." {
		s = append(s, "cd "+shellQuote(o.Dir))
	}
	s = append(s,
		"fleet validate                 # droplets.yaml and the cloud-init template",
		"git add -A && git commit -m 'fleet project'   # .gitignore keeps keys/deploy and .env.secrets out",
	)
	if o.CI == "github" {
		s = append(s,
			"# the workflow's secrets, in the GitHub repository:",
			"gh secret set DIGITALOCEAN_TOKEN     # a DigitalOcean API token with write scope",
			"gh secret set FLEET_SSH_KEY < keys/deploy",
		)
		for _, v := range r.Secrets {
			s = append(s, "gh secret set "+v)
		}
		s = append(s, "git tag v0.1.0 && git push origin v0.1.0   # deploys: fleet up v0.1.0, then fleet promote")
	} else {
		s = append(s,
			"export DIGITALOCEAN_TOKEN=...     # a DigitalOcean API token with write scope",
			"git tag v0.1.0 && fleet up v0.1.0 && fleet promote",
		)
	}
	return s
}

func printSteps(w io.Writer, steps []string) {
	for _, l := range steps {
		fmt.Fprintln(w, "  "+l)
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
