package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// UpResult is what `fleet up` made.
type UpResult struct {
	Droplet Member
	// Image is what the droplet was created from (nil when resumed);
	// Image.Baked when up had to bake first.
	Image   *ImageRef
	Resumed bool    // an interrupted up of the same version was picked up
	Phases  []Phase // what took how long
	// With stack.build: local: compressed bytes of image layers sent from
	// this machine, and layers relayed from the live droplet instead.
	ShippedBytes int64
	ReusedLayers int
	// LinkBytes, DropletBytes and Relay are ShipStats'.
	LinkBytes    int64
	DropletBytes int64
	Relay        string
	// The live droplet's data restored onto the candidate, if any.
	Data *Transfer
	// Duplicates destroyed: candidates of this version left by an up that
	// was killed while its create request was in flight.
	Duplicates []Member
}

// UpOptions tune `fleet up`.
type UpOptions struct {
	FromWorktree bool // deploy the working tree instead of the git tag
}

// Up creates a candidate droplet for version and, with a stack, deploys
// it and gates it on health. It never touches the live droplet or the
// reserved IP. A failed candidate is kept, tagged failed; an interrupted
// one is kept as the candidate, and re-running Up resumes it.
func (d *Deployer) Up(ctx context.Context, version string, opt UpOptions) (*UpResult, error) {
	st, stk, err := d.checkUp(ctx, version, opt)
	if err != nil {
		return nil, err
	}
	if stk != nil {
		defer stk.bundle.Close()
	}
	if err := d.checkSSH(); err != nil {
		return nil, err
	}
	if c := st.Candidate(); c != nil {
		return d.resume(ctx, st, c, version, stk)
	}
	img, err := d.ResolveImage(ctx)
	if err != nil {
		return nil, err
	}
	dr, actionID, err := d.create(ctx, version, opt, stk != nil, img)
	if err != nil {
		return nil, err
	}
	res := &UpResult{Droplet: Member{Droplet: *dr, Version: version, Role: RoleCandidate}, Image: img}
	if res.Duplicates, err = d.dropDuplicates(ctx, version, dr.ID); err != nil {
		return nil, d.fail(ctx, dr, err)
	}
	d.step("waiting for %s to boot", dr.Name)
	ready, err := d.Cloud.WaitReady(ctx, dr, actionID, d.timeouts())
	if err == nil {
		err = d.finishUp(ctx, res, ready, version, stk, st.Live())
	}
	if err != nil {
		return nil, d.fail(ctx, dr, err)
	}
	res.Droplet.Droplet = *ready
	res.Phases = d.finishPhases()
	return res, nil
}

// checkSSH makes sure up can log in to the droplet it makes: every up
// waits for it over SSH.
func (d *Deployer) checkSSH() error {
	if d.Remote == nil {
		return &ConfigError{Msg: "fleet up waits for the droplet over SSH; this fleet was built without it"}
	}
	if err := d.Remote.Dialer.CheckKeys(); err != nil {
		return &ConfigError{Msg: "fleet up logs in to the droplet it makes: " + err.Error()}
	}
	return nil
}

// checkUp checks every input of an up before anything is created (Up and
// Plan both call it): the version, the stack (from git, its secrets
// present), the reserved IP's region, and that no candidate of another
// version waits. It only reads. The caller closes the stack's bundle.
func (d *Deployer) checkUp(ctx context.Context, version string, opt UpOptions) (*State, *prepared, error) {
	if err := spec.ParseVersion(version); err != nil {
		return nil, nil, err
	}
	var stk *prepared
	if d.Spec.Stack != nil {
		var err error
		if stk, err = d.prepareStack(ctx, version, opt.FromWorktree); err != nil {
			return nil, nil, err
		}
	}
	fail := func(err error) (*State, *prepared, error) {
		if stk != nil {
			stk.bundle.Close()
		}
		return nil, nil, err
	}
	d.step("reading state of %s", d.Spec.Project)
	st, err := d.State(ctx)
	if err != nil {
		return fail(err)
	}
	// A candidate the reserved IP cannot reach would never be promoted.
	if err := d.regionMismatch(st.ReservedIP); err != nil {
		return fail(err)
	}
	if c := st.Candidate(); c != nil && c.Version != version {
		return fail(&ConflictError{Msg: fmt.Sprintf("candidate %s (%s) is waiting: promote it with `fleet promote`, or discard it with `fleet rollback`", c.Name, c.Version)})
	}
	return st, stk, nil
}

