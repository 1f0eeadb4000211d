package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
)

// Moves of the reserved IP are read back, never guessed. An assign that
// errors (a timeout, a lost connection, Ctrl-C) may have taken effect, or
// may still take effect while its action runs: after any error fleet waits
// for the IP's actions to finish, with a fresh context, and reads where the
// IP points. Only that read decides between "finish" and "undo".

// Tags that make an interrupted move resumable.
const (
	// TagRollbackTarget marks the droplet a rollback is moving the IP to,
	// set before the move: a re-run finds it and finishes or redoes.
	TagRollbackTarget = "fleet-rollback-target"
	// reservedIPTagPrefix records, on the candidate of a first promote, the
	// address reserved for it ("." as "_"), set as soon as the API made it:
	// a re-run reuses it instead of reserving a second one.
	reservedIPTagPrefix = "fleet-reserved-ip:"
)

// ReservedIPTag is the tag recording a reserved address on a droplet.
func ReservedIPTag(ip string) string {
	return reservedIPTagPrefix + strings.ReplaceAll(ip, ".", "_")
}

// recordedIP is the address a ReservedIPTag on m names, or "".
func recordedIP(m *Member) string {
	for _, t := range m.Tags {
		if v, ok := strings.CutPrefix(t, reservedIPTagPrefix); ok {
			return strings.ReplaceAll(v, "_", ".")
		}
	}
	return ""
}

// MoveUnknownError is a move whose outcome could not be read back: fleet
// cannot tell where the reserved IP points, so it changed nothing else.
type MoveUnknownError struct {
	IP      string
	Target  string
	Cause   error // why the move itself failed
	ReadErr error // why reading it back failed
}

func (e *MoveUnknownError) Error() string {
	return fmt.Sprintf("moving %s to %s: %v\nreading the reserved IP back also failed (%v): fleet cannot tell whether it moved, so it changed nothing else; run `fleet status`, then re-run the command: it finishes or undoes the move", e.IP, e.Target, e.Cause, e.ReadErr)
}

func (e *MoveUnknownError) Unwrap() error { return e.Cause }

// settleBudget bounds the read-back after a failed move: the action may
// need the assign timeout to finish, and the reads need some slack.
func (d *Deployer) settleBudget() time.Duration {
	return d.Spec.Timeouts.Assign + 30*time.Second
}

// move points ip at target. moved is the truth read back from the API:
// true with a non-nil err never happens; false with a nil err never
// happens. An unreadable outcome is a *MoveUnknownError.
// idle: the caller waited for target to be idle before its freeze.
func (d *Deployer) move(ctx context.Context, ip string, target *Member, idle bool) (moved bool, err error) {
	t := d.timeouts()
	t.Idle = idle
	err = d.Cloud.Assign(ctx, ip, target.ID, t)
	if err == nil {
		return true, nil
	}
	holder, rerr := d.settle(ctx, ip)
	if rerr != nil {
		return false, &MoveUnknownError{IP: ip, Target: target.Name, Cause: err, ReadErr: rerr}
	}
	if holder == target.ID {
		d.warn("moving %s reported %v, but reading it back shows it on %s: the move took effect", ip, err, target.Name)
		return true, nil
	}
	return false, &NotMovedError{IP: ip, Holder: holder, Err: err}
}

// settle reads where ip points once its actions have finished, on a
// context of its own: the command's may be cancelled already.
func (d *Deployer) settle(ctx context.Context, ip string) (int, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.settleBudget())
	defer cancel()
	r, err := d.Cloud.Settle(sctx, ip, cloud.Timeouts{Assign: d.settleBudget()})
	if err != nil {
		return 0, err
	}
	return r.DropletID, nil
}

// NotMovedError is a move that failed, read back: the IP is where it was.
type NotMovedError struct {
	IP     string
	Holder int // droplet the IP points at (0: none)
	Err    error
}

func (e *NotMovedError) Error() string {
	return fmt.Sprintf("%v (read back: %s did not move)", e.Err, e.IP)
}

func (e *NotMovedError) Unwrap() error { return e.Err }

// reserve gives cand a reserved IP on a first promote (reserved_ip:
// auto). An address an interrupted promote already reserved for any
// droplet of the project is reused; a new one is recorded on cand as soon
// as it exists.
func (d *Deployer) reserve(ctx context.Context, st *State, cand *Member) (ip string, created bool, err error) {
	for i := range st.Members {
		rec := recordedIP(&st.Members[i])
		if rec == "" {
			continue
		}
		r, err := d.Cloud.ReservedIP(ctx, rec)
		if errors.Is(err, cloud.ErrNotFound) {
			continue // released since: not ours any more
		}
		if err != nil {
			return "", false, err
		}
		if r.DropletID != 0 && r.DropletID != cand.ID && st.member(r.DropletID) == nil {
			continue // someone else uses it now
		}
		if err := checkRegion(r, cand); err != nil {
			return "", false, err
		}
		d.step("reusing %s, reserved by an earlier promote", rec)
		if r.DropletID != cand.ID {
			if _, err := d.move(ctx, rec, cand, false); err != nil {
				return "", false, err
			}
		}
		return rec, true, nil
	}
	d.step("reserving an IP for %s", cand.Name)
	var made string
	record := func(ip string) error {
		made = ip
		// Recorded before anything else can fail, even on Ctrl-C: a
		// re-run finds it.
		tctx, cancel := detached(ctx)
		defer cancel()
		return d.Cloud.Tag(tctx, cand.ID, ReservedIPTag(ip))
	}
	r, err := d.Cloud.CreateReservedIP(ctx, cand.ID, d.timeouts(), record)
	if err == nil {
		return r.IP, true, nil
	}
	if made == "" {
		return "", false, err
	}
	holder, rerr := d.settle(ctx, made)
	switch {
	case rerr != nil:
		return "", false, &MoveUnknownError{IP: made, Target: cand.Name, Cause: err, ReadErr: rerr}
	case holder == cand.ID:
		return made, true, nil
	}
	return "", false, fmt.Errorf("%w\n%s was reserved for %s but is not assigned to it; re-running `fleet promote` reuses it", err, made, cand.Name)
}

// checkRegion refuses a move the API would refuse (422): the reserved IP
// r to target in another region. Checked before anything changes.
func checkRegion(r *cloud.ReservedIP, target *Member) error {
	if r == nil || r.Region == "" || target.Region == "" || r.Region == target.Region {
		return nil
	}
	return &RegionError{IP: r.IP, IPRegion: r.Region, Droplet: target.Name, DRegion: target.Region,
		Fix: fmt.Sprintf("droplets that can hold %s are made with droplet.region: %s", r.IP, r.Region)}
}

// member returns the member with droplet id, or nil.
func (s *State) member(id int) *Member {
	for i := range s.Members {
		if s.Members[i].ID == id {
			return &s.Members[i]
		}
	}
	return nil
}
