package cloud

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// Image is a droplet image: a distribution's (found by slug) or a
// snapshot of the account.
type Image struct {
	ID        int
	Name      string
	Slug      string // distribution and application images only
	Type      string // "snapshot", "base" (a distribution), ...
	Public    bool
	Regions   []string
	CreatedAt time.Time
	SizeGB    float64 // the snapshot's stored size, billed by DigitalOcean
	MinDiskGB int
}

// InRegion reports whether droplets can be created from the image in region.
func (i *Image) InRegion(region string) bool { return contains(i.Regions, region) }

// PowerOff shuts the droplet down: gracefully (a shutdown action, which
// asks the OS), then, if that does not end within t.Shutdown, the hard
// power_off. It returns once the droplet's status is off.
func (c *Client) PowerOff(ctx context.Context, dropletID int, t Timeouts) error {
	d, err := c.GetDroplet(ctx, dropletID)
	if err != nil || d.Status == "off" {
		return err
	}
	graceful := func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.api.DropletActions.Shutdown(ctx, dropletID)
	}
	err = c.dropletAction(ctx, dropletID, "shutdown", t.Shutdown, graceful)
	if err != nil && ctx.Err() == nil {
		// The OS did not stop in time (or the action errored): cut power.
		hard := func(ctx context.Context) (*godo.Action, *godo.Response, error) {
			return c.api.DropletActions.PowerOff(ctx, dropletID)
		}
		err = c.dropletAction(ctx, dropletID, "power_off", t.Create, hard)
	}
	if err != nil {
		return err
	}
	return c.poll(ctx, fmt.Sprintf("droplet %d to be off", dropletID), t.Create, func(ctx context.Context) (bool, string, error) {
		d, err := c.GetDroplet(ctx, dropletID)
		if err != nil {
			return false, "", err
		}
		return d.Status == "off", "status " + d.Status, nil
	})
}

// dropletAction starts an action on a droplet once it has no other in
// progress (a 422 "pending event" is retried) and waits up to timeout for
// it to complete.
func (c *Client) dropletAction(ctx context.Context, dropletID int, kind string, timeout time.Duration, start func(context.Context) (*godo.Action, *godo.Response, error)) error {
	what := fmt.Sprintf("%s of droplet %d", kind, dropletID)
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	var action *godo.Action
	err := c.poll(ctx, what+" (pending events)", timeout, func(ctx context.Context) (bool, string, error) {
		a, _, err := start(ctx)
		if err = wrap(err, what); err != nil {
			if isPendingEvent(err) {
				return false, err.Error(), nil
			}
			return false, "", err
		}
		action = a
		return true, "", nil
	})
	if err != nil {
		return err
	}
	return c.waitDropletAction(ctx, what, dropletID, action.ID, timeout)
}

// waitDropletAction waits up to timeout for the droplet's action to
// complete.
func (c *Client) waitDropletAction(ctx context.Context, what string, dropletID, actionID int, timeout time.Duration) error {
	return c.waitAction(ctx, what, timeout, func(ctx context.Context) (*godo.Action, error) {
		a, _, err := c.api.DropletActions.Get(ctx, dropletID, actionID)
		return a, err
	})
}

