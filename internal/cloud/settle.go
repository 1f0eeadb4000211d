package cloud

import (
	"context"
	"time"

	"github.com/digitalocean/godo"
)

// Settle waits until no action on ip is in progress, then reads where it
// points. After an assign that failed or was interrupted, the action may
// still be running and may yet take effect: only a read taken once it has
// finished says whether the IP moved.
func (c *Client) Settle(ctx context.Context, ip string, t Timeouts) (*ReservedIP, error) {
	err := c.waitNoAction(ctx, "reserved IP "+ip, "reserved IP actions", t.Assign, func(ctx context.Context, o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
		return c.api.ReservedIPActions.List(ctx, ip, o)
	})
	if err != nil {
		return nil, err
	}
	return c.ReservedIP(ctx, ip)
}

// LastMove is when ip's newest completed assign action finished; zero
// when it has none.
func (c *Client) LastMove(ctx context.Context, ip string) (time.Time, error) {
	actions, err := listAll(ctx, c, "reserved IP actions", func(o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
		return c.api.ReservedIPActions.List(ctx, ip, o)
	})
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, a := range actions {
		if a.Type == "assign_ip" && a.Status == "completed" && a.CompletedAt != nil && a.CompletedAt.Time.After(last) {
			last = a.CompletedAt.Time
		}
	}
	return last, nil
}
