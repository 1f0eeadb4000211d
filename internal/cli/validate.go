package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/spec"
	"github.com/spf13/cobra"
)

// ValidateOptions are the inputs of `fleet validate`.
type ValidateOptions struct {
	IO   *IOStreams
	JSON bool
	Path string
	// Cloud gives the API client for the online checks of a valid spec,
	// or nil and why they are skipped (no token; the local cloud is not
	// running). nil: always offline.
	Cloud func(context.Context, *spec.Spec) (cloud.Cloud, string, error)
}

// NewCmdValidate builds `fleet validate`.
func NewCmdValidate(f *Factory, runF func(context.Context, *ValidateOptions) error) *cobra.Command {
	opts := &ValidateOptions{IO: f.IOStreams}
	return &cobra.Command{
		Use:   "validate",
		Short: "Check droplets.yaml and print every problem",
		Long: `Check droplets.yaml: strict keys, slugs, tags, the reserved IP, keep,
timeouts, SSH key files, and the rendered cloud-init (64 KiB at most).
Every problem is printed as file:line:col: message; the exit code is 3 if
there is any.

With an API token (DIGITALOCEAN_TOKEN, or a running local cloud for
provider: local), a valid spec is also checked against the account, read
only: the project's reserved IP (reserved_ip, or with auto the one its live
droplet holds) must be in droplet.region, as DigitalOcean moves a reserved
IP only within its region (exit 5 otherwise, as fleet up), and a literal
reserved_ip must be on the account (exit 4). Without a token validate
stays offline and says the region was not checked.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Path = f.JSON, f.SpecPath
			opts.Cloud = f.validateCloud
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return validateRun(cmd.Context(), opts)
		},
	}
}

// validateCloud is the client for validate's online checks, or nil and
// why there is none. It never starts the local cloud.
func (f *Factory) validateCloud(ctx context.Context, s *spec.Spec) (cloud.Cloud, string, error) {
	apiURL, token := f.endpoint()
	if s.Provider == spec.ProviderLocal && apiURL == "" {
		dir, err := localDir(f.Getenv)
		if err != nil {
			return nil, "", err
		}
		if lc, ok := readLocal(dir); !ok || !answers(ctx, lc.URL, lc.Token) {
			return nil, "the local cloud is not running (validate does not start it; `fleet local start` does)", nil
		}
	} else if token == "" {
		return nil, "no API token (set DIGITALOCEAN_TOKEN to check it against the account)", nil
	}
	c, err := f.Cloud()
	return c, "", err
}

// regionCheckJSON is validate's check of the reserved IP's region.
type regionCheckJSON struct {
	Checked          bool   `json:"checked"`                      // the API was asked
	NotCheckedReason string `json:"not_checked_reason,omitempty"` // why not
	DropletRegion    string `json:"droplet_region"`
	ReservedIP       string `json:"reserved_ip,omitempty"` // "": none yet (auto)
	ReservedIPRegion string `json:"reserved_ip_region,omitempty"`
	OK               bool   `json:"ok"` // checked, and no mismatch
}

func validateRun(ctx context.Context, opts *ValidateOptions) error {
	s, err := spec.Load(opts.Path)
	var errs *spec.Errors
	if err != nil && !errors.As(err, &errs) {
		return err
	}
	var region *regionCheckJSON
	if err == nil {
		region, err = checkRegion(ctx, opts, s)
	}
	if err != nil {
		fmt.Fprintln(opts.IO.ErrOut, err)
		if !opts.JSON && errs != nil {
			fmt.Fprintf(opts.IO.ErrOut, "%d problem(s) in %s\n", errs.Total(), opts.Path)
		}
	}
	if opts.JSON {
		out := validateJSON{File: opts.Path, Valid: err == nil, Errors: []string{}, Region: region}
		if errs != nil {
			for _, e := range *errs {
				out.Errors = append(out.Errors, e.Error())
			}
		} else if err != nil {
			out.Errors = append(out.Errors, err.Error())
		}
		if err != nil {
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
		switch {
		case !region.Checked:
			fmt.Fprintf(opts.IO.Out, "the reserved IP's region was not checked: %s\n", region.NotCheckedReason)
		case region.ReservedIP == "":
			fmt.Fprintf(opts.IO.Out, "no reserved IP yet (reserved_ip: auto): the first promote reserves one in %s\n", s.Droplet.Region)
		default:
			fmt.Fprintf(opts.IO.Out, "reserved IP %s is in %s, as droplet.region\n", region.ReservedIP, region.ReservedIPRegion)
		}
	}
	return nil
}

// checkRegion is validate's online check of a valid spec: the reserved
// IP's region against droplet.region (deploy.CheckRegion), or why it was
// not made.
func checkRegion(ctx context.Context, opts *ValidateOptions, s *spec.Spec) (*regionCheckJSON, error) {
	out := &regionCheckJSON{DropletRegion: s.Droplet.Region}
	if opts.Cloud == nil {
		out.NotCheckedReason = "offline"
		return out, nil
	}
	c, why, err := opts.Cloud(ctx, s)
	if err != nil {
		return out, err
	}
	if c == nil {
		out.NotCheckedReason = why
		return out, nil
	}
	out.Checked = true
	rc, err := (&deploy.Deployer{Cloud: c, Spec: s}).CheckRegion(ctx)
	if rc != nil {
		out.ReservedIP, out.ReservedIPRegion = rc.IP, rc.IPRegion
	}
	out.OK = err == nil
	return out, err
}
