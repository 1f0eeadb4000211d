// Package cloud is fleet's seam over the DigitalOcean API (godo). It is
// narrow on purpose: the handful of calls a deploy needs, each with the
// waiting, backoff and idempotency a real API demands.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/godo"
)

// Droplet is the part of a DigitalOcean droplet fleet cares about.
type Droplet struct {
	ID         int
	Name       string
	Status     string // new, active, off, archive
	Region     string
	Size       string // the size slug (what it costs: Sizes)
	Tags       []string
	PublicIPv4 string
	// PrivateIPv4 is the droplet's address in its VPC (VPCUUID): droplets
	// that share a VPC reach each other there, off the public network.
	PrivateIPv4 string
	VPCUUID     string
	Locked      bool
	CreatedAt   time.Time
}

// HasTag reports whether the droplet carries tag.
func (d *Droplet) HasTag(tag string) bool {
	for _, t := range d.Tags {
		if t == tag {
			return true
		}
	}
	return false
}

// ReservedIP is a reserved (floating) IPv4 address.
type ReservedIP struct {
	IP        string
	Region    string
	DropletID int  // 0 when unassigned
	Locked    bool // an action (assign, unassign) is in progress
}

// SSHKey is a public key the droplet must accept.
type SSHKey struct {
	Fingerprint string // MD5, as DigitalOcean shows it
	PublicKey   string // authorized_keys line; empty when only the fingerprint is known
	Name        string
}

// CreateRequest describes one droplet. DeployTag must be unique to the
// deploy: create looks it up before every POST so a retry never duplicates.
type CreateRequest struct {
	Name      string
	Region    string
	Size      string
	Image     string   // a slug; ignored when ImageID is set
	ImageID   int      // a snapshot's image ID
	SSHKeys   []string // fingerprints
	Tags      []string
	UserData  string
	DeployTag string
	// DigitalOcean's droplet options: nil or "" leaves the field out of
	// the request, so DigitalOcean's default applies (off; the region's
	// default VPC).
	Monitoring *bool
	IPv6       *bool
	VPCUUID    string
	Backups    *bool
}

// Cloud is what the deploy lifecycle needs from a provider.
type Cloud interface {
	EnsureSSHKeys(ctx context.Context, keys []SSHKey) ([]string, error)
	CreateDroplet(ctx context.Context, req CreateRequest) (*Droplet, int, error)
	WaitReady(ctx context.Context, d *Droplet, actionID int, t Timeouts) (*Droplet, error)
	GetDroplet(ctx context.Context, id int) (*Droplet, error)
	ListByTag(ctx context.Context, tag string) ([]Droplet, error)
	DeleteDroplet(ctx context.Context, id int) error
	Tag(ctx context.Context, dropletID int, tag string) error
	Untag(ctx context.Context, dropletID int, tag string) error
	ReservedIP(ctx context.Context, ip string) (*ReservedIP, error)
	ListReservedIPs(ctx context.Context) ([]ReservedIP, error)
	// CreateReservedIP calls record with the new address as soon as the
	// API has made it, before waiting for its assignment.
	CreateReservedIP(ctx context.Context, dropletID int, t Timeouts, record func(ip string) error) (*ReservedIP, error)
	Assign(ctx context.Context, ip string, dropletID int, t Timeouts) error
	// WaitIdle waits until the droplet has no action in progress (Assign
	// does it first, unless Timeouts.Idle says the caller just did).
	WaitIdle(ctx context.Context, dropletID int, t Timeouts) error
	Settle(ctx context.Context, ip string, t Timeouts) (*ReservedIP, error)
	// LastMove is when ip's newest completed assign finished (zero: none).
	LastMove(ctx context.Context, ip string) (time.Time, error)
	Unassign(ctx context.Context, ip string, t Timeouts) error

	// Images (images.go): what `fleet image bake` and `up` from a bake need.
	PowerOff(ctx context.Context, dropletID int, t Timeouts) error
	Snapshot(ctx context.Context, dropletID int, name string, t Timeouts) (*Image, error)
	Snapshots(ctx context.Context, prefix string) ([]Image, error)
	DeleteSnapshot(ctx context.Context, id int) error
	ImageBySlug(ctx context.Context, slug string) (*Image, error)

	// Sizes (sizes.go): droplet sizes' prices by slug, for `up --plan`.
	Sizes(ctx context.Context) (map[string]Price, error)
}