// resume finishes an up of the same version that was interrupted: the
// candidate it left is adopted, not failed and replaced.
func (d *Deployer) resume(ctx context.Context, st *State, c *Member, version string, stk *prepared) (*UpResult, error) {
	d.step("resuming %s", c.Name)
	res := &UpResult{Droplet: *c, Resumed: true}
	// The gate is passed again from the start (the stack is shipped and
	// restarted): until it is, promote must refuse this candidate.
	if c.HasTag(TagHealthy) {
		if err := d.Cloud.Untag(ctx, c.ID, TagHealthy); err != nil {
			return nil, err
		}
		c.Tags = slices.DeleteFunc(slices.Clone(c.Tags), func(t string) bool { return t == TagHealthy })
		res.Droplet.Tags = c.Tags
	}
	var err error
	if res.Duplicates, err = d.dropDuplicates(ctx, version, c.ID); err != nil {
		return nil, err
	}
	ready, err := d.Cloud.WaitReady(ctx, &c.Droplet, 0, d.timeouts())
	if err == nil {
		err = d.finishUp(ctx, res, ready, version, stk, st.Live())
	}
	if err != nil {
		return nil, d.fail(ctx, &c.Droplet, err)
	}
	res.Droplet.Droplet = *ready
	res.Phases = d.finishPhases()
	return res, nil
}

func (d *Deployer) finishStack(ctx context.Context, res *UpResult, c *remote.Client, dr *cloud.Droplet, version string, stk *prepared, live *Member) error {
	sr, err := d.deployStack(ctx, c, dr, version, stk, live)
	if sr.shipped != nil {
		res.ShippedBytes, res.ReusedLayers = sr.shipped.ShippedBytes, sr.shipped.ReusedLayers
		res.LinkBytes, res.DropletBytes, res.Relay = sr.shipped.LinkBytes, sr.shipped.DropletBytes, sr.shipped.Relay
	}
	res.Data = sr.carried
	return err
}

// create renders user_data with a host key fleet generates and creates
// the droplet tagged with that key's fingerprint (HostKeyTag): from the
// create request on, any holder of the token can verify the droplet.
func (d *Deployer) create(ctx context.Context, version string, opt UpOptions, withStack bool, img *ImageRef) (*cloud.Droplet, int, error) {
	nd, err := d.newDroplet(version, opt, withStack)
	if err != nil {
		return nil, 0, err
	}
	req := nd.req
	if req.SSHKeys, err = d.sshKeys(ctx); err != nil {
		return nil, 0, err
	}
	req.Image = img.Slug
	if img.Snapshot != nil {
		req.ImageID = img.Snapshot.ID
	}
	d.step("creating %s", req.Name) // the image is in UpResult.Image
	dr, actionID, err := d.Cloud.CreateDroplet(ctx, req)
	if err != nil {
		// The create may have taken effect before it failed: find it.
		return nil, 0, d.fail(ctx, d.findByDeployTag(ctx, req.DeployTag), err)
	}
	return dr, actionID, nil
}

// newDroplet is the create request of an up but for its image and SSH
// keys (which need the API): a fresh deploy ID and name, user_data with
// a new host key, the tags that record it, and the spec's options. Plan
// describes the same request.
type newDroplet struct {
	id      string
	hostKey *cloudinit.HostKey
	req     cloud.CreateRequest
}

