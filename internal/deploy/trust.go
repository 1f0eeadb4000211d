package deploy

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"golang.org/x/crypto/ssh"
)

// HostKeyPrefix starts the tag that records a droplet's SSH host key in
// the cloud, where every holder of the token reads it: fleet trusts a
// droplet's key iff it is recorded there (known_hosts is only a cache).
const HostKeyPrefix = "fleet-hostkey:"

// HostKeyTag is the tag recording key: HostKeyPrefix and the lowercase
// unpadded base32 of the SHA-256 of its wire form.
func HostKeyTag(key ssh.PublicKey) string { return HostKeyPrefix + remote.HostKeyID(key) }

// recordedKeys are the HostKeyIDs a droplet's tags record.
func recordedKeys(tags []string) []string {
	var ids []string
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, HostKeyPrefix); ok && id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// Dial connects to dr verified by the host keys its tags record (read
// from the cloud with dr), or, for a droplet made before fleet recorded
// them, by the local pin.
func (r *Remote) Dial(ctx context.Context, dr *cloud.Droplet, wait time.Duration) (*remote.Client, error) {
	return r.Dialer.DialRecorded(ctx, dr.Name, dr.PublicIPv4, wait, recordedKeys(dr.Tags))
}

// rotateHostKey replaces the host key of dr (user_data, and so the key
// fleet injected, stays readable from the metadata service) over the
// verified connection c: tag the new key, swap it in, verify it by
// reconnecting, then untag every other. Interrupted, dr keeps both tags
// and presents one of them; a re-run rotates again and converges. It
// returns the new connection and updates dr.Tags.
func (d *Deployer) rotateHostKey(ctx context.Context, c *remote.Client, dr *cloud.Droplet) (*remote.Client, error) {
	d.step("rotating the host key of %s", dr.Name)
	key, err := c.RotateHostKey(ctx, func(keys ...ssh.PublicKey) error {
		return d.tagHostKey(ctx, dr, keys[len(keys)-1])
	})
	c.Close()
	if err != nil {
		return nil, err
	}
	nc, err := d.reconnectRotated(ctx, dr, key)
	if err != nil {
		return nil, err
	}
	if err := d.untagHostKeys(ctx, dr, HostKeyTag(key)); err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

// reconnectRotated dials dr until it presents key: sshd reloads its keys
// asynchronously, so the first connections may still see the old one.
func (d *Deployer) reconnectRotated(ctx context.Context, dr *cloud.Droplet, key ssh.PublicKey) (*remote.Client, error) {
	const tries = 5
	for i := 1; ; i++ {
		nc, err := d.Remote.Dial(ctx, dr, d.Remote.SSHWait)
		if err != nil {
			return nil, fmt.Errorf("reconnecting with the rotated host key: %w", err)
		}
		if bytes.Equal(nc.HostKey().Marshal(), key.Marshal()) {
			return nc, nil
		}
		nc.Close()
		if i == tries {
			return nil, fmt.Errorf("%s still presents its old host key %d connections after the rotation", dr.Name, tries)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(i) * 500 * time.Millisecond):
		}
	}
}

// tagHostKey records key on dr before dr may present it.
func (d *Deployer) tagHostKey(ctx context.Context, dr *cloud.Droplet, key ssh.PublicKey) error {
	tag := HostKeyTag(key)
	if err := d.Cloud.Tag(ctx, dr.ID, tag); err != nil {
		return fmt.Errorf("recording the next host key of %s: %w", dr.Name, err)
	}
	dr.Tags = append(slices.Clip(dr.Tags), tag)
	return nil
}

// untagHostKeys drops every host key tag of dr but keep.
func (d *Deployer) untagHostKeys(ctx context.Context, dr *cloud.Droplet, keep string) error {
	var tags []string
	for _, t := range dr.Tags {
		if strings.HasPrefix(t, HostKeyPrefix) && t != keep {
			if err := d.Cloud.Untag(ctx, dr.ID, t); err != nil {
				return fmt.Errorf("dropping the old host key of %s: %w", dr.Name, err)
			}
			continue
		}
		tags = append(tags, t)
	}
	dr.Tags = tags
	return nil
}
