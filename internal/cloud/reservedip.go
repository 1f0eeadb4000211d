package cloud

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
)

// ReservedIP reads a reserved IP; a missing one is ErrNotFound.
func (c *Client) ReservedIP(ctx context.Context, ip string) (*ReservedIP, error) {
	r, _, err := c.api.ReservedIPs.Get(ctx, ip)
	if err != nil {
		return nil, wrap(err, "get reserved IP "+ip)
	}
	c.reserved.learn(r.IP)
	return fromGodoIP(r), nil
}

// ListReservedIPs lists every reserved IP of the account.
func (c *Client) ListReservedIPs(ctx context.Context) ([]ReservedIP, error) {
	rs, err := listAll(ctx, c, "reserved IPs", func(o *godo.ListOptions) ([]godo.ReservedIP, *godo.Response, error) {
		return c.api.ReservedIPs.List(ctx, o)
	})
	if err != nil {
		return nil, err
	}
	out := make([]ReservedIP, len(rs))
	for i := range rs {
		out[i] = *fromGodoIP(&rs[i])
	}
	c.reserved.replace(out)
	return out, nil
}

// CreateReservedIP reserves a new address assigned to the droplet. The
// caller has just seen that the droplet holds none. Like a droplet create,
// it is resent only after a look-up shows it did not take effect; a
// droplet holds at most one reserved IP, which is the key.
func (c *Client) CreateReservedIP(ctx context.Context, dropletID int, t Timeouts, record func(ip string) error) (*ReservedIP, error) {
	// find looks for the IP an earlier attempt (or an earlier, killed fleet) made. That IP names its
	// droplet only once its assign action is done; while an unassigned IP
	// is locked (assigning), it may be ours, so wait.
	find := func() (found *ReservedIP, err error) {
		err = c.poll(ctx, fmt.Sprintf("reserved IPs being assigned (droplet %d)", dropletID), t.Assign, func(ctx context.Context) (bool, string, error) {
			all, err := c.ListReservedIPs(ctx)
			if err != nil {
				return false, "", err
			}
			for i := range all {
				if all[i].DropletID == dropletID {
					found = &all[i]
					return true, "", nil
				}
			}
			for _, r := range all {
				if r.Locked && r.DropletID == 0 {
					return false, "reserved IP " + r.IP + " is locked", nil
				}
			}
			return true, "", nil
		})
		return found, err
	}
	if err := c.waitIdle(ctx, dropletID, t.Assign); err != nil {
		return nil, err
	}
	b := c.backoff()
	for attempt := 1; ; attempt++ {
		// Also before the first POST: a killed fleet's create may be
		// assigning its IP still, unseen by the caller's read.
		if r, err := find(); err != nil || r != nil {
			return r, err
		}
		r, resp, err := c.once.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: dropletID})
		if err == nil {
			c.reserved.learn(r.IP)
			if record != nil {
				if err := record(r.IP); err != nil {
					return nil, err
				}
			}
			if resp != nil && resp.Links != nil {
				for _, a := range resp.Links.Actions {
					id := a.ID
					if err := c.waitAction(ctx, "reserved IP "+r.IP+" assign", t.Assign, func(ctx context.Context) (*godo.Action, error) {
						a, _, err := c.api.Actions.Get(ctx, id)
						return a, err
					}); err != nil {
						return nil, err
					}
				}
			}
			return c.confirm(ctx, r.IP, dropletID)
		}
		op := "reserve an IP for droplet " + strconv.Itoa(dropletID)
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

// waitIdle waits until no action is in progress on the droplet: DO
// refuses an assignment or a snapshot of a droplet with a pending event.
func (c *Client) waitIdle(ctx context.Context, dropletID int, timeout time.Duration) error {
	return c.waitNoAction(ctx, fmt.Sprintf("droplet %d", dropletID), "droplet actions", timeout, func(ctx context.Context, o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
		return c.api.Droplets.Actions(ctx, dropletID, o)
	})
}

// waitNoAction polls the actions list returns until none is in progress.
func (c *Client) waitNoAction(ctx context.Context, subject, what string, timeout time.Duration, list func(context.Context, *godo.ListOptions) ([]godo.Action, *godo.Response, error)) error {
	return c.poll(ctx, subject+" to finish its actions in progress", timeout, func(ctx context.Context) (bool, string, error) {
		actions, err := listAll(ctx, c, what, func(o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
			return list(ctx, o)
		})
		if err != nil {
			return false, "", err
		}
		for _, a := range actions {
			if a.Status == "in-progress" {
				return false, fmt.Sprintf("action %d (%s) in progress", a.ID, a.Type), nil
			}
		}
		return true, "", nil
	})
}

// Assign points ip at the droplet: it waits for the droplet to be idle,
// retries a 422 "pending event" with backoff, polls the action, and
// confirms by reading the IP back.
func (c *Client) Assign(ctx context.Context, ip string, dropletID int, t Timeouts) error {
	if !t.Idle {
		if err := c.waitIdle(ctx, dropletID, t.Assign); err != nil {
			return err
		}
	}
	return c.ipAction(ctx, ip, dropletID, t)
}

// WaitIdle waits until the droplet has no action in progress.
func (c *Client) WaitIdle(ctx context.Context, dropletID int, t Timeouts) error {
	return c.waitIdle(ctx, dropletID, t.Assign)
}

// Unassign detaches ip from whatever droplet holds it.
func (c *Client) Unassign(ctx context.Context, ip string, t Timeouts) error {
	return c.ipAction(ctx, ip, 0, t)
}

func (c *Client) ipAction(ctx context.Context, ip string, dropletID int, t Timeouts) error {
	verb := "assign " + ip + " to droplet " + strconv.Itoa(dropletID)
	if dropletID == 0 {
		verb = "unassign " + ip
	}
	var action *godo.Action
	err := c.poll(ctx, verb+" (pending events)", t.Assign, func(ctx context.Context) (bool, string, error) {
		var err error
		if dropletID == 0 {
			action, _, err = c.api.ReservedIPActions.Unassign(ctx, ip)
		} else {
			action, _, err = c.api.ReservedIPActions.Assign(ctx, ip, dropletID)
		}
		if err != nil {
			err = wrap(err, verb)
			if isPendingEvent(err) {
				return false, err.Error(), nil
			}
			return false, "", err
		}
		return true, "", nil
	})
	if err != nil {
		return err
	}
	// Read soon: the action usually completes within a second.
	if err := c.waitActionWith(ctx, c.fastBackoff(), verb, t.Assign, func(ctx context.Context) (*godo.Action, error) {
		a, _, err := c.api.ReservedIPActions.Get(ctx, ip, action.ID)
		return a, err
	}); err != nil {
		return err
	}
	_, err = c.confirm(ctx, ip, dropletID)
	return err
}

// confirm reads ip back: an action can complete while the assignment
// did not stick, and only the read is the truth.
func (c *Client) confirm(ctx context.Context, ip string, dropletID int) (*ReservedIP, error) {
	r, err := c.ReservedIP(ctx, ip)
	if err != nil {
		return nil, err
	}
	if r.DropletID != dropletID {
		return nil, fmt.Errorf("reserved IP %s: the action completed but the IP points at droplet %d, not %d", ip, r.DropletID, dropletID)
	}
	return r, nil
}
