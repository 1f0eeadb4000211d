package cloud

import (
	"context"
	"fmt"
	"math"

	"github.com/digitalocean/godo"
)

// Price is what DigitalOcean charges for a droplet size, in US dollars.
type Price struct {
	Monthly float64 // a droplet kept the whole month (DigitalOcean's cap)
	Hourly  float64
}

// maxSizes bounds the listing: DigitalOcean has about 150 sizes; a server
// that pages on past this many is broken or hostile.
const maxSizes = 5000

// Sizes lists the account's droplet sizes (every page of GET /v2/sizes)
// by slug.
func (c *Client) Sizes(ctx context.Context) (map[string]Price, error) {
	n := 0
	all, err := listAll(ctx, c, "sizes", func(o *godo.ListOptions) ([]godo.Size, *godo.Response, error) {
		s, resp, err := c.api.Sizes.List(ctx, o)
		if n += len(s); err == nil && n > maxSizes {
			return nil, resp, fmt.Errorf("more than %d sizes", maxSizes)
		}
		return s, resp, err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]Price, len(all))
	for _, s := range all {
		if s.Slug == "" || !validPrice(s.PriceMonthly) || !validPrice(s.PriceHourly) {
			return nil, fmt.Errorf("list sizes: size %q has no valid price (monthly %v, hourly %v)", s.Slug, s.PriceMonthly, s.PriceHourly)
		}
		out[s.Slug] = Price{Monthly: s.PriceMonthly, Hourly: s.PriceHourly}
	}
	return out, nil
}

func validPrice(p float64) bool { return p >= 0 && !math.IsNaN(p) && !math.IsInf(p, 0) }
