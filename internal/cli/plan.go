package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// planJSON is `fleet up VERSION --plan --json`: what `fleet up VERSION`
// would do, worked out by reading the API only. Every field is always
// present: objects that do not apply are null, lists are [] when empty.
type planJSON struct {
	Project string `json:"project"` // the spec's project
	Version string `json:"version"` // VERSION as given
	// Action is "create" (a new candidate droplet) or "resume" (adopt and
	// finish the candidate of VERSION an interrupted up left).
	Action string `json:"action"`
	// Create is the droplet up would create; null when Action is resume.
	Create *planCreateJSON `json:"create"`
	// Resume is the candidate up would adopt; null when Action is create.
	Resume *planDropletJSON `json:"resume"`
	// Destroy are duplicate candidates of VERSION (left by an up killed
	// mid-create) that up would destroy.
	Destroy []planDropletJSON `json:"destroy"`
	// Unchanged are the project's other droplets, the live one included:
	// up never touches them.
	Unchanged []planDropletJSON `json:"unchanged"`
	// ReservedIP is the project's reserved IP, which up never moves; null
	// when there is none yet (reserved_ip: auto before the first promote).
	ReservedIP *planReservedIPJSON `json:"reserved_ip"`
	// Stack is what a stack deploy would ship; null when provision-only.
	Stack *planStackJSON `json:"stack"`
	// UserData is the rendered cloud-init user_data the droplet would get,
	// with the injected host key's private half replaced by a marker line
	// and any secret value by "[redacted]"; "" when resuming.
	UserData string `json:"user_data"`
	// APICalls are the DigitalOcean API requests up would send after the
	// reads the plan itself made, in order.
	APICalls []planCallJSON `json:"api_calls"`
	// Cost is the project's monthly droplet bill, before and after.
	Cost planCostJSON `json:"cost"`
	// Warnings are problems reading found that would make up fail (a
	// size the API does not list) or that need a decision.
	Warnings []string `json:"warnings"`
}

// planCreateJSON is the droplet up would create.
type planCreateJSON struct {
	// NamePattern is the droplet's name with its deploy ID (6 hex digits
	// drawn by up) as "<id>": "<project>-<version>-<id>".
	NamePattern string        `json:"name_pattern"`
	Region      string        `json:"region"`   // droplet.region
	Size        string        `json:"size"`     // droplet.size (a slug)
	Image       planImageJSON `json:"image"`    // what it boots
	Tags        []string      `json:"tags"`     // besides fleet-deploy:<id> and fleet-hostkey:<its host key>
	SSHKeys     []string      `json:"ssh_keys"` // MD5 fingerprints of droplet.ssh_keys
	// The spec's droplet options as the create request sends them: null
	// (or "" for vpc_uuid) when left to DigitalOcean's default.
	Monitoring *bool  `json:"monitoring"`
	IPv6       *bool  `json:"ipv6"`
	Backups    *bool  `json:"backups"`
	VPCUUID    string `json:"vpc_uuid"`
}

// planImageJSON says what the new droplet boots.
type planImageJSON struct {
	Slug string `json:"slug"` // an image slug; "" for a snapshot
	// SnapshotID and SnapshotName name the snapshot it boots (a bake or
	// a named snapshot); 0 and "" for a slug or a bake still to make.
	SnapshotID   int    `json:"snapshot_id"`
	SnapshotName string `json:"snapshot_name"`
	// Bake is true when droplet.image is bake and no bake of the current
	// template exists: up would run `fleet image bake` first, making
	// BakeName from BakeBase.
	Bake     bool   `json:"bake"`
	BakeName string `json:"bake_name"`
	BakeBase string `json:"bake_base"`
}

