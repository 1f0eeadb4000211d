package localcloud

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Droplet power and rename on the Docker backend (Powerer, Renamer): a
// droplet's power is its container's. shutdown is `docker stop` (the
// image's STOPSIGNAL, then SIGKILL after the container's stop timeout),
// power_off `docker kill` (SIGKILL, the power cut), power_on `docker
// start`, reboot `docker restart`. Stopped containers stay stopped (their
// restart policy is unless-stopped, and both stop and kill count as
// stopping them). Each returns once the container runs, or has stopped.

// powerTimeout bounds a power change (docker stop waits the container's
// stop timeout, 20 s, before it kills).
const powerTimeout = 2 * time.Minute

// container is the name of droplet id's container.
func (b *DockerBackend) container(ctx context.Context, id int) (string, error) {
	names, err := b.containers(ctx, id)
	if err != nil {
		return "", err
	}
	if len(names) == 0 {
		return "", fmt.Errorf("droplet %d has no container", id)
	}
	return names[0], nil
}

// PowerOff stops droplet id's container: gracefully (docker stop) or not
// (docker kill). A stopped container is not an error.
func (b *DockerBackend) PowerOff(ctx context.Context, id int, graceful bool) error {
	ctx, cancel := context.WithTimeout(ctx, powerTimeout)
	defer cancel()
	c, err := b.container(ctx, id)
	if err != nil {
		return err
	}
	verb := "kill"
	if graceful {
		verb = "stop"
	}
	if _, err := docker(ctx, nil, verb, c); err != nil && !isNotRunning(err) {
		return fmt.Errorf("powering off %s: %w", c, err)
	}
	b.logf("%s: %s (droplet %d)", c, map[bool]string{true: "shut down", false: "powered off"}[graceful], id)
	return waitRunning(ctx, c, false)
}

// PowerOn starts m's stopped container.
func (b *DockerBackend) PowerOn(ctx context.Context, m Machine) error {
	ctx, cancel := context.WithTimeout(ctx, powerTimeout)
	defer cancel()
	c, err := b.container(ctx, m.ID)
	if err != nil {
		return err
	}
	// A container made before VPCs joins its VPC at its next power on.
	if err := b.connectVPC(ctx, c, m); err != nil {
		return err
	}
	if _, err := docker(ctx, nil, "start", c); err != nil {
		return fmt.Errorf("powering on %s: %w", c, err)
	}
	b.logf("%s: powered on (droplet %d)", c, m.ID)
	return waitRunning(ctx, c, true)
}

// Reboot restarts m's container (docker restart: a graceful stop, then a
// start; a stopped container just starts).
func (b *DockerBackend) Reboot(ctx context.Context, m Machine) error {
	ctx, cancel := context.WithTimeout(ctx, powerTimeout)
	defer cancel()
	c, err := b.container(ctx, m.ID)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, nil, "restart", c); err != nil {
		return fmt.Errorf("rebooting %s: %w", c, err)
	}
	b.logf("%s: rebooted (droplet %d)", c, m.ID)
	return waitRunning(ctx, c, true)
}

// Rename renames droplet id's container to fleet-<name>, so that its old
// name is free for a new droplet. (Its fleet.droplet.name label, which
// Docker cannot change, keeps the name it was created with.)
func (b *DockerBackend) Rename(ctx context.Context, id int, name string) error {
	if !dockerNameRE.MatchString(name) {
		return fmt.Errorf("droplet name %q cannot name a container", name)
	}
	c, err := b.container(ctx, id)
	if err != nil {
		return err
	}
	if c == b.ContainerName(name) {
		return nil
	}
	if _, err := docker(ctx, nil, "rename", c, b.ContainerName(name)); err != nil {
		return fmt.Errorf("renaming %s: %w", c, err)
	}
	return nil
}

// waitRunning polls container c until it runs (or has stopped, if not
// running), backing off from 100 ms to 1 s, until ctx is done.
func waitRunning(ctx context.Context, c string, running bool) error {
	delay := 100 * time.Millisecond
	for {
		out, err := docker(ctx, nil, "inspect", "--format", "{{.State.Running}}", c)
		if err != nil {
			return fmt.Errorf("container %s: %w", c, err)
		}
		if out == fmt.Sprint(running) {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("container %s: still running=%v: %w", c, !running, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*3/2, time.Second)
	}
}

// isNotRunning says whether err is Docker's "container ... is not running".
func isNotRunning(err error) bool {
	var de *dockerError
	return errors.As(err, &de) && strings.Contains(de.stderr, "is not running")
}
