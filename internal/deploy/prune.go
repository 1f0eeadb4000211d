package deploy

import (
	"context"
	"fmt"
)

// Prune destroys all but the keep newest previous droplets, and every
// failed droplet: neither is a rollback target any more.
func (d *Deployer) Prune(ctx context.Context, keep int) ([]Member, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	d.keepDraining(ctx, st, keep) // forward.go
	return d.prune(ctx, st, keep)
}

func (d *Deployer) prune(ctx context.Context, st *State, keep int) ([]Member, error) {
	var done []Member
	for _, m := range d.pruneTargets(st, keep) {
		if interrupted(ctx) {
			return done, context.Canceled
		}
		d.step("destroying %s (%s)", m.Name, m.Role)
		if err := d.Cloud.DeleteDroplet(ctx, m.ID); err != nil {
			return done, err
		}
		d.forget(m.Name)
		done = append(done, m)
	}
	return done, nil
}

// pruneTargets is what prune destroys in st (`up --plan` prices the rest).
func (d *Deployer) pruneTargets(st *State, keep int) []Member {
	var doomed []Member
	kept := 0
	for _, m := range st.Members {
		if (m.Role == RolePrevious || m.Role == RoleFailed) && d.keepForwarding(m) { // forward.go
			continue
		}
		switch m.Role {
		case RolePrevious:
			if kept < keep {
				kept++
				continue
			}
			doomed = append(doomed, m)
		case RoleFailed:
			if m.promoted() || !d.isNewest(st, m) {
				doomed = append(doomed, m)
			}
		}
	}
	return doomed
}

// forget drops a destroyed droplet's pinned host key; the name is never
// reused, so a leftover pin is only clutter.
func (d *Deployer) forget(name string) {
	if d.Remote != nil && d.Remote.Dialer != nil {
		_ = d.Remote.Dialer.KnownHosts.Forget(name)
	}
}

// isNewest reports whether m is the newest droplet: a failed candidate
// that is the last step is kept for inspection until rollback removes it.
func (d *Deployer) isNewest(st *State, m Member) bool {
	return len(st.Members) > 0 && st.Members[0].ID == m.ID
}

// Destroy destroys the named droplets. Every name is checked before any
// droplet is touched; the live droplet needs force.
func (d *Deployer) Destroy(ctx context.Context, names []string, force bool) ([]Member, error) {
	st, err := d.State(ctx)
	if err != nil {
		return nil, err
	}
	var targets []Member
	for _, n := range names {
		m := st.Find(n)
		if m == nil {
			return nil, &ConflictError{Msg: fmt.Sprintf("no droplet %q in project %s (droplets: %v)", n, st.Project, st.Names())}
		}
		if m.Role == RoleLive && !force {
			return nil, &ConflictError{Msg: fmt.Sprintf("%s is live (it holds %s): promote or roll back first, or pass --force to destroy it anyway", m.Name, st.ReservedIP.IP)}
		}
		targets = append(targets, *m)
	}
	var done []Member
	for _, m := range targets {
		d.step("destroying %s", m.Name)
		if err := d.Cloud.DeleteDroplet(ctx, m.ID); err != nil {
			return done, err
		}
		d.forget(m.Name)
		done = append(done, m)
	}
	return done, nil
}
