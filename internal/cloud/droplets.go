package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
)

// maxCreateAttempts bounds our own resends of a droplet create.
const maxCreateAttempts = 6

// EnsureSSHKeys returns the fingerprints of keys, adding to the account
// any key file whose key is not there yet.
func (c *Client) EnsureSSHKeys(ctx context.Context, keys []SSHKey) ([]string, error) {
	var fps []string
	for _, k := range keys {
		_, _, err := c.api.Keys.GetByFingerprint(ctx, k.Fingerprint)
		err = wrap(err, "look up SSH key "+k.Fingerprint)
		switch {
		case err == nil:
		case IsStatus(err, http.StatusNotFound) && k.PublicKey != "":
			_, _, err = c.api.Keys.Create(ctx, &godo.KeyCreateRequest{Name: k.Name, PublicKey: k.PublicKey})
			// A 422 here means a concurrent deploy added it first.
			if err = wrap(err, "add SSH key "+k.Name); err != nil && !IsStatus(err, http.StatusUnprocessableEntity) {
				return nil, err
			}
		case IsStatus(err, http.StatusNotFound):
			return nil, fmt.Errorf("SSH key %s is not on the account: add it, or list its public key file in droplet.ssh_keys", k.Fingerprint)
		default:
			return nil, err
		}
		fps = append(fps, k.Fingerprint)
	}
	return fps, nil
}

// CreateDroplet creates the droplet once. Before every POST it looks the
// deploy tag up, so a POST that took effect but answered 5xx (or timed
// out) is never sent again. It returns the droplet and its create action
// (0 if unknown).
func (c *Client) CreateDroplet(ctx context.Context, req CreateRequest) (*Droplet, int, error) {
	if req.DeployTag == "" {
		return nil, 0, errors.New("create droplet: no deploy tag")
	}
	tags := append([]string{}, req.Tags...)
	if !contains(tags, req.DeployTag) {
		tags = append(tags, req.DeployTag)
	}
	keys := make([]godo.DropletCreateSSHKey, len(req.SSHKeys))
	for i, fp := range req.SSHKeys {
		keys[i] = godo.DropletCreateSSHKey{Fingerprint: fp}
	}
	body := &dropletCreateBody{
		DropletCreateRequest: godo.DropletCreateRequest{
			Name: req.Name, Region: req.Region, Size: req.Size,
			Image: godo.DropletCreateImage{Slug: req.Image}, SSHKeys: keys,
			Tags: tags, UserData: req.UserData, VPCUUID: req.VPCUUID,
		},
		Monitoring: req.Monitoring, IPv6: req.IPv6, Backups: req.Backups,
	}
	if req.ImageID != 0 {
		body.Image = godo.DropletCreateImage{ID: req.ImageID}
	}
	b := c.backoff()
	for attempt := 1; ; attempt++ {
		existing, err := c.ListByTag(ctx, req.DeployTag)
		if err != nil {
			return nil, 0, err
		}
		if len(existing) > 1 {
			return nil, 0, fmt.Errorf("create droplet: %d droplets carry deploy tag %s; destroy the extra ones", len(existing), req.DeployTag)
		}
		if len(existing) == 1 {
			d := existing[0]
			return &d, c.createActionID(ctx, d.ID), nil
		}
		d, resp, err := c.postDroplet(ctx, body)
		if err == nil {
			actionID := 0
			if resp != nil && resp.Links != nil {
				for _, a := range resp.Links.Actions {
					if a.Rel == "create" {
						actionID = a.ID
					}
				}
			}
			return fromGodo(d), actionID, nil
		}
		if !retryable(resp, err) || attempt >= maxCreateAttempts {
			return nil, 0, wrap(err, "create droplet "+req.Name)
		}
		wait, err := c.resendWait(ctx, resp, err, b)
		if err != nil {
			return nil, 0, wrap(err, "create droplet "+req.Name)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, 0, err
		}
	}
}

// dropletCreateBody is godo's create request with its booleans left out
// when unset: godo always sends them (false), where fleet leaves an
// option the spec does not set to DigitalOcean. The outer fields hide
// the embedded ones of the same JSON name.
type dropletCreateBody struct {
	godo.DropletCreateRequest
	Monitoring *bool `json:"monitoring,omitempty"`
	IPv6       *bool `json:"ipv6,omitempty"`
	Backups    *bool `json:"backups,omitempty"`
}

// postDroplet is godo's Droplets.Create with body, sent once (c.once).
func (c *Client) postDroplet(ctx context.Context, body *dropletCreateBody) (*godo.Droplet, *godo.Response, error) {
	r, err := c.once.NewRequest(ctx, http.MethodPost, "v2/droplets", body)
	if err != nil {
		return nil, nil, err
	}
	var root struct {
		Droplet *godo.Droplet `json:"droplet"`
		Links   *godo.Links   `json:"links,omitempty"`
	}
	resp, err := c.once.Do(ctx, r, &root)
	if err != nil {
		return nil, resp, err
	}
	if root.Droplet == nil {
		return nil, resp, errors.New("the API answered the create without a droplet")
	}
	if root.Links != nil {
		resp.Links = root.Links
	}
	return root.Droplet, resp, nil
}

