package cloud

import (
	"context"
	"fmt"

	"github.com/digitalocean/godo"
)

// Settle waits until no action on ip is in progress, then reads where it
// points. After an assign that failed or was interrupted, the action may
// still be running and may yet take effect: only a read taken once it has
// finished says whether the IP moved.
func (c *Client) Settle(ctx context.Context, ip string, t Timeouts) (*ReservedIP, error) {
	err := c.poll(ctx, "reserved IP "+ip+" to finish its actions in progress", t.Assign, func(ctx context.Context) (bool, string, error) {
		actions, err := listAll(ctx, c, "reserved IP actions", func(o *godo.ListOptions) ([]godo.Action, *godo.Response, error) {
			return c.api.ReservedIPActions.List(ctx, ip, o)
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
	if err != nil {
		return nil, err
	}
	return c.ReservedIP(ctx, ip)
}
