package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// The incremental sync (issue 12 item 3). A stack with stack.data.state
// says what data a droplet holds as an id; fleet passes the receiving
// droplet's id to the sending droplet's backup as FLEET_BASE, and the
// backup may then send only what changed since (the stack decides how,
// and checks it end to end). fleet's own checks are unchanged: the
// stream's sha256 at all three points. An unknown or stale base costs a
// full archive, never a wrong result.

// BaseMismatchError is a restore that refused a delta because the base it
// was made against is not what the droplet holds (exit 4).
type BaseMismatchError struct {
	Droplet string
	Detail  string
}

func (e *BaseMismatchError) Error() string {
	return fmt.Sprintf("%s does not hold the data the delta was made against: %s", e.Droplet, e.Detail)
}

// stateIDRE bounds what fleet passes on as FLEET_BASE: an id, not a
// command line.
var stateIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$`)

// maxStateOutput bounds what a state command may print.
const maxStateOutput = 4096

// stateOf asks c which data it holds: the id, or "" when the stack has
// no state command, the droplet holds none, or the answer is unusable.
// Never fatal except for ctx: a base is an optimisation.
func (d *Deployer) stateOf(ctx context.Context, c *remote.Client, name string, out outputs) (string, error) {
	data := d.Spec.Stack.Data
	if data == nil || data.State == "" {
		return "", nil
	}
	so := &limitedBuffer{max: maxStateOutput}
	if err := c.Run(ctx, dataCmd(d.Spec.Project, data.State), nil, so, out.stderr); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		d.warn("asking %s which data it holds: %v; sending a full archive", name, err)
		return "", nil
	}
	id := strings.TrimSpace(lastLine(so.String()))
	switch {
	case id == "" || id == "none":
		return "", nil
	case so.over || !stateIDRE.MatchString(id):
		d.warn("%s's stack.data.state printed %q, not an id; sending a full archive", name, short(id))
		return "", nil
	}
	return id, nil
}

// transferDelta is transfer with the receiving droplet's base: a delta
// when both sides know it, else (or when the restore refuses it) a full
// archive.
func (d *Deployer) transferDelta(ctx context.Context, from *remote.Client, fromName string, to *remote.Client, toName string, out outputs) (*Transfer, error) {
	start := time.Now()
	base, known := d.synced[to]
	delete(d.synced, to) // one use: a later transfer asks again
	if !known {
		var err error
		if base, err = d.stateOf(ctx, to, toName, out); err != nil {
			return nil, err
		}
	}
	t, err := d.transferBase(ctx, from, fromName, to, toName, base, out)
	var bm *BaseMismatchError
	if base == "" || !errors.As(err, &bm) {
		return t, err
	}
	d.step("%s; sending a full archive", bm.Error())
	t, err = d.transferBase(ctx, from, fromName, to, toName, "", out)
	if t != nil {
		t.Duration = time.Since(start)
	}
	return t, err
}

// preSync carries from's data to the candidate while from is still live
// and writable, so that the final sync, inside the freeze, carries only
// what changed in the seconds since. Only for stacks with a state command
// (others would copy everything twice). A failure is not fatal: the final
// sync carries whatever the pre-sync did not, unless the candidate cannot
// read the data at all (better said before the freeze). It returns the
// transfer it made, nil when none finished.
func (d *Deployer) preSync(ctx context.Context, from *remote.Client, fromName string, to *remote.Client, toName string, out outputs) (*Transfer, error) {
	data := d.Spec.Stack.Data
	if data == nil || data.State == "" || from == nil {
		return nil, nil
	}
	d.step("pre-sync of %s onto %s while the site stays writable", fromName, toName)
	t, err := d.transferDelta(ctx, from, fromName, to, toName, out)
	if err == nil {
		fmt.Fprintf(d.log(), "pre-sync: %d bytes in %.2f s\n", t.Bytes, t.Duration.Seconds())
		// Asked now, while the site is writable: the final sync, inside
		// the freeze, need not. Nothing restores onto to in between, and
		// a stale answer costs a full archive (exit 4), never wrong data.
		base, serr := d.stateOf(ctx, to, toName, out)
		if serr != nil {
			return nil, serr
		}
		if base != "" {
			if d.synced == nil {
				d.synced = map[*remote.Client]string{}
			}
			d.synced[to] = base
		}
		return t, nil
	}
	var inc *IncompatibleDataError
	if errors.As(err, &inc) || ctx.Err() != nil {
		return nil, err
	}
	d.warn("pre-sync of %s onto %s failed: %v; the final sync carries it all", fromName, toName, err)
	return nil, nil
}

// limitedBuffer keeps up to max bytes and notes whether more came.
type limitedBuffer struct {
	b    strings.Builder
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room < len(p) {
		l.over = true
		if room > 0 {
			l.b.Write(p[:room])
		}
		return len(p), nil
	}
	l.b.Write(p)
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.b.String() }
