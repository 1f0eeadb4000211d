package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"github.com/fleetdeploy/fleet/internal/inputfile"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// TagBake marks a droplet `fleet image bake` is making a snapshot of. It
// is no member of the project's lifecycle: State keeps it apart (Bakes).
const TagBake = "fleet-bake"

const bakeTagPrefix = "fleet-bake:"

// BakeVersion is the version a bake droplet's template is rendered with.
const BakeVersion = "bake"

// shutdownGrace is how long a bake droplet may take to shut down before
// its power is cut.
const shutdownGrace = 2 * time.Minute

var hashRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// TemplateHash names what a bake holds: the first 12 hex digits of
// sha256(template bytes + "\x00" + base image slug).
func TemplateHash(template []byte, base string) string {
	h := sha256.New()
	h.Write(template)
	h.Write([]byte{0})
	h.Write([]byte(base))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// SnapshotPrefix begins the names of a project's bakes.
func SnapshotPrefix(project string) string { return "fleet-" + project + "-" }

// SnapshotName is the name of the project's bake of hash.
func SnapshotName(project, hash string) string { return SnapshotPrefix(project) + hash }

// BakeHash is the hash a snapshot name of the project's bakes carries;
// false for any other name (another project's: "fleet-blog-x-..." is
// not one of blog's).
func BakeHash(project, name string) (string, bool) {
	h, ok := strings.CutPrefix(name, SnapshotPrefix(project))
	return h, ok && hashRE.MatchString(h)
}

// BakeTag marks the droplets baking one hash of a project.
func BakeTag(project, hash string) string { return bakeTagPrefix + project + "-" + hash }

// BakeOptions tune a bake.
type BakeOptions struct {
	Force bool // bake again even if a snapshot of this hash exists
}

// BakeResult is what a bake left.
type BakeResult struct {
	Image    cloud.Image
	Hash     string
	Base     string
	Existing bool   // a snapshot of this hash was there: nothing was baked
	Droplet  string // the bake droplet (made or adopted); "" when Existing
	Adopted  bool   // the droplet was left by an interrupted bake
	// Destroyed: leftover bake droplets destroyed (another hash, or not
	// resumable here). Deleted: other snapshots of this hash (--force, or
	// not in the spec's region), deleted once Image was made.
	Destroyed []string
	Deleted   []cloud.Image
	Phases    []Phase
}

// bakePlan is what a bake of the spec makes.
type bakePlan struct {
	hash, base string
	name       string // of the snapshot
	tag        string // BakeTag
}

func (d *Deployer) planBake() (*bakePlan, error) {
	tmpl, err := inputfile.Read(d.Spec.Droplet.CloudInit, cloudinit.MaxTemplateSize)
	if err != nil {
		return nil, &ConfigError{Msg: "cloud-init template: " + err.Error()}
	}
	base := d.Spec.Droplet.BaseImage
	if base == "" || base == spec.ImageBake {
		base = spec.DefaultBaseImage
	}
	h := TemplateHash(tmpl, base)
	return &bakePlan{hash: h, base: base, name: SnapshotName(d.Spec.Project, h), tag: BakeTag(d.Spec.Project, h)}, nil
}

// Bake makes a snapshot of a droplet booted from the spec's base image
// and cloud-init template, once cloud-init succeeded, and returns it. A
// snapshot of the same hash already there is returned instead (unless
// Force). A re-run after an interruption resumes the droplet it left
// (or destroys it and starts over) and never leaves two snapshots of one
// hash. The caller holds the project's lock.
func (d *Deployer) Bake(ctx context.Context, opt BakeOptions) (*BakeResult, error) {
	res, err := d.bake(ctx, opt)
	if err != nil {
		return nil, err
	}
	res.Phases = d.finishPhases()
	return res, nil
}

func (d *Deployer) bake(ctx context.Context, opt BakeOptions) (*BakeResult, error) {
	if d.Remote == nil {
		return nil, &ConfigError{Msg: "a bake waits for cloud-init over SSH; this fleet was built without it"}
	}
	p, err := d.planBake()
	if err != nil {
		return nil, err
	}
	res := &BakeResult{Hash: p.hash, Base: p.base}
	d.step("looking for a bake of %s (template and %s)", p.hash, p.base)
	snaps, err := d.snapshotsNamed(ctx, p.name)
	if err != nil {
		return nil, err
	}
	leftovers, err := d.bakeDroplets(ctx)
	if err != nil {
		return nil, err
	}
	if have := inRegion(snaps, d.Spec.Droplet.Region); len(have) > 0 && !opt.Force {
		res.Existing = true
		return d.keepBake(ctx, res, have[0], snaps, leftovers)
	}
	dr, err := d.bakeDroplet(ctx, p, leftovers, res)
	if err != nil {
		return nil, err
	}
	img, err := d.bakeImage(ctx, p, dr)
	if err != nil {
		return nil, d.bakeFailed(ctx, dr, err)
	}
	return d.keepBake(ctx, res, *img, snaps, []cloud.Droplet{*dr})
}

// keepBake makes img the result: it destroys the bake droplets and
// deletes every other snapshot of the hash.
func (d *Deployer) keepBake(ctx context.Context, res *BakeResult, img cloud.Image, snaps []cloud.Image, droplets []cloud.Droplet) (*BakeResult, error) {
	res.Image = img
	for _, dr := range droplets {
		d.step("destroying %s", dr.Name)
		if err := d.Cloud.DeleteDroplet(ctx, dr.ID); err != nil {
			return nil, err
		}
		d.forget(dr.Name)
		if dr.Name != res.Droplet {
			res.Destroyed = append(res.Destroyed, dr.Name)
		}
	}
	for _, s := range snaps {
		if s.ID == img.ID {
			continue
		}
		d.step("deleting snapshot %s (%d), replaced by %d", s.Name, s.ID, img.ID)
		if err := d.Cloud.DeleteSnapshot(ctx, s.ID); err != nil {
			return nil, err
		}
		res.Deleted = append(res.Deleted, s)
	}
	return res, nil
}

// snapshotsNamed lists the account's snapshots named exactly name,
// newest first.
func (d *Deployer) snapshotsNamed(ctx context.Context, name string) ([]cloud.Image, error) {
	all, err := d.Cloud.Snapshots(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []cloud.Image
	for _, s := range all {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out, nil
}

func inRegion(imgs []cloud.Image, region string) []cloud.Image {
	var out []cloud.Image
	for _, i := range imgs {
		if i.InRegion(region) {
			out = append(out, i)
		}
	}
	return out
}

// bakeDroplets lists the project's bake droplets: ones an interrupted
// bake left (the lock means no other bake is running).
func (d *Deployer) bakeDroplets(ctx context.Context) ([]cloud.Droplet, error) {
	ds, err := d.Cloud.ListByTag(ctx, TagBake)
	if err != nil {
		return nil, err
	}
	var out []cloud.Droplet
	for _, dr := range ds {
		if dr.HasTag(ProjectTag(d.Spec.Project)) {
			out = append(out, dr)
		}
	}
	return out, nil
}

// bakeDroplet resumes a leftover bake droplet of the hash or creates a
// new one (and returns its host key); every other leftover is destroyed.
func (d *Deployer) bakeDroplet(ctx context.Context, p *bakePlan, leftovers []cloud.Droplet, res *BakeResult) (*cloud.Droplet, error) {
	var adopt *cloud.Droplet
	for i := range leftovers {
		l := &leftovers[i]
		if adopt == nil && l.HasTag(p.tag) && d.resumable(l) {
			adopt = l
			continue
		}
		d.step("destroying %s, left by an interrupted bake", l.Name)
		if err := d.Cloud.DeleteDroplet(ctx, l.ID); err != nil {
			return nil, err
		}
		d.forget(l.Name)
		res.Destroyed = append(res.Destroyed, l.Name)
	}
	if adopt != nil {
		d.step("resuming the bake on %s (left by an interrupted bake)", adopt.Name)
		res.Droplet, res.Adopted = adopt.Name, true
		return adopt, nil
	}
	dr, err := d.createBake(ctx, p)
	if err != nil {
		return nil, err
	}
	res.Droplet = dr.Name
	return dr, nil
}

// resumable: powered off (only a bake whose cloud-init succeeded powers
// its droplet off), or its host key is recorded in its tags, or (a bake
// of an older fleet) pinned here, so SSH can verify it.
func (d *Deployer) resumable(l *cloud.Droplet) bool {
	if l.Status == "off" || len(recordedKeys(l.Tags)) > 0 {
		return true
	}
	_, err := os.Stat(d.Remote.Dialer.KnownHosts.Path(l.Name))
	return err == nil
}

// createBake creates a bake droplet from the base image, with the
// template rendered for version "bake" and a host key pinned first.
func (d *Deployer) createBake(ctx context.Context, p *bakePlan) (*cloud.Droplet, error) {
	id := newID()
	if d.NewID != nil {
		id = d.NewID()
	}
	name := spec.DropletName(d.Spec.Project, BakeVersion, id)
	key, err := cloudinit.NewHostKey()
	if err != nil {
		return nil, err
	}
	data := cloudinit.Data{Project: d.Spec.Project, Version: BakeVersion, DropletName: name, DeployID: id, Stack: d.Spec.Stack != nil, HostKey: key}
	userData, err := cloudinit.Render(d.Spec.Droplet.CloudInit, data)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	fps, err := d.sshKeys(ctx)
	if err != nil {
		return nil, err
	}
	tags := append([]string{ProjectTag(d.Spec.Project), TagBake, p.tag, HostKeyTag(key.Public)}, d.Spec.Droplet.Tags...)
	req := cloud.CreateRequest{
		Name: name, Region: d.Spec.Droplet.Region, Size: d.Spec.Droplet.Size, Image: p.base,
		SSHKeys: fps, Tags: tags, UserData: string(userData), DeployTag: DeployTag(id),
	}
	req = withDropletOptions(req, d.Spec.Droplet, true)
	d.step("creating %s from %s", name, p.base)
	dr, _, err := d.Cloud.CreateDroplet(ctx, req)
	if err != nil {
		// The create may have taken effect before it failed.
		if found := d.findByDeployTag(ctx, req.DeployTag); found != nil {
			return nil, d.bakeFailed(ctx, found, err)
		}
		return nil, err
	}
	return dr, nil
}

// bakeImage takes a bake droplet to a snapshot: boot, cloud-init, power
// off, snapshot. A droplet already off (a resumed bake) goes straight to
// the snapshot, which finds one an interrupted run already made.
func (d *Deployer) bakeImage(ctx context.Context, p *bakePlan, dr *cloud.Droplet) (*cloud.Image, error) {
	t := d.timeouts()
	t.Shutdown, t.Snapshot = shutdownGrace, d.Spec.Timeouts.Snapshot
	if dr.Status != "off" {
		if err := d.bakeBoot(ctx, dr); err != nil {
			return nil, err
		}
		d.step("powering %s off", dr.Name)
		if err := d.Cloud.PowerOff(ctx, dr.ID, t); err != nil {
			return nil, err
		}
	}
	d.step("snapshotting %s as %s", dr.Name, p.name)
	return d.Cloud.Snapshot(ctx, dr.ID, p.name, t)
}

// bakeBoot waits for the droplet, its sshd (verified by the host key its
// tags record) and cloud-init's success.
func (d *Deployer) bakeBoot(ctx context.Context, dr *cloud.Droplet) error {
	d.step("waiting for %s to boot", dr.Name)
	ready, err := d.Cloud.WaitReady(ctx, dr, 0, d.timeouts())
	if err != nil {
		return err
	}
	d.step("connecting to %s over SSH (host key recorded in the cloud)", dr.Name)
	c, err := d.Remote.Dial(ctx, ready, d.Remote.SSHWait)
	if err != nil {
		return err
	}
	defer c.Close()
	d.step("waiting for cloud-init on %s", dr.Name)
	ci, err := c.WaitCloudInit(ctx, d.Remote.SSHWait)
	if err != nil {
		return ClassifyCloudInit(err)
	}
	if ci.Recoverable {
		d.warn("cloud-init finished with recoverable errors on %s:\n  %s", dr.Name, strings.Join(append(ci.Errors, ci.Warnings...), "\n  "))
	}
	return nil
}

// bakeFailed destroys a bake droplet that failed; an interrupted one is
// kept for a re-run to resume.
func (d *Deployer) bakeFailed(ctx context.Context, dr *cloud.Droplet, cause error) error {
	if interrupted(ctx) {
		return fmt.Errorf("interrupted (%w)\n%s is kept: re-run `fleet image bake` to finish it (or `fleet up`, with image: bake)", cause, dr.Name)
	}
	tctx, cancel := detached(ctx)
	defer cancel()
	e := &BakeError{Droplet: dr.Name, Err: cause, Destroyed: true}
	if err := d.Cloud.DeleteDroplet(tctx, dr.ID); err != nil {
		e.Destroyed, e.DestroyErr = false, err
	} else {
		d.forget(dr.Name)
	}
	return e
}