// createActionID finds a droplet's create action; 0 if it cannot.
func (c *Client) createActionID(ctx context.Context, id int) int {
	actions, err := listAll(ctx, c, "droplet actions", func(o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
		return c.api.Droplets.Actions(ctx, id, o)
	})
	if err != nil {
		return 0
	}
	for _, a := range actions {
		if a.Type == "create" {
			return a.ID
		}
	}
	return 0
}

// WaitReady waits in turn for the create action, for status active, and for
// a public IPv4, each bounded by its timeout.
func (c *Client) WaitReady(ctx context.Context, d *Droplet, actionID int, t Timeouts) (*Droplet, error) {
	if actionID != 0 {
		if err := c.waitAction(ctx, "create action of "+d.Name, t.Create, func(ctx context.Context) (*godo.Action, error) {
			a, _, err := c.api.Actions.Get(ctx, actionID)
			return a, err
		}); err != nil {
			return nil, err
		}
	}
	var cur *Droplet
	check := func(want string) func(ctx context.Context) (bool, string, error) {
		return func(ctx context.Context) (bool, string, error) {
			g, _, err := c.api.Droplets.Get(ctx, d.ID)
			if err != nil {
				return false, "", wrap(err, "get droplet "+d.Name)
			}
			if cur, err = c.droplet(ctx, g); err != nil {
				return false, "", err
			}
			if want == "active" {
				return cur.Status == "active", "status " + cur.Status, nil
			}
			return cur.PublicIPv4 != "", "no public IPv4 yet", nil
		}
	}
	deadline := time.Now().Add(t.Active)
	if err := c.poll(ctx, d.Name+" to become active", t.Active, check("active")); err != nil {
		return nil, err
	}
	if cur.PublicIPv4 == "" {
		left := time.Until(deadline)
		if left < time.Second {
			left = time.Second
		}
		if err := c.poll(ctx, "a public IPv4 on "+d.Name, left, check("ipv4")); err != nil {
			return nil, err
		}
	}
	return cur, nil
}

func (c *Client) waitAction(ctx context.Context, what string, timeout time.Duration, get func(ctx context.Context) (*godo.Action, error)) error {
	return c.waitActionWith(ctx, c.backoff(), what, timeout, get)
}

// waitActionWith is waitAction with the waits of b.
func (c *Client) waitActionWith(ctx context.Context, b *backoff, what string, timeout time.Duration, get func(ctx context.Context) (*godo.Action, error)) error {
	return c.pollWith(ctx, b, what, timeout, func(ctx context.Context) (bool, string, error) {
		a, err := get(ctx)
		if err != nil {
			return false, "", wrap(err, "get "+what)
		}
		switch a.Status {
		case "completed":
			return true, "", nil
		case "errored":
			return false, "", &ActionError{ID: a.ID, Type: a.Type, On: what}
		}
		return false, "action " + a.Status, nil
	})
}

// GetDroplet reads one droplet; a missing one is ErrNotFound.
func (c *Client) GetDroplet(ctx context.Context, id int) (*Droplet, error) {
	d, _, err := c.api.Droplets.Get(ctx, id)
	if err != nil {
		return nil, wrap(err, "get droplet "+strconv.Itoa(id))
	}
	return c.droplet(ctx, d)
}

// ListByTag lists every droplet with tag, across all pages.
func (c *Client) ListByTag(ctx context.Context, tag string) ([]Droplet, error) {
	ds, err := listAll(ctx, c, "droplets tagged "+tag, func(o *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
		return c.api.Droplets.ListByTag(ctx, tag, o)
	})
	if err != nil {
		return nil, err
	}
	return c.droplets(ctx, ds)
}

// DeleteDroplet destroys a droplet. One already gone counts as deleted.
func (c *Client) DeleteDroplet(ctx context.Context, id int) error {
	_, err := c.api.Droplets.Delete(ctx, id)
	if err != nil && !IsStatus(err, http.StatusNotFound) {
		return wrap(err, "delete droplet "+strconv.Itoa(id))
	}
	return nil
}

// Tag adds tag to a droplet, creating the tag if needed.
func (c *Client) Tag(ctx context.Context, dropletID int, tag string) error {
	if _, _, err := c.api.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil &&
		!IsStatus(err, http.StatusUnprocessableEntity) {
		return wrap(err, "create tag "+tag)
	}
	_, err := c.api.Tags.TagResources(ctx, tag, &godo.TagResourcesRequest{
		Resources: []godo.Resource{{ID: strconv.Itoa(dropletID), Type: godo.DropletResourceType}},
	})
	return wrap(err, "tag droplet "+strconv.Itoa(dropletID)+" "+tag)
}

// Untag removes tag from a droplet.
func (c *Client) Untag(ctx context.Context, dropletID int, tag string) error {
	_, err := c.api.Tags.UntagResources(ctx, tag, &godo.UntagResourcesRequest{
		Resources: []godo.Resource{{ID: strconv.Itoa(dropletID), Type: godo.DropletResourceType}},
	})
	if IsStatus(err, http.StatusNotFound) {
		return nil
	}
	return wrap(err, "untag droplet "+strconv.Itoa(dropletID)+" "+tag)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
