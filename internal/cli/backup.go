package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// BackupOptions are the inputs of `fleet backup`.
type BackupOptions struct {
	IO       *IOStreams
	JSON     bool
	Droplet  string
	Dir      string // "" = ./backups/<project>
	Verify   bool
	Archive  string // with --verify: check this archive instead of taking one
	Now      func() time.Time
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdBackup builds `fleet backup`.
func NewCmdBackup(f *Factory, runF func(context.Context, *BackupOptions) error) *cobra.Command {
	opts := &BackupOptions{IO: f.IOStreams, Now: time.Now}
	cmd := &cobra.Command{
		Use:   "backup [--verify [ARCHIVE]]",
		Short: "Save the live data to ./backups/<project>/<UTC time>.tar.zst",
		Long: `Run the stack's backup command (stack.data.backup) on the live droplet, or
the one named by --droplet, and save what it writes, zstd-compressed, as
./backups/<project>/<UTC time>.tar.zst beside <UTC time>.manifest.json: the
sha256 of the file, of the stream the stack wrote, and of each member when
that stream is a tar. The site stays writable: the stack's backup must make a
consistent snapshot of live data.

--verify then restores the archive into a scratch container of the data
service's image (stack.data.service; no volumes, no network) on that droplet
and runs stack.data.verify there. Given an ARCHIVE, --verify checks it
instead of taking a new backup.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 || (len(args) == 1 && !opts.Verify) {
				return &UsageError{Msg: "fleet backup: an ARCHIVE argument goes with --verify (fleet backup --verify ARCHIVE); to restore one, use fleet restore ARCHIVE"}
			}
			return nil
		},
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveFilterFileExt),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer = f.JSON, f.Deployer
			if len(args) == 1 {
				opts.Archive = args[0]
				if !strings.HasSuffix(opts.Archive, ".tar.zst") {
					return &UsageError{Msg: fmt.Sprintf("fleet backup --verify %s: an archive is a .tar.zst file written by fleet backup", opts.Archive)}
				}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return backupRun(ctx, opts) })
		},
	}
	cmd.Flags().StringVar(&opts.Droplet, "droplet", "", "back up this droplet instead of the live one")
	cmd.Flags().StringVar(&opts.Dir, "dir", "", "directory for archives (default ./backups/<project>)")
	cmd.Flags().BoolVar(&opts.Verify, "verify", false, "restore the archive into a scratch container and check it")
	_ = cmd.RegisterFlagCompletionFunc("droplet", completeDroplets(f))
	return cmd
}

func backupRun(ctx context.Context, opts *BackupOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	var out backupJSON
	path := opts.Archive
	if path == "" {
		dir := opts.Dir
		if dir == "" {
			dir = filepath.Join("backups", d.Spec.Project)
		}
		res, err := d.Backup(ctx, opts.Droplet, dir, opts.Now())
		if err != nil {
			p.Stop(false)
			return err
		}
		path = res.Path
		out = toBackupJSON(res)
		if !opts.JSON {
			p.Stop(true)
			m := res.Manifest
			fmt.Fprintf(opts.IO.Out, "saved %s: %s (%s of data from %s, %s), sha256 %.12s\n", res.Path, humanBytes(m.Archive.Bytes),
				humanBytes(m.Stream.Bytes), m.Droplet, dash(m.Version), m.Archive.SHA256)
			p = opts.IO.NewProgress()
		}
	}
	if opts.Verify {
		report, err := d.Verify(ctx, path, opts.Droplet)
		p.Stop(err == nil)
		if err != nil {
			return err
		}
		verified := strings.TrimSpace(report)
		out.Verified, out.VerifyOutput = true, &verified
		if !opts.JSON {
			fmt.Fprintf(opts.IO.Out, "verified %s: %s\n", path, strings.TrimSpace(report))
		}
	} else {
		p.Stop(true)
	}
	if opts.JSON {
		out.Archive = path
		return printJSON(opts.IO.Out, out)
	}
	return nil
}

// RestoreOptions are the inputs of `fleet restore`.
type RestoreOptions struct {
	IO       *IOStreams
	JSON     bool
	Yes      bool
	Droplet  string
	Archive  string
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdRestore builds `fleet restore ARCHIVE`.
func NewCmdRestore(f *Factory, runF func(context.Context, *RestoreOptions) error) *cobra.Command {
	opts := &RestoreOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "restore ARCHIVE",
		Short: "Replace the live data with a saved backup",
		Long: `Check ARCHIVE (a .tar.zst from fleet backup) against its manifest, then
stream it into the stack's restore command (stack.data.restore) on the live
droplet, or the one named by --droplet. The live droplet is frozen
(read-only) for the restore and writable again after its health gate. A
restore the release refuses (exit 3: it cannot read that data) leaves the
data as it was. Without a terminal, --yes is required.`,
		Args:              exactArgs(1, "ARCHIVE"),
		ValidArgsFunction: cobra.FixedCompletions(nil, cobra.ShellCompDirectiveDefault),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Archive, opts.JSON, opts.Yes, opts.Deployer = args[0], f.JSON, f.Yes, f.Deployer
			if !strings.HasSuffix(opts.Archive, ".tar.zst") {
				return &UsageError{Msg: fmt.Sprintf("fleet restore %s: an archive is a .tar.zst file written by fleet backup", opts.Archive)}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return restoreRun(ctx, opts) })
		},
	}
	cmd.Flags().StringVar(&opts.Droplet, "droplet", "", "restore onto this droplet instead of the live one")
	_ = cmd.RegisterFlagCompletionFunc("droplet", completeDroplets(f))
	return cmd
}

func restoreRun(ctx context.Context, opts *RestoreOptions) error {
	target := "the live droplet"
	if opts.Droplet != "" {
		target = opts.Droplet
	}
	if err := confirm(opts.IO, opts.Yes, "replace the data of "+target+" with "+opts.Archive); err != nil {
		return err
	}
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Restore(ctx, opts.Archive, opts.Droplet)
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toRestoreJSON(res))
	}
	fmt.Fprintf(opts.IO.Out, "restored %s onto %s (%s, sha256 %.12s)\n", opts.Archive, res.Droplet.Name, humanBytes(res.Transfer.Bytes), res.Transfer.SHA256)
	if res.Frozen > 0 {
		fmt.Fprintf(opts.IO.Out, "writes were frozen for %.1fs\n", res.Frozen.Seconds())
	}
	return nil
}