// Timeouts bound the waits of one call.
type Timeouts struct {
	Create time.Duration // the create action completes
	Active time.Duration // active, then a public IPv4
	Assign time.Duration // a reserved IP action completes
	// Shutdown is how long a graceful shutdown may take before PowerOff
	// cuts the power (0: 2 minutes).
	Shutdown time.Duration
	Snapshot time.Duration // a snapshot action completes
	// Idle: the caller waited for the droplet to be idle (WaitIdle) just
	// before, out of a time-critical stretch: Assign does not wait again.
	// An action started since is still met: its 422 is retried.
	Idle bool
}

// Config builds a Client.
type Config struct {
	Token     string
	APIURL    string // empty: DigitalOcean
	UserAgent string
	// PollInterval is the first wait between two polls of one resource; it
	// grows from there. It is never below one second against DigitalOcean.
	PollInterval time.Duration
	MaxPoll      time.Duration // longest wait between polls
	PageSize     int           // items per page when listing (default 200, DO's maximum)
	RetryMax     int           // godo retries on 429 and 5xx
	RetryWaitMin time.Duration
	// RetryWaitMax is the longest wait before one retry (default 65 s:
	// DigitalOcean's burst limit counts a minute, so its Retry-After is
	// waited out). A longer stated wait (the hourly limit's reset) is not:
	// the call fails (RateLimitError).
	RetryWaitMax time.Duration
}

// Client implements Cloud with godo.
type Client struct {
	api *godo.Client // retries 429/5xx within the call's budget (retry.go)
	// once never retries. It sends the non-idempotent POSTs (droplet and
	// reserved IP create), whose retries are ours: look up, then resend.
	once *godo.Client
	cfg  Config
	// reserved is the account's reserved IPs as last seen, to tell a
	// droplet's own address from its reserved IP (address.go).
	reserved reservedSet
}

var _ Cloud = (*Client)(nil)

// New builds a Client.
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("no API token")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 5 * time.Second
	}
	if cfg.MaxPoll < cfg.PollInterval {
		cfg.MaxPoll = cfg.PollInterval
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 200
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = time.Second
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 65 * time.Second
	}
	opts := []godo.ClientOpt{}
	if cfg.APIURL != "" {
		opts = append(opts, godo.SetBaseURL(cfg.APIURL))
	}
	if cfg.UserAgent != "" {
		opts = append(opts, godo.SetUserAgent(cfg.UserAgent))
	}
	c := &Client{cfg: cfg}
	retrying, onceHTTP := c.httpClients()
	api, err := godo.New(retrying, opts...)
	if err != nil {
		return nil, err
	}
	once, err := godo.New(onceHTTP, opts...)
	if err != nil {
		return nil, err
	}
	c.api, c.once = api, once
	return c, nil
}

func fromGodo(d *godo.Droplet) *Droplet {
	out := &Droplet{ID: d.ID, Name: d.Name, Status: d.Status, Tags: d.Tags, Locked: d.Locked}
	if d.Region != nil {
		out.Region = d.Region.Slug
	}
	out.Size = d.SizeSlug
	if out.Size == "" && d.Size != nil {
		out.Size = d.Size.Slug
	}
	out.PublicIPv4, _ = d.PublicIPv4()
	out.PrivateIPv4, _ = d.PrivateIPv4()
	out.VPCUUID = d.VPCUUID
	out.CreatedAt, _ = time.Parse(time.RFC3339, d.Created)
	return out
}

func fromGodoIP(ip *godo.ReservedIP) *ReservedIP {
	out := &ReservedIP{IP: ip.IP}
	if ip.Region != nil {
		out.Region = ip.Region.Slug
	}
	if ip.Droplet != nil {
		out.DropletID = ip.Droplet.ID
	}
	out.Locked = ip.Locked
	return out
}

// listAll walks every page. A page that fails (after godo's retries) fails
// the whole listing: a partial list would make fleet misjudge roles.
func listAll[T any](ctx context.Context, c *Client, what string, page func(*godo.ListOptions) ([]T, *godo.Response, error)) ([]T, error) {
	var all []T
	opt := &godo.ListOptions{Page: 1, PerPage: c.cfg.PageSize}
	for {
		items, resp, err := page(opt)
		if err != nil {
			return nil, wrap(err, fmt.Sprintf("list %s (page %d)", what, opt.Page))
		}
		all = append(all, items...)
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return all, nil
		}
		cur, err := resp.Links.CurrentPage()
		if err != nil {
			return nil, fmt.Errorf("list %s: bad pagination links: %w", what, err)
		}
		if cur+1 <= opt.Page {
			return nil, fmt.Errorf("list %s: pagination does not advance past page %d", what, opt.Page)
		}
		opt.Page = cur + 1
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}
