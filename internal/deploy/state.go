// Package deploy is fleet's lifecycle: up, promote, rollback, prune and
// destroy, over the cloud seam. It keeps no state of its own: droplet tags
// and the reserved IP assignment are the truth (see DEVELOPERS.md).
package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// Tags fleet puts on droplets. DO allows only [A-Za-z0-9_:-] in tags.
const (
	TagPromoted      = "fleet-promoted"
	TagFailed        = "fleet-failed"
	versionTagPrefix = "fleet-version:"
	deployTagPrefix  = "fleet-deploy:"
)

// ProjectTag marks every droplet of a project.
func ProjectTag(project string) string { return "fleet:" + project }

// VersionTag records the version a droplet runs.
func VersionTag(version string) string { return versionTagPrefix + spec.VersionTag(version) }

// DeployTag is unique to one `fleet up`.
func DeployTag(id string) string { return deployTagPrefix + id }

// Role of a droplet, derived from its tags and the reserved IP.
type Role string

const (
	RoleCandidate Role = "candidate"
	RoleLive      Role = "live"
	RolePrevious  Role = "previous"
	RoleFailed    Role = "failed"
)

// Member is a droplet of the project with its role.
type Member struct {
	cloud.Droplet
	Version string
	Role    Role
}

func (m *Member) promoted() bool { return m.HasTag(TagPromoted) }

// State is what the cloud says about a project.
type State struct {
	Project    string
	ReservedIP *cloud.ReservedIP // nil: none yet (reserved_ip: auto, never promoted)
	Members    []Member          // newest first
	// Bakes are droplets `fleet image bake` left (TagBake): no members,
	// they have no role in the lifecycle.
	Bakes []cloud.Droplet
}

// Live returns the live droplet, or nil.
func (s *State) Live() *Member { return s.first(RoleLive) }

// Candidate returns the newest candidate, or nil.
func (s *State) Candidate() *Member { return s.first(RoleCandidate) }

// Previous returns the newest previous droplet, or nil.
func (s *State) Previous() *Member { return s.first(RolePrevious) }

func (s *State) first(r Role) *Member {
	for i := range s.Members {
		if s.Members[i].Role == r {
			return &s.Members[i]
		}
	}
	return nil
}

// Find returns the member named name (or with that numeric ID).
func (s *State) Find(name string) *Member {
	for i := range s.Members {
		if s.Members[i].Name == name || fmt.Sprint(s.Members[i].ID) == name {
			return &s.Members[i]
		}
	}
	return nil
}

// Names lists the members' names, for error messages.
func (s *State) Names() []string {
	var n []string
	for _, m := range s.Members {
		n = append(n, m.Name)
	}
	return n
}

// State reads the project's droplets and reserved IP and derives roles.
func (d *Deployer) State(ctx context.Context) (*State, error) {
	// The reserved IPs first: the droplets' listing then tells a droplet's
	// own address from its reserved IP without listing them again.
	st := &State{Project: d.Spec.Project}
	var all []cloud.ReservedIP
	if ip := d.Spec.ReservedIP; ip != "auto" {
		r, err := d.Cloud.ReservedIP(ctx, ip)
		if errors.Is(err, cloud.ErrNotFound) {
			return nil, &ConfigError{Msg: fmt.Sprintf("reserved_ip %s is not a reserved IP of this account: reserve it first, or set reserved_ip: auto", ip)}
		}
		if err != nil {
			return nil, err
		}
		st.ReservedIP = r
	} else {
		var err error
		if all, err = d.Cloud.ListReservedIPs(ctx); err != nil {
			return nil, err
		}
	}
	ds, err := d.Cloud.ListByTag(ctx, ProjectTag(d.Spec.Project))
	if err != nil {
		return nil, err
	}
	ids := map[int]bool{}
	for _, dr := range ds {
		ids[dr.ID] = true
	}
	for i := range all {
		if ids[all[i].DropletID] {
			st.ReservedIP = &all[i]
			break
		}
	}
	for _, dr := range ds {
		if dr.HasTag(TagBake) {
			st.Bakes = append(st.Bakes, dr)
			continue
		}
		m := Member{Droplet: dr}
		for _, t := range dr.Tags {
			if v, ok := strings.CutPrefix(t, versionTagPrefix); ok {
				m.Version = spec.VersionFromTag(v)
			}
		}
		switch {
		case st.ReservedIP != nil && st.ReservedIP.DropletID == dr.ID:
			m.Role = RoleLive
		case dr.HasTag(TagFailed):
			m.Role = RoleFailed
		case dr.HasTag(TagPromoted):
			m.Role = RolePrevious
		default:
			m.Role = RoleCandidate
		}
		st.Members = append(st.Members, m)
	}
	sort.SliceStable(st.Members, func(i, j int) bool {
		a, b := st.Members[i], st.Members[j]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID > b.ID
	})
	return st, nil
}