// Snapshot images the droplet's disk as name and returns the image. Like
// a droplet create, the POST is sent only after a look-up: it first waits
// for the droplet's actions in progress (a snapshot an earlier, killed
// fleet started) and returns a snapshot of the droplet already named
// name, so a re-run never makes a second one.
func (c *Client) Snapshot(ctx context.Context, dropletID int, name string, t Timeouts) (*Image, error) {
	op := fmt.Sprintf("snapshot droplet %d as %s", dropletID, name)
	b := c.backoff()
	for attempt := 1; ; attempt++ {
		if err := c.waitIdle(ctx, dropletID, t.Snapshot); err != nil {
			return nil, err
		}
		if img, err := c.dropletSnapshot(ctx, dropletID, name); err != nil || img != nil {
			return img, err
		}
		a, resp, err := c.once.DropletActions.Snapshot(ctx, dropletID, name)
		if err == nil {
			if err := c.waitDropletAction(ctx, op, dropletID, a.ID, t.Snapshot); err != nil {
				return nil, err
			}
			img, err := c.dropletSnapshot(ctx, dropletID, name)
			if err == nil && img == nil {
				err = fmt.Errorf("%s: the action completed, but the droplet has no snapshot of that name", op)
			}
			return img, err
		}
		if !(retryable(resp, err) || isPendingEvent(wrap(err, ""))) || attempt >= maxCreateAttempts {
			return nil, wrap(err, op)
		}
		wait, err := c.resendWait(ctx, resp, err, b)
		if err != nil {
			return nil, wrap(err, op)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// dropletSnapshot is the droplet's newest snapshot named name, or nil.
func (c *Client) dropletSnapshot(ctx context.Context, dropletID int, name string) (*Image, error) {
	imgs, err := listAll(ctx, c, fmt.Sprintf("snapshots of droplet %d", dropletID), func(o *godo.ListOptions) ([]godo.Image, *godo.Response, error) {
		return c.api.Droplets.Snapshots(ctx, dropletID, o)
	})
	if err != nil {
		return nil, err
	}
	var found *Image
	for i := range imgs {
		if img := fromGodoImage(&imgs[i]); img.Name == name && (found == nil || newer(img, found)) {
			found = img
		}
	}
	return found, nil
}

// Snapshots lists the account's droplet snapshots whose name begins with
// prefix, newest first.
func (c *Client) Snapshots(ctx context.Context, prefix string) ([]Image, error) {
	snaps, err := listAll(ctx, c, "droplet snapshots", func(o *godo.ListOptions) ([]godo.Snapshot, *godo.Response, error) {
		return c.api.Snapshots.ListDroplet(ctx, o)
	})
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, s := range snaps {
		if !strings.HasPrefix(s.Name, prefix) {
			continue
		}
		id, err := strconv.Atoi(s.ID)
		if err != nil || id <= 0 {
			return nil, fmt.Errorf("list droplet snapshots: snapshot %.40q has ID %.40q, not a number", s.Name, s.ID)
		}
		img := Image{ID: id, Name: s.Name, Type: "snapshot", Regions: s.Regions, SizeGB: s.SizeGigaBytes, MinDiskGB: s.MinDiskSize}
		img.CreatedAt, _ = time.Parse(time.RFC3339, s.Created)
		out = append(out, img)
	}
	sort.SliceStable(out, func(i, j int) bool { return newer(&out[i], &out[j]) })
	return out, nil
}

// DeleteSnapshot deletes a snapshot. One already gone counts as deleted.
func (c *Client) DeleteSnapshot(ctx context.Context, id int) error {
	_, err := c.api.Snapshots.Delete(ctx, strconv.Itoa(id))
	if err != nil && !IsStatus(err, http.StatusNotFound) {
		return wrap(err, "delete snapshot "+strconv.Itoa(id))
	}
	return nil
}

// ImageBySlug reads a public image by its slug; an unknown slug is
// ErrNotFound.
func (c *Client) ImageBySlug(ctx context.Context, slug string) (*Image, error) {
	img, _, err := c.api.Images.GetBySlug(ctx, slug)
	if err != nil {
		return nil, wrap(err, "get image "+slug)
	}
	return fromGodoImage(img), nil
}

func fromGodoImage(i *godo.Image) *Image {
	out := &Image{ID: i.ID, Name: i.Name, Slug: i.Slug, Type: i.Type, Public: i.Public, Regions: i.Regions, SizeGB: i.SizeGigaBytes, MinDiskGB: i.MinDiskSize}
	out.CreatedAt, _ = time.Parse(time.RFC3339, i.Created)
	return out
}

// newer orders images newest first; the higher ID wins a tie.
func newer(a, b *Image) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.ID > b.ID
}
