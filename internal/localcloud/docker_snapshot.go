package localcloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Snapshots on the Docker backend (Snapshotter). A snapshot of a droplet
// is its container's filesystem, `docker commit`ed as the image
// fleet-snapshot:<id>, and a copy of its /var/lib/docker volume in the
// volume fleet-snapshot-<id>-docker. The volume carries the image's
// record as labels (fleet.image.id, name, distribution, regions, created,
// min-disk, droplet); the image carries fleet.image.id and the copied
// bytes. The image is committed last: a snapshot is complete, and listed,
// once both exist, so one interrupted midway is never listed, and
// DeleteImage removes what it left.
//
// Images belong to the engine, not to one local cloud: every local cloud
// on it lists them (tests of different instances share a bake), and ids
// are random 9-digit numbers checked against the engine's.
//
// A droplet made from a snapshot is created from its image, and its new
// /var/lib/docker volume gets a copy of the snapshot's volume before the
// container exists (so a Boot retried after a crash copies again).
// Copies run in a short-lived container of the droplet image
// (fleet-snapshot-<id>-copy) with `cp -a`, which keeps the inner engine's
// overlay whiteouts and xattrs (CAP_SYS_ADMIN, for trusted.* ones).

// The labels of a snapshot's volume and image.
const (
	labelImageID      = "fleet.image.id"
	labelImageName    = "fleet.image.name"
	labelImageDist    = "fleet.image.distribution"
	labelImageRegions = "fleet.image.regions"
	labelImageCreated = "fleet.image.created"
	labelImageMinDisk = "fleet.image.min-disk"
	labelImageDroplet = "fleet.image.droplet"
	// labelImageInstance is the local cloud whose droplet the snapshot was
	// taken of: droplet ids are per local cloud, snapshots engine-wide.
	labelImageInstance = "fleet.image.instance"
	labelImageVolBytes = "fleet.image.volume-bytes"

	snapshotRepo = "fleet-snapshot"
	// snapshotTimeout bounds a Snapshot and a copy for a create.
	snapshotTimeout = 30 * time.Minute
	// cleanupTimeout bounds removing what a failed snapshot left.
	cleanupTimeout = 2 * time.Minute
)

func snapshotImageRef(id int) string { return snapshotRepo + ":" + strconv.Itoa(id) }
func snapshotVolume(id int) string   { return snapshotRepo + "-" + strconv.Itoa(id) + "-docker" }
func snapshotHelper(id int) string   { return snapshotRepo + "-" + strconv.Itoa(id) + "-copy" }

// errNotLocal is the 422 for a distribution image the backend cannot boot.
func errNotLocal(slug string) error {
	//lint:ignore ST1005 it is the 422's message, a sentence like DigitalOcean's
	return fmt.Errorf("The image %s is not available in this local cloud: its droplets run Debian (debian-13-x64 or debian-12-x64).", slug)
}

// CheckImage accepts the Debian slugs: they all boot the droplet image.
func (b *DockerBackend) CheckImage(slug string) error {
	if strings.HasPrefix(slug, "debian-") {
		return nil
	}
	return errNotLocal(slug)
}

// bootImage is the image m's container is created from.
func (b *DockerBackend) bootImage(m Machine) string {
	if m.SnapshotID != 0 {
		return snapshotImageRef(m.SnapshotID)
	}
	return b.Image
}

// restoreSnapshot fills vol, the new /var/lib/docker volume of m, from
// m's snapshot (if it is made from one).
func (b *DockerBackend) restoreSnapshot(ctx context.Context, m Machine, vol string) error {
	if m.SnapshotID == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	ref, from := snapshotImageRef(m.SnapshotID), snapshotVolume(m.SnapshotID)
	if ok, err := imageExists(ctx, ref); err != nil || !ok {
		return errors.Join(fmt.Errorf("droplet %q: its snapshot image %d is gone", m.Name, m.SnapshotID), err)
	}
	if _, err := docker(ctx, nil, "volume", "inspect", from); err != nil {
		return fmt.Errorf("droplet %q: the volume of snapshot %d: %w", m.Name, m.SnapshotID, err)
	}
	if _, err := b.copyVolume(ctx, snapshotHelper(m.SnapshotID)+"-"+strconv.Itoa(m.ID), from, vol); err != nil {
		return fmt.Errorf("droplet %q: copying snapshot %d's volume: %w", m.Name, m.SnapshotID, err)
	}
	return nil
}

// copyVolume replaces the contents of volume to with those of volume from
// in a helper container named helper, and returns the bytes copied.
func (b *DockerBackend) copyVolume(ctx context.Context, helper, from, to string) (n int64, err error) {
	rm := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_, _ = docker(cctx, nil, "rm", "--force", helper)
	}
	rm() // left by a crash
	defer func() {
		if err != nil {
			rm() // the CLI is gone, the container may not be
		}
	}()
	out, err := docker(ctx, nil, "run", "--rm", "--name", helper, "--network", "none",
		"--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--mount", "type=volume,source="+from+",target=/from,readonly",
		"--mount", "type=volume,source="+to+",target=/to",
		"--entrypoint", "sh", b.Image, "-c",
		`find /to -mindepth 1 -delete && cp -a /from/. /to/ && du -sb /to | cut -f1`)
	if err != nil {
		return 0, err
	}
	n, err = strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("copying %s: du said %q", from, out)
	}
	return n, nil
}