func (d *Deployer) newDroplet(version string, opt UpOptions, withStack bool) (*newDroplet, error) {
	id := newID()
	if d.NewID != nil {
		id = d.NewID()
	}
	name := spec.DropletName(d.Spec.Project, version, id)
	data := cloudinit.Data{Project: d.Spec.Project, Version: version, DropletName: name, DeployID: id, Stack: withStack}
	var err error
	if data.HostKey, err = cloudinit.NewHostKey(); err != nil {
		return nil, err
	}
	userData, err := cloudinit.Render(d.Spec.Droplet.CloudInit, data)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	tags := append([]string{ProjectTag(d.Spec.Project), VersionTag(version), HostKeyTag(data.HostKey.Public)}, d.Spec.Droplet.Tags...)
	if opt.FromWorktree {
		tags = append(tags, TagWorktree)
	}
	req := cloud.CreateRequest{
		Name: name, Region: d.Spec.Droplet.Region, Size: d.Spec.Droplet.Size,
		Tags: tags, UserData: string(userData), DeployTag: DeployTag(id),
	}
	return &newDroplet{id: id, hostKey: data.HostKey, req: withDropletOptions(req, d.Spec.Droplet, false)}, nil
}

// sshKeys makes sure the spec's keys are on the account and returns
// their fingerprints.
func (d *Deployer) sshKeys(ctx context.Context) ([]string, error) {
	d.step("checking SSH keys")
	keys := make([]cloud.SSHKey, len(d.Spec.Droplet.SSHKeys))
	for i, k := range d.Spec.Droplet.SSHKeys {
		keys[i] = cloud.SSHKey{Fingerprint: k.Fingerprint, PublicKey: k.PublicKey, Name: k.Name}
	}
	return d.Cloud.EnsureSSHKeys(ctx, keys)
}

// dropDuplicates destroys other candidates of version: an up killed while
// its create request was in flight can leave a droplet that appears after
// the re-run read the state. The lock means no other up is working on
// them.
func (d *Deployer) dropDuplicates(ctx context.Context, version string, keep int) ([]Member, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	var done []Member
	for _, m := range st.Members {
		if m.ID == keep || m.Role != RoleCandidate || m.Version != version {
			continue
		}
		d.step("destroying duplicate candidate %s (left by an interrupted up)", m.Name)
		if err := d.Cloud.DeleteDroplet(ctx, m.ID); err != nil {
			return done, err
		}
		d.forget(m.Name)
		done = append(done, m)
	}
	return done, nil
}

func (d *Deployer) findByDeployTag(ctx context.Context, tag string) *cloud.Droplet {
	ctx, cancel := detached(ctx)
	defer cancel()
	ds, err := d.Cloud.ListByTag(ctx, tag)
	if err != nil || len(ds) == 0 {
		return nil
	}
	return &ds[0]
}

// fail tags the candidate failed, keeping it for inspection, and says how
// to remove it. An interrupted up is not a failed one: its candidate stays
// a candidate, for a re-run to resume.
func (d *Deployer) fail(ctx context.Context, dr *cloud.Droplet, cause error) error {
	if dr == nil {
		return cause
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted (%w)\n%s is kept as the candidate: re-run `fleet up` with the same version to resume, or discard it with `fleet rollback`", cause, dr.Name)
	}
	// The droplet refused this machine's keys: most often the runner's
	// fault (a wrong FLEET_SSH_KEY), so the candidate is not failed: a
	// re-run with the right key resumes it.
	var auth *remote.AuthError
	if errors.As(cause, &auth) {
		return &ConfigError{Msg: fmt.Sprintf("%v\n%s is kept as the candidate: give fleet the private half of a key in droplet.ssh_keys (its file, ssh-agent or FLEET_SSH_KEY) and re-run `fleet up` with the same version to resume; if the key is right, the template may lock root out: discard it with `fleet rollback`", cause, dr.Name)}
	}
	tctx, cancel := detached(ctx)
	defer cancel()
	hint := fmt.Sprintf("the live droplet and the reserved IP are untouched; %s is kept, marked failed: remove it with `fleet rollback` or `fleet destroy %s`; inspect it with `fleet ssh %s`", dr.Name, dr.Name, dr.Name)
	if d.Spec.Stack != nil {
		hint += fmt.Sprintf(" or `fleet logs --droplet %s`", dr.Name)
	}
	if err := d.Cloud.Tag(tctx, dr.ID, TagFailed); err != nil {
		hint = fmt.Sprintf("the live droplet and the reserved IP are untouched; marking %s failed also failed (%v): remove it with `fleet destroy %s`", dr.Name, err, dr.Name)
	}
	return &DeployError{Droplet: dr.Name, Err: cause, Hint: hint}
}
