package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// ImageRef is what a droplet is created from: a slug, or a snapshot.
type ImageRef struct {
	Slug     string       // "" for a snapshot
	Snapshot *cloud.Image // nil for a slug
	// Baked: `up` found no bake of the current template and made one.
	Baked *BakeResult
}

func (r *ImageRef) String() string {
	if r.Snapshot == nil {
		return r.Slug
	}
	return r.Snapshot.Name + " (image " + strconv.Itoa(r.Snapshot.ID) + ")"
}

// ResolveImage says what droplet.image stands for now. bake: the newest
// bake of the current template and base image in the spec's region,
// baking one first when there is none (the template changed). Any other
// name: a slug when the API knows it as one, else the newest snapshot of
// that name in the region; neither is a ConfigError.
func (d *Deployer) ResolveImage(ctx context.Context) (*ImageRef, error) {
	return d.resolveImage(ctx, true)
}

// resolveImage is ResolveImage; without bake it only reads, and a bake
// that would be needed is a nil ImageRef (`up --plan`).
func (d *Deployer) resolveImage(ctx context.Context, bake bool) (*ImageRef, error) {
	name := d.Spec.Droplet.Image
	if name == spec.ImageBake {
		return d.bakedImage(ctx, bake)
	}
	_, err := d.Cloud.ImageBySlug(ctx, name)
	if err == nil {
		return &ImageRef{Slug: name}, nil
	}
	if !errors.Is(err, cloud.ErrNotFound) {
		return nil, err
	}
	snaps, err := d.snapshotsNamed(ctx, name)
	if err != nil {
		return nil, err
	}
	region := d.Spec.Droplet.Region
	if have := inRegion(snaps, region); len(have) > 0 {
		return &ImageRef{Snapshot: &have[0]}, nil
	}
	msg := fmt.Sprintf("droplet.image: %q is neither an image slug DigitalOcean knows nor a snapshot of this account", name)
	if len(snaps) > 0 {
		msg = fmt.Sprintf("droplet.image: snapshot %q is not in region %s (it is in %s): transfer it there, or bake again", name, region, strings.Join(snaps[0].Regions, ", "))
	}
	return nil, &ConfigError{Msg: msg}
}

// bakedImage is the newest bake of the current hash in the region, made
// now if there is none.
func (d *Deployer) bakedImage(ctx context.Context, bake bool) (*ImageRef, error) {
	p, err := d.planBake()
	if err != nil {
		return nil, err
	}
	d.step("looking for the bake of %s (template and %s)", p.hash, p.base)
	snaps, err := d.snapshotsNamed(ctx, p.name)
	if err != nil {
		return nil, err
	}
	if have := inRegion(snaps, d.Spec.Droplet.Region); len(have) > 0 {
		return &ImageRef{Snapshot: &have[0]}, nil
	}
	if !bake {
		return nil, nil
	}
	d.step("no bake of %s yet (the template or base image changed): baking one", p.hash)
	res, err := d.bake(ctx, BakeOptions{})
	if err != nil {
		return nil, err
	}
	return &ImageRef{Snapshot: &res.Image, Baked: res}, nil
}

// Bake is one of the project's bakes.
type Bake struct {
	cloud.Image
	Hash    string
	Current bool // the newest bake of the current template and base image
}

// Bakes lists the project's bakes, newest first, and the current hash.
func (d *Deployer) Bakes(ctx context.Context) ([]Bake, string, error) {
	p, err := d.planBake()
	if err != nil {
		return nil, "", err
	}
	snaps, err := d.Cloud.Snapshots(ctx, SnapshotPrefix(d.Spec.Project))
	if err != nil {
		return nil, "", err
	}
	var out []Bake
	seen := false
	for _, s := range snaps {
		h, ok := BakeHash(d.Spec.Project, s.Name)
		if !ok {
			continue
		}
		b := Bake{Image: s, Hash: h}
		if h == p.hash && !seen && s.InRegion(d.Spec.Droplet.Region) {
			b.Current, seen = true, true
		}
		out = append(out, b)
	}
	return out, p.hash, nil
}

// StaleBakes is what `fleet image prune` deletes: every bake but the
// current one.
func StaleBakes(bakes []Bake) []Bake {
	var out []Bake
	for _, b := range bakes {
		if !b.Current {
			out = append(out, b)
		}
	}
	return out
}

// DeleteBakes deletes the snapshots and returns those it deleted.
func (d *Deployer) DeleteBakes(ctx context.Context, bakes []Bake) ([]Bake, error) {
	var done []Bake
	for _, b := range bakes {
		if interrupted(ctx) {
			return done, context.Canceled
		}
		d.step("deleting snapshot %s (%d)", b.Name, b.ID)
		if err := d.Cloud.DeleteSnapshot(ctx, b.ID); err != nil {
			return done, err
		}
		done = append(done, b)
	}
	return done, nil
}
