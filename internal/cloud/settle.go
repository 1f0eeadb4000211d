package cloud

import (
	"context"

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