// Snapshot images droplet id: a copy of its /var/lib/docker volume, then
// `docker commit` of its container (which pauses a running one for the
// commit only: a live snapshot is not consistent, as DigitalOcean warns of
// its own; power off first). On any failure, what it made is removed.
func (b *DockerBackend) Snapshot(ctx context.Context, id int, img Image) (err error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	if img.ID <= 0 {
		return fmt.Errorf("snapshot of droplet %d: image id %d", id, img.ID)
	}
	c, err := b.container(ctx, id)
	if err != nil {
		return err
	}
	ref, vol := snapshotImageRef(img.ID), snapshotVolume(img.ID)
	if ok, err := imageExists(ctx, ref); err != nil || ok {
		return errors.Join(fmt.Errorf("snapshot image id %d is taken on this engine", img.ID), err)
	}
	if _, err := docker(ctx, nil, "volume", "inspect", vol); err == nil {
		return fmt.Errorf("snapshot volume %s exists already", vol)
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if derr := b.DeleteImage(cctx, img.ID); derr != nil {
				b.logf("snapshot %d failed; removing what it left: %v", img.ID, derr)
			}
		}
	}()
	if _, err := docker(ctx, nil, "volume", "create",
		"--label", labelImageID+"="+strconv.Itoa(img.ID),
		"--label", labelImageName+"="+img.Name,
		"--label", labelImageDist+"="+img.Distribution,
		"--label", labelImageRegions+"="+strings.Join(img.Regions, ","),
		"--label", labelImageCreated+"="+img.Created.UTC().Format(time.RFC3339),
		"--label", labelImageMinDisk+"="+strconv.Itoa(img.MinDiskSize),
		"--label", labelImageDroplet+"="+strconv.Itoa(img.DropletID),
		"--label", labelImageInstance+"="+b.Instance,
		vol); err != nil {
		return fmt.Errorf("creating snapshot volume %s: %w", vol, err)
	}
	n, err := b.copyVolume(ctx, snapshotHelper(img.ID), b.volumeName(id), vol)
	if err != nil {
		return fmt.Errorf("copying droplet %d's /var/lib/docker: %w", id, err)
	}
	// Only digits go into these Dockerfile instructions.
	if _, err := docker(ctx, nil, "commit",
		"--change", "LABEL "+labelImageID+"="+strconv.Itoa(img.ID),
		"--change", "LABEL "+labelImageVolBytes+"="+strconv.FormatInt(n, 10),
		c, ref); err != nil {
		return fmt.Errorf("committing %s: %w", c, err)
	}
	b.logf("%s: snapshot %d %q taken (%s, volume %s)", c, img.ID, img.Name, ref, vol)
	return nil
}

// DeleteImage removes snapshot imageID's image, volume and copy helper.
// An image a droplet's container still uses is only untagged (Docker
// keeps its layers until that container goes).
func (b *DockerBackend) DeleteImage(ctx context.Context, imageID int) error {
	var errs []error
	if _, err := docker(ctx, nil, "rm", "--force", snapshotHelper(imageID)); err != nil && !isNoSuch(err) {
		errs = append(errs, err)
	}
	if _, err := docker(ctx, nil, "image", "rm", "--force", snapshotImageRef(imageID)); err != nil && !isNoSuch(err) {
		errs = append(errs, err)
	}
	if _, err := docker(ctx, nil, "volume", "rm", "--force", snapshotVolume(imageID)); err != nil && !isNoSuch(err) {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		b.logf("snapshot %d deleted", imageID)
	}
	return errors.Join(errs...)
}

// Images lists the engine's complete snapshots: those with both their
// volume and their image.
func (b *DockerBackend) Images(ctx context.Context) ([]Image, error) {
	out, err := docker(ctx, nil, "volume", "ls", "--quiet", "--filter", "label="+labelImageID)
	if err != nil || out == "" {
		return nil, err
	}
	out, err = docker(ctx, nil, append([]string{"volume", "inspect"}, strings.Fields(out)...)...)
	if err != nil {
		return nil, err
	}
	var vols []struct{ Labels map[string]string }
	if err := json.Unmarshal([]byte(out), &vols); err != nil {
		return nil, fmt.Errorf("docker volume inspect: %w", err)
	}
	out, err = docker(ctx, nil, "image", "ls", "--filter", "reference="+snapshotRepo, "--filter", "label="+labelImageID, "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil || out == "" {
		return nil, err
	}
	out, err = docker(ctx, nil, append([]string{"image", "inspect"}, strings.Fields(out)...)...)
	if err != nil {
		return nil, err
	}
	var imgs []struct {
		Size   int64
		Config struct{ Labels map[string]string }
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil {
		return nil, fmt.Errorf("docker image inspect: %w", err)
	}
	sizes := map[int]int64{}
	for _, im := range imgs {
		l := im.Config.Labels
		id, _ := strconv.Atoi(l[labelImageID])
		vb, _ := strconv.ParseInt(l[labelImageVolBytes], 10, 64)
		sizes[id] = im.Size + vb
	}
	var list []Image
	for _, v := range vols {
		l := v.Labels
		id, _ := strconv.Atoi(l[labelImageID])
		size, ok := sizes[id]
		if id <= 0 || !ok {
			continue // no image yet: in progress, or left by a crash
		}
		im := Image{ID: id, Name: l[labelImageName], Distribution: l[labelImageDist]}
		if r := l[labelImageRegions]; r != "" {
			im.Regions = strings.Split(r, ",")
		}
		im.Created, _ = time.Parse(time.RFC3339, l[labelImageCreated])
		im.MinDiskSize, _ = strconv.Atoi(l[labelImageMinDisk])
		if l[labelImageInstance] == b.Instance {
			// Another local cloud's droplet of the same id is not it.
			im.DropletID, _ = strconv.Atoi(l[labelImageDroplet])
		}
		im.SizeGigabytes = max(0.01, math.Round(float64(size)/1e7)/100)
		list = append(list, im)
	}
	slices.SortFunc(list, func(a, b Image) int { return a.ID - b.ID })
	return list, nil
}
