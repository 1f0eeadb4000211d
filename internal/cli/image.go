package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// NewCmdImage builds `fleet image bake|list|prune`.
func NewCmdImage(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Bake, list and prune the project's droplet images",
		Long: `A bake is a snapshot of a droplet on which the spec's cloud-init template
has already run (packages installed, files written), named
fleet-<project>-<hash>, where hash covers the template and the base image.
With droplet.image: bake, fleet up creates droplets from the newest bake of
the current template, which boot much faster; it bakes first when there is
none. DigitalOcean bills snapshot storage: fleet image prune deletes old bakes.`,
		Args: noArgs,
	}
	cmd.AddCommand(NewCmdImageBake(f, nil), NewCmdImageList(f, nil), NewCmdImagePrune(f, nil))
	return cmd
}

// ImageBakeOptions are the inputs of `fleet image bake`.
type ImageBakeOptions struct {
	IO       *IOStreams
	JSON     bool
	Force    bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdImageBake builds `fleet image bake`.
func NewCmdImageBake(f *Factory, runF func(context.Context, *ImageBakeOptions) error) *cobra.Command {
	opts := &ImageBakeOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "bake",
		Short: "Snapshot a droplet set up by the spec's cloud-init template; print the image ID",
		Long: `Create a droplet from droplet.base_image (default: droplet.image, or
debian-13-x64 with image: bake) and the cloud-init template, wait for
cloud-init to succeed, power it off, snapshot it as fleet-<project>-<hash>,
destroy it, and print the snapshot's image ID on stdout.

A snapshot of the same hash is reused (say --force to bake again; the old one
is then deleted). When cloud-init fails, the droplet is destroyed and no
snapshot is made. An interrupted bake leaves its droplet: running bake (or
fleet up with image: bake) again finishes it.`,
		Example: "  fleet image bake\n  fleet image bake --force --json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer = f.JSON, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return imageBakeRun(ctx, opts) })
		},
	}
	cmd.Flags().BoolVar(&opts.Force, "force", false, "bake again even if a snapshot of the current template exists")
	return cmd
}

func imageBakeRun(ctx context.Context, opts *ImageBakeOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	res, err := d.Bake(ctx, deploy.BakeOptions{Force: opts.Force})
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	return printBake(opts.IO, opts.JSON, res)
}

func toImageJSON(img cloud.Image, hash string, current bool) imageJSON {
	return imageJSON{ID: img.ID, Name: img.Name, Hash: hash, Current: current, Regions: img.Regions,
		CreatedAt: img.CreatedAt.UTC().Format(time.RFC3339), SizeGB: img.SizeGB, MinDiskGB: img.MinDiskGB}
}

func printBake(io *IOStreams, asJSON bool, res *deploy.BakeResult) error {
	if asJSON {
		out := bakeJSON{Image: toImageJSON(res.Image, res.Hash, true), BaseImage: res.Base, Existing: res.Existing,
			Droplet: res.Droplet, Resumed: res.Adopted, Destroyed: append([]string{}, res.Destroyed...),
			Deleted: []imageJSON{}, Phases: phasesJSON(res.Phases)}
		for _, s := range res.Deleted {
			out.Deleted = append(out.Deleted, toImageJSON(s, res.Hash, false))
		}
		return printJSON(io.Out, out)
	}
	for _, n := range res.Destroyed {
		fmt.Fprintf(io.ErrOut, "destroyed %s, left by an interrupted bake\n", n)
	}
	for _, s := range res.Deleted {
		fmt.Fprintf(io.ErrOut, "deleted snapshot %s (%d), replaced\n", s.Name, s.ID)
	}
	if res.Existing {
		fmt.Fprintf(io.ErrOut, "%s already holds this template on %s (--force bakes again)\n", res.Image.Name, res.Base)
	} else {
		fmt.Fprintf(io.ErrOut, "baked %s from %s on %s\n", res.Image.Name, res.Base, res.Droplet)
	}
	// stdout is the ID alone: id=$(fleet image bake)
	_, err := fmt.Fprintln(io.Out, res.Image.ID)
	return err
}

