package cloud

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/digitalocean/godo"
)

// A droplet's networks.v4 lists its reserved IP, if it holds one, as one
// more "public" network, in no documented order (godo's PublicIPv4 takes
// the first). fleet dials, checks and pins the droplet's own address: of
// the public ones, the one that is not a reserved IP of the account.

// reservedSet is the account's reserved IPs as the client last saw them.
type reservedSet struct {
	mu  sync.Mutex
	ips map[string]bool
}

// learn adds ip (from a reserved IP the API answered with).
func (r *reservedSet) learn(ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ips == nil {
		r.ips = map[string]bool{}
	}
	r.ips[ip] = true
}

// replace sets the whole list (from a listing of every reserved IP).
func (r *reservedSet) replace(list []ReservedIP) {
	ips := make(map[string]bool, len(list))
	for _, x := range list {
		ips[x.IP] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ips = ips
}

// own returns the one address of publics that is not a known reserved IP.
func (r *reservedSet) own(publics []string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []string
	for _, ip := range publics {
		if !r.ips[ip] {
			found = append(found, ip)
		}
	}
	if len(found) == 1 {
		return found[0], true
	}
	return "", false
}

func publicIPv4s(d *godo.Droplet) []string {
	var out []string
	if d.Networks == nil {
		return nil
	}
	for _, n := range d.Networks.V4 {
		if n.Type == "public" && n.IPAddress != "" {
			out = append(out, n.IPAddress)
		}
	}
	return out
}

// droplets converts API droplets, each with its own public address. A
// droplet with several public addresses is resolved against the account's
// reserved IPs, listed at most once per call (and only when the ones the
// client knows do not tell).
func (c *Client) droplets(ctx context.Context, gs []godo.Droplet) ([]Droplet, error) {
	out := make([]Droplet, len(gs))
	listed := false
	for i := range gs {
		out[i] = *fromGodo(&gs[i])
		publics := publicIPv4s(&gs[i])
		if len(publics) < 2 {
			continue
		}
		ip, ok := c.reserved.own(publics)
		if !ok && !listed {
			if _, err := c.ListReservedIPs(ctx); err != nil { // refreshes c.reserved
				return nil, fmt.Errorf("droplet %s lists public addresses %s: %w", gs[i].Name, strings.Join(publics, ", "), err)
			}
			listed = true
			ip, ok = c.reserved.own(publics)
		}
		if !ok {
			return nil, fmt.Errorf("droplet %s lists public addresses %s: fleet cannot tell its own from the account's reserved IPs", gs[i].Name, strings.Join(publics, ", "))
		}
		out[i].PublicIPv4 = ip
	}
	return out, nil
}

// droplet is droplets for one.
func (c *Client) droplet(ctx context.Context, g *godo.Droplet) (*Droplet, error) {
	ds, err := c.droplets(ctx, []godo.Droplet{*g})
	if err != nil {
		return nil, err
	}
	return &ds[0], nil
}