// planDropletJSON is an existing droplet of the project.
type planDropletJSON struct {
	ID      int    `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Role    string `json:"role"` // live, candidate, previous or failed
	Size    string `json:"size"` // its size slug
	Region  string `json:"region"`
}

// planReservedIPJSON is the reserved IP as it is (and stays through up).
type planReservedIPJSON struct {
	IP      string `json:"ip"`
	Region  string `json:"region"`
	Droplet string `json:"droplet"` // the live droplet's name; "" when unassigned
}

// planStackJSON is what a stack deploy would do on the new droplet.
type planStackJSON struct {
	From     string   `json:"from"`           // "git tag VERSION" or "the working tree"
	Compose  []string `json:"compose"`        // compose files, merged in order
	Contexts int      `json:"build_contexts"` // build contexts shipped (0 with build: local)
	Build    string   `json:"build"`          // remote or local
	Secrets  []string `json:"secrets"`        // names of the secrets delivered (all present), never values
	DataFrom string   `json:"data_from"`      // live droplet whose data would be restored; "" for none
	Health   []string `json:"health_paths"`   // paths the HTTP gate asks
}

// planCallJSON is one API request.
type planCallJSON struct {
	Method string `json:"method"` // GET, POST, PUT or DELETE
	// Path is the request path; what is not known before up runs is a
	// {placeholder} ({id}, {create action}).
	Path string `json:"path"`
	Poll bool   `json:"poll"` // repeated with backoff until done
	When string `json:"when"` // "" always sent; else the condition
	Why  string `json:"why"`
}

// planCostJSON is the project's monthly bill for droplets, priced from
// GET /v2/sizes (price_monthly of each droplet's own size).
type planCostJSON struct {
	Currency string `json:"currency"` // USD
	// Monthly totals: now, after this up, and after a promote of its
	// candidate (which keeps `keep` previous droplets and prunes the rest).
	MonthlyBefore       float64            `json:"monthly_before"`
	MonthlyAfterUp      float64            `json:"monthly_after_up"`
	MonthlyAfterPromote float64            `json:"monthly_after_promote"`
	Droplets            []planCostLineJSON `json:"droplets"`
	// Unpriced are sizes /v2/sizes does not list; their droplets count 0.
	Unpriced []string `json:"unpriced_sizes"`
}

// planCostLineJSON is one droplet's part.
type planCostLineJSON struct {
	Droplet      string  `json:"droplet"` // name; the name pattern for the new one
	Role         string  `json:"role"`    // "new", or its role now
	Size         string  `json:"size"`
	PriceMonthly float64 `json:"price_monthly"`
	PriceHourly  float64 `json:"price_hourly"`
	// Whether it exists now, after up, after a promote.
	Now          bool `json:"now"`
	AfterUp      bool `json:"after_up"`
	AfterPromote bool `json:"after_promote"`
}

func planRun(ctx context.Context, opts *UpOptions) error {
	p := opts.IO.NewProgress()
	d, err := opts.Deployer(p.Phase)
	if err != nil {
		return err
	}
	plan, err := d.Plan(ctx, opts.Version, deploy.UpOptions{FromWorktree: opts.Worktree})
	p.Stop(err == nil)
	if err != nil {
		return err
	}
	if plan.Calls, err = lockCalls(plan.Project, plan.Calls); err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(opts.IO.Out, toPlanJSON(plan))
	}
	return printPlan(opts.IO.Out, toPlanJSON(plan))
}

// lockCalls wraps up's calls in those of withLock (internal/lock): the
// lock a real up takes, renews and releases, and --plan does not.
func lockCalls(project string, calls []deploy.APICall) ([]deploy.APICall, error) {
	_, fp, err := lock.PublicKey(project)
	if err != nil {
		return nil, err
	}
	key := "/v2/account/keys/" + fp
	out := []deploy.APICall{
		{Method: "POST", Path: "/v2/account/keys", Why: "take the project lock (key fleet-lock:" + project + ")"},
		{Method: "GET", Path: key, When: "if the lock's key is there already", Why: "who holds the lock? (a stale one is deleted and taken over)"},
		{Method: "GET", Path: "/v2/account/keys/{lock id}", When: "every 20 s while up runs", Why: "renew the lock: still ours?"},
		{Method: "PUT", Path: "/v2/account/keys/{lock id}", When: "every 20 s while up runs", Why: "renew the lock"},
	}
	out = append(out, calls...)
	return append(out,
		deploy.APICall{Method: "GET", Path: key, Why: "release the lock: still ours?"},
		deploy.APICall{Method: "DELETE", Path: "/v2/account/keys/{lock id}", Why: "release the lock"},
	), nil
}

func cents(x float64) float64 { return math.Round(x*100) / 100 }

func planDroplet(m *deploy.Member) planDropletJSON {
	return planDropletJSON{ID: m.ID, Name: m.Name, Version: m.Version, Role: string(m.Role), Size: m.Size, Region: m.Region}
}

func toPlanJSON(p *deploy.Plan) *planJSON {
	out := &planJSON{
		Project: p.Project, Version: p.Version, Action: "resume", UserData: p.UserData,
		Destroy: []planDropletJSON{}, Unchanged: []planDropletJSON{}, APICalls: []planCallJSON{}, Warnings: []string{},
	}
	if p.Warnings != nil {
		out.Warnings = p.Warnings
	}
	namePattern := spec.DropletName(p.Project, p.Version, "<id>")
	if c := p.Create; c != nil {
		out.Action = "create"
		out.Create = &planCreateJSON{NamePattern: namePattern, Region: c.Region, Size: c.Size, Tags: c.Tags, SSHKeys: c.SSHKeys,
			Monitoring: c.Monitoring, IPv6: c.IPv6, Backups: c.Backups, VPCUUID: c.VPCUUID}
		if out.Create.Tags == nil {
			out.Create.Tags = []string{}
		}
		if out.Create.SSHKeys == nil {
			out.Create.SSHKeys = []string{}
		}
		img := &out.Create.Image
		img.Slug = c.Image.Slug
		if s := c.Image.Snapshot; s != nil {
			img.SnapshotID, img.SnapshotName = s.ID, s.Name
		}
		if b := c.Image.Bake; b != nil {
			img.Bake, img.BakeName, img.BakeBase = true, b.Name, b.Base
		}
	}
	if p.Resume != nil {
		r := planDroplet(p.Resume)
		out.Resume = &r
	}
	for i := range p.Destroy {
		out.Destroy = append(out.Destroy, planDroplet(&p.Destroy[i]))
	}
	if p.Live != nil {
		out.Unchanged = append(out.Unchanged, planDroplet(p.Live))
	}
	for i := range p.Others {
		out.Unchanged = append(out.Unchanged, planDroplet(&p.Others[i]))
	}
	if r := p.ReservedIP; r != nil {
		out.ReservedIP = &planReservedIPJSON{IP: r.IP, Region: r.Region}
		if p.Live != nil {
			out.ReservedIP.Droplet = p.Live.Name
		}
	}
	if s := p.Stack; s != nil {
		out.Stack = &planStackJSON{From: s.From, Compose: nonNil(s.Compose), Contexts: s.Contexts, Build: s.Build, Secrets: nonNil(s.Secrets), DataFrom: s.DataFrom, Health: nonNil(s.Health)}
	}
	for _, c := range p.Calls {
		out.APICalls = append(out.APICalls, planCallJSON{Method: c.Method, Path: c.Path, Poll: c.Poll, When: c.When, Why: c.Why})
	}
	out.Cost = planCostJSON{
		Currency: "USD", MonthlyBefore: cents(p.Cost.Before), MonthlyAfterUp: cents(p.Cost.AfterUp), MonthlyAfterPromote: cents(p.Cost.AfterPromote),
		Droplets: []planCostLineJSON{}, Unpriced: nonNil(p.Cost.Unpriced),
	}
	for _, l := range p.Cost.Lines {
		name := l.Droplet
		if name == "" {
			name = namePattern
		}
		out.Cost.Droplets = append(out.Cost.Droplets, planCostLineJSON{
			Droplet: name, Role: l.Role, Size: l.Size, PriceMonthly: l.Monthly, PriceHourly: l.Hourly,
			Now: l.Now, AfterUp: l.AfterUp, AfterPromote: l.AfterPromote,
		})
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func dollars(x float64) string { return fmt.Sprintf("$%.2f", cents(x)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// printPlan prints the plan for people: what changes, what does not, the
// API calls, the cost, then user_data.
func printPlan(w io.Writer, p *planJSON) error {
	fmt.Fprintf(w, "plan for fleet up %s (project %s): nothing was changed, no lock was taken\n\n", p.Version, p.Project)
	if c := p.Create; c != nil {
		fmt.Fprintf(w, "create    %s\n", c.NamePattern)
		img := c.Image.Slug
		switch {
		case c.Image.Bake:
			img = fmt.Sprintf("%s, baked first from %s (no bake of the current template yet)", c.Image.BakeName, c.Image.BakeBase)
		case c.Image.SnapshotName != "":
			img = fmt.Sprintf("snapshot %s (image %d)", c.Image.SnapshotName, c.Image.SnapshotID)
		}
		fmt.Fprintf(w, "  region  %s\n  size    %s\n  image   %s\n", c.Region, c.Size, img)
		fmt.Fprintf(w, "  tags    %s (and fleet-deploy:<id>)\n", strings.Join(c.Tags, " "))
		if len(c.SSHKeys) > 0 {
			fmt.Fprintf(w, "  keys    %s\n", strings.Join(c.SSHKeys, " "))
		}
	}
	if r := p.Resume; r != nil {
		fmt.Fprintf(w, "resume    %s (left by an interrupted up of %s): adopt and finish it\n", r.Name, r.Version)
	}
	for _, m := range p.Destroy {
		fmt.Fprintf(w, "destroy   %s (%d): a duplicate candidate of %s\n", m.Name, m.ID, m.Version)
	}
	if s := p.Stack; s != nil {
		fmt.Fprintf(w, "stack     from %s: %s, build %s", s.From, strings.Join(s.Compose, " + "), s.Build)
		if s.Contexts > 0 {
			fmt.Fprintf(w, " (%d build contexts shipped)", s.Contexts)
		}
		fmt.Fprintln(w)
		if len(s.Secrets) > 0 {
			fmt.Fprintf(w, "  secrets %s (all present)\n", strings.Join(s.Secrets, ", "))
		}
		if s.DataFrom != "" {
			fmt.Fprintf(w, "  data    restored from live %s\n", s.DataFrom)
		}
		if len(s.Health) > 0 {
			fmt.Fprintf(w, "  health  %s\n", strings.Join(s.Health, " "))
		}
	}
	for _, m := range p.Unchanged {
		fmt.Fprintf(w, "keep      %s (%s, %s)\n", m.Name, m.Role, m.Size)
	}
	switch r := p.ReservedIP; {
	case r == nil:
		fmt.Fprintln(w, "reserved IP: none yet (the first promote reserves one)")
	case r.Droplet != "":
		fmt.Fprintf(w, "reserved IP: %s (%s) stays on %s\n", r.IP, r.Region, r.Droplet)
	default:
		fmt.Fprintf(w, "reserved IP: %s (%s), unassigned, stays so\n", r.IP, r.Region)
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}

	fmt.Fprintln(w, "\nAPI calls up would make, in order:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range p.APICalls {
		why := c.Why
		if c.Poll {
			why += " (polled)"
		}
		if c.When != "" {
			why += " [" + c.When + "]"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Method, c.Path, why)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nmonthly cost (%s, price_monthly of each size from /v2/sizes):\n", p.Cost.Currency)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  DROPLET\tROLE\tSIZE\tMONTHLY\tNOW\tAFTER UP\tAFTER PROMOTE")
	for _, l := range p.Cost.Droplets {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Droplet, l.Role, l.Size, dollars(l.PriceMonthly), yesNo(l.Now), yesNo(l.AfterUp), yesNo(l.AfterPromote))
	}
	fmt.Fprintf(tw, "  total\t\t\t\t%s\t%s\t%s\n", dollars(p.Cost.MonthlyBefore), dollars(p.Cost.MonthlyAfterUp), dollars(p.Cost.MonthlyAfterPromote))
	tw.Flush()
	if len(p.Cost.Unpriced) > 0 {
		fmt.Fprintf(w, "  not priced (not listed by /v2/sizes): %s\n", strings.Join(p.Cost.Unpriced, ", "))
	}
	fmt.Fprintf(w, "cost: %s/month now, %s after up, %s after promote\n", dollars(p.Cost.MonthlyBefore), dollars(p.Cost.MonthlyAfterUp), dollars(p.Cost.MonthlyAfterPromote))

	if p.UserData != "" {
		fmt.Fprintln(w, "\nuser_data (the host key and secrets redacted):")
		for _, l := range strings.Split(strings.TrimRight(p.UserData, "\n"), "\n") {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return nil
}