// ImageListOptions are the inputs of `fleet image list`.
type ImageListOptions struct {
	IO       *IOStreams
	JSON     bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdImageList builds `fleet image list`.
func NewCmdImageList(f *Factory, runF func(context.Context, *ImageListOptions) error) *cobra.Command {
	opts := &ImageListOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the project's bakes, newest first",
		Long: `List the project's bakes (snapshots named fleet-<project>-<hash>), newest
first. CURRENT marks the one fleet up uses with image: bake: the newest of the
current template and base image in the spec's region.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Deployer = f.JSON, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return imageListRun(cmd.Context(), opts)
		},
	}
	return cmd
}

func imageListRun(ctx context.Context, opts *ImageListOptions) error {
	d, err := opts.Deployer(nil)
	if err != nil {
		return err
	}
	bakes, hash, err := d.Bakes(ctx)
	if err != nil {
		return err
	}
	return printBakes(opts.IO, opts.JSON, bakes, hash)
}

func printBakes(io *IOStreams, asJSON bool, bakes []deploy.Bake, hash string) error {
	if asJSON {
		out := imageListJSON{CurrentHash: hash, Images: []imageJSON{}}
		for _, b := range bakes {
			out.Images = append(out.Images, toImageJSON(b.Image, b.Hash, b.Current))
		}
		return printJSON(io.Out, out)
	}
	if io.StdoutTTY && len(bakes) == 0 {
		fmt.Fprintf(io.Out, "no bakes; the current template is %s: `fleet image bake` makes one\n", hash)
		return nil
	}
	t := &table{tty: io.StdoutTTY, header: []string{"ID", "NAME", "HASH", "CURRENT", "CREATED", "SIZE"}}
	for _, b := range bakes {
		cur := "no"
		if b.Current {
			cur = "yes"
		}
		t.add(strconv.Itoa(b.ID), b.Name, b.Hash, cur, age(b.CreatedAt), strconv.FormatFloat(b.SizeGB, 'f', -1, 64)+" GB")
	}
	return t.print(io.Out)
}

// ImagePruneOptions are the inputs of `fleet image prune`.
type ImagePruneOptions struct {
	IO       *IOStreams
	JSON     bool
	Yes      bool
	Deployer func(step func(string)) (*deploy.Deployer, error)
}

// NewCmdImagePrune builds `fleet image prune`.
func NewCmdImagePrune(f *Factory, runF func(context.Context, *ImagePruneOptions) error) *cobra.Command {
	opts := &ImagePruneOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete every bake but the current one",
		Long: `Delete the project's bakes of other templates or base images, and older bakes
of the current one, keeping the newest of the current template (the one fleet
up uses). DigitalOcean bills snapshots by the GB-month. Without a terminal,
--yes is required.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON, opts.Yes, opts.Deployer = f.JSON, f.Yes, f.Deployer
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return withLock(cmd, f, args, func(ctx context.Context) error { return imagePruneRun(ctx, opts) })
		},
	}
	return cmd
}

func imagePruneRun(ctx context.Context, opts *ImagePruneOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	bakes, _, err := d.Bakes(ctx)
	if err != nil {
		return err
	}
	stale := deploy.StaleBakes(bakes)
	if len(stale) > 0 {
		names := make([]string, len(stale))
		for i, b := range stale {
			names[i] = b.Name
		}
		if err := confirm(opts.IO, opts.Yes, fmt.Sprintf("delete %d snapshots (%s)", len(stale), strings.Join(names, ", "))); err != nil {
			return err
		}
	}
	done, err := d.DeleteBakes(ctx, stale)
	p.Stop(err == nil)
	if opts.JSON && err == nil {
		out := imagePruneJSON{Deleted: []imageJSON{}}
		for _, b := range done {
			out.Deleted = append(out.Deleted, toImageJSON(b.Image, b.Hash, false))
		}
		return printJSON(opts.IO.Out, out)
	}
	for _, b := range done {
		fmt.Fprintf(opts.IO.Out, "deleted %s (%d)\n", b.Name, b.ID)
	}
	if err == nil && len(done) == 0 && !opts.JSON {
		fmt.Fprintln(opts.IO.ErrOut, "nothing to prune")
	}
	return err
}
