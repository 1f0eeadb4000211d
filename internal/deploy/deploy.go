package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// Deployer runs the lifecycle of one spec against one cloud.
type Deployer struct {
	Cloud cloud.Cloud
	Spec  *spec.Spec
	// Step is told each phase as it starts (progress output); may be nil.
	Step func(phase string)
	// NewID makes deploy IDs; nil uses 6 random hex digits.
	NewID func() string
	// Remote reaches droplets over SSH, for stack deploys.
	Remote *Remote
	// Warnings gets what went wrong but did not stop the command (nil:
	// the remote log, if any).
	Warnings io.Writer

	phases     []Phase
	phaseStart time.Time
	// synced is what a pre-sync left a droplet holding (delta.go): the
	// final sync's base, known without asking inside the freeze.
	synced map[*remote.Client]string

	forwardingFrom map[int]bool // droplets this run left forwarding (forward.go)
}

func (d *Deployer) step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	now := time.Now()
	if n := len(d.phases); n > 0 && d.phases[n-1].Duration == 0 {
		d.phases[n-1].Duration = now.Sub(d.phaseStart)
	}
	d.phases = append(d.phases, Phase{Name: msg})
	d.phaseStart = now
	if d.Step != nil {
		d.Step(msg)
	}
}

// Phase is one step of a command and how long it took.
type Phase struct {
	Name     string
	Duration time.Duration
}

// finishPhases closes the last phase and returns them all.
func (d *Deployer) finishPhases() []Phase {
	if n := len(d.phases); n > 0 && d.phases[n-1].Duration == 0 {
		d.phases[n-1].Duration = time.Since(d.phaseStart)
	}
	return d.phases
}

func (d *Deployer) timeouts() cloud.Timeouts {
	t := d.Spec.Timeouts
	return cloud.Timeouts{Create: t.Create, Active: t.Active, Assign: t.Assign}
}

func newID() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
