package localcloud

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// DockerBackend runs every droplet as a Docker container made from the
// droplet image (EnsureImage): a bare Debian 13 like DigitalOcean's, with
// systemd as PID 1, real cloud-init and sshd, published on the droplet's
// loopback address (127.0.0.N) on ports 22, 80 and 443, and on its
// region's VPC network with its private address (eth1, see docker_vpc.go).
// User data installs the rest (Docker in Docker, through the local cloud's
// mirrors: see vendorData).
//
// Each container is named fleet-<droplet name> and labelled with its
// instance and droplet (fleet.instance, fleet.droplet.id, ...): the labels
// are the backend's records, read back by List. The droplet's own
// /var/lib/docker is the named volume fleet-<instance>-<id>-docker.
// cloud-init reads a NoCloud seed copied into the container before it
// starts: user-data is Machine.UserData byte for byte, meta-data has the
// instance id, hostname and SSH keys, vendor-data is vendorData's. None is
// ever put in a process's arguments.
//
// Docker in Docker without --privileged needs these container options,
// which Boot uses: --cap-add ALL --cap-drop SYS_RESOURCE, seccomp,
// AppArmor and systempaths unconfined, --device-cgroup-rule 'a *:* rwm',
// and on cgroup v1 the host's /sys/fs/cgroup with --cgroupns host (the
// droplet's systemd and dockerd nest their cgroups under the droplet's;
// vendor-data gives dockerd a relative cgroup parent). systemd also wants
// tmpfs on /run and /run/lock; it stops on SIGRTMIN+3 (the image's
// STOPSIGNAL).
type DockerBackend struct {
	// Instance is the fleet.instance label value of this local cloud's
	// containers, so several local clouds (or test runs) on one Docker
	// engine do not see each other's droplets. [A-Za-z0-9][A-Za-z0-9_.-]*.
	Instance string
	// Image is the droplet image (EnsureImage's tag).
	Image string
	// Log, if set, gets one line per container created or removed.
	Log io.Writer
	// BootTimeout bounds Boot; 0 means 3 minutes.
	BootTimeout time.Duration
	// Router, if set, makes Route real (a Forwarder); nil: Route does
	// nothing.
	Router Router
	// AptProxy and RegistryMirror are the local cloud's package and image
	// mirrors (EnsureMirrors), "" for none: each droplet's vendor-data
	// points apt's http proxy and its dockerd's registry mirror at them.
	AptProxy       string
	RegistryMirror string

	cgroupOnce sync.Once
	cgroupV2   bool
	// noCapDrop: this engine refuses --cap-drop SYS_RESOURCE (newer
	// Docker, where the host lacks the capability, so ALL lacks it too).
	noCapDrop atomic.Bool
	// vpcMu serialises this backend's checks and creations of VPC
	// networks (other processes' are handled as they come: docker_vpc.go).
	vpcMu sync.Mutex
}

// Router points a reserved IP at a droplet address ("" = unassigned).
// *Forwarder is one.
type Router interface {
	Set(reservedIP, target string) error
}

// DockerOptions configures NewDockerBackend.
type DockerOptions struct {
	Instance    string        // default "default"
	Image       string        // default: EnsureImage (built if missing)
	Log         io.Writer     // image build output and container events
	BootTimeout time.Duration // default 3 minutes
	Router      Router
	// The mirrors droplets use (EnsureMirrors' Mirrors), "" for none.
	// They go into every droplet's vendor-data: no credentials in them.
	AptProxy       string // e.g. "http://172.17.0.2:3142"
	RegistryMirror string // e.g. "http://172.17.0.3:5000"
}

// The labels of a droplet container.
const (
	labelInstance = "fleet.instance"
	labelID       = "fleet.droplet.id"
	labelName     = "fleet.droplet.name"
	labelIPv4     = "fleet.public-ipv4"
	labelRegion   = "fleet.region"
	labelSize     = "fleet.size"
	labelImage    = "fleet.image"
	labelTags     = "fleet.tags"
	labelCreated  = "fleet.created"
)

const (
	seedDir = "/var/lib/cloud/seed/nocloud"
	// holdDir holds the systemd drop-ins of Machine.Holds.
	holdDir = "/etc/systemd/system"
	// defaultBootTimeout bounds a Boot (systemd starts in a second).
	defaultBootTimeout = 3 * time.Minute
)

// holdUnits are the systemd units Machine.Holds delays. cloud-init's is its
// config stage: its local and network stages (host keys, root's keys) run
// on time, so sshd answers while cloud-init is held.
var holdUnits = map[string]string{HoldCloudInit: "cloud-config.service", HoldSSHD: "ssh.service"}

var dockerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// NewDockerBackend checks that the Docker engine answers and makes sure
// the droplet image exists (building it the first time, see EnsureImage).
func NewDockerBackend(ctx context.Context, opts DockerOptions) (*DockerBackend, error) {
	b := &DockerBackend{
		Instance: opts.Instance, Image: opts.Image, Log: opts.Log,
		BootTimeout: opts.BootTimeout, Router: opts.Router,
		AptProxy: opts.AptProxy, RegistryMirror: opts.RegistryMirror,
	}
	if b.AptProxy != "" {
		if err := validMirrorURL(b.AptProxy); err != nil {
			return nil, fmt.Errorf("docker backend: apt proxy: %w", err)
		}
	}
	if b.RegistryMirror != "" {
		if err := validMirrorURL(b.RegistryMirror); err != nil {
			return nil, fmt.Errorf("docker backend: registry mirror: %w", err)
		}
	}
	if b.Instance == "" {
		b.Instance = "default"
	}
	if !dockerNameRE.MatchString(b.Instance) {
		return nil, fmt.Errorf("docker backend: instance %q: use letters, digits, '_', '.' and '-'", b.Instance)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, errors.New("cannot reach the Docker engine: the docker CLI is not on PATH (install docker.io or Docker Engine)")
	}
	out, err := docker(ctx, nil, "info", "--format", "{{.ServerVersion}} {{.CgroupVersion}}")
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the Docker engine: is dockerd running? (%v)", err)
	}
	b.cgroupOnce.Do(func() { b.cgroupV2 = strings.HasSuffix(strings.TrimSpace(out), " 2") })
	if b.Image == "" {
		if b.Image, err = EnsureImage(ctx, opts.Log); err != nil {
			return nil, err
		}
	} else if ok, err := imageExists(ctx, b.Image); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("docker backend: image %s does not exist", b.Image)
	}
	return b, nil
}

// ContainerName is the name of the container of a droplet named name.
func (b *DockerBackend) ContainerName(name string) string { return "fleet-" + name }

// volumeName is the named volume holding droplet id's /var/lib/docker.
// Droplet ids restart at the same number in every local cloud, so the
// instance is part of it.
func (b *DockerBackend) volumeName(id int) string {
	return "fleet-" + b.Instance + "-" + strconv.Itoa(id) + "-docker"
}

func (b *DockerBackend) logf(format string, args ...any) {
	if b.Log != nil {
		fmt.Fprintf(b.Log, "localcloud: docker: "+format+"\n", args...)
	}
}

// Boot creates, seeds and starts the droplet's container and returns once
// it runs: systemd is PID 1 and answers. That is when DigitalOcean says
// "active"; sshd and cloud-init come later (the droplet's own business:
// `cloud-init status` inside tells). If the container of the droplet
// exists already (a Boot retried after a restart), it is started if
// needed and waited for.
func (b *DockerBackend) Boot(ctx context.Context, m Machine) error {
	if !dockerNameRE.MatchString(m.Name) {
		return fmt.Errorf("docker backend: droplet name %q cannot name a container", m.Name)
	}
	if ip := net.ParseIP(m.PublicIPv4); ip == nil || ip.To4() == nil {
		return fmt.Errorf("docker backend: droplet %q has no IPv4 address (%q)", m.Name, m.PublicIPv4)
	}
	if b.Image == "" {
		return errors.New("docker backend: no image (use NewDockerBackend)")
	}
	m, err := withPrivateIP(m)
	if err != nil {
		return err
	}
	names, err := b.containers(ctx, m.ID)
	if err != nil {
		return err
	}
	c := ""
	if len(names) > 0 {
		c = names[0]
		// Created but never started (a Boot cut short): the seed may be
		// missing; copying it again is harmless.
		if st, err := docker(ctx, nil, "inspect", "--format", "{{.State.Status}}", c); err == nil && st == "created" {
			if err := b.copySeed(ctx, c, m); err != nil {
				return err
			}
		}
		// It may predate VPCs, or a Boot cut short before it joined its VPC.
		if err := b.connectVPC(ctx, c, m); err != nil {
			return err
		}
	} else {
		c = b.ContainerName(m.Name)
		if err := b.create(ctx, c, m); err != nil {
			return err
		}
	}
	if _, err := docker(ctx, nil, "start", c); err != nil {
		return fmt.Errorf("starting droplet %q: %w", m.Name, err)
	}
	if err := b.waitRunning(ctx, c, m.Name); err != nil {
		return err
	}
	return nil
}

// AddressTaken reports whether a container of any local cloud on this
// engine was given ip. (A host service on 0.0.0.0:22 is not checked here:
// it takes every address, and Boot says so clearly.)
func (b *DockerBackend) AddressTaken(ip string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := docker(ctx, nil, "ps", "-a", "-q", "--filter", "label="+labelIPv4+"="+ip)
	return err == nil && out != ""
}

// create makes the volume and the container of m, and copies the seed in.
func (b *DockerBackend) create(ctx context.Context, c string, m Machine) error {
	if err := b.checkAddress(ctx, m.PublicIPv4); err != nil {
		return err
	}
	vol := b.volumeName(m.ID)
	id := strconv.Itoa(m.ID)
	if _, err := docker(ctx, nil, "volume", "create",
		"--label", labelInstance+"="+b.Instance, "--label", labelID+"="+id, vol); err != nil {
		return fmt.Errorf("creating volume %s: %w", vol, err)
	}
	if err := b.restoreSnapshot(ctx, m, vol); err != nil { // docker_snapshot.go
		b.removeVolume(vol)
		return err
	}
	args := []string{"create", "--name", c, "--hostname", m.Name,
		"--label", labelInstance + "=" + b.Instance,
		"--label", labelID + "=" + id,
		"--label", labelName + "=" + m.Name,
		"--label", labelIPv4 + "=" + m.PublicIPv4,
		"--label", labelPrivateIPv4 + "=" + m.PrivateIPv4,
		"--label", labelRegion + "=" + m.Region,
		"--label", labelSize + "=" + m.Size,
		"--label", labelImage + "=" + m.Image,
		"--label", labelTags + "=" + strings.Join(m.Tags, ","),
		"--label", labelCreated + "=" + time.Now().UTC().Format(time.RFC3339),
		// Docker in Docker without --privileged (which needs CAP_SYS_RESOURCE).
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined",
		"--security-opt", "apparmor=unconfined",
		"--security-opt", "systempaths=unconfined",
		"--device-cgroup-rule", "a *:* rwm",
		"--env", "container=docker",
	}
	if b.isCgroupV2(ctx) {
		args = append(args, "--cgroupns", "private")
	} else {
		args = append(args, "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host")
	}
	args = append(args,
		// /run is a tmpfs as on a machine: a restart is a reboot.
		"--tmpfs", "/run:rw,exec,nosuid,nodev,mode=0755",
		"--tmpfs", "/run/lock:rw,noexec,nosuid,nodev,size=5m",
		"--mount", "type=volume,source="+vol+",target=/var/lib/docker",
		"--restart", "unless-stopped", "--stop-timeout", "20",
		"-p", m.PublicIPv4+":22:22", "-p", m.PublicIPv4+":80:80", "-p", m.PublicIPv4+":443:443",
		b.bootImage(m))
	if b.noCapDrop.Load() {
		args = withoutCapDrop(args)
	}
	_, err := docker(ctx, nil, args...)
	var de *dockerError
	if err != nil && errors.As(err, &de) && strings.Contains(de.stderr, "capability not supported") && strings.Contains(de.stderr, "SYS_RESOURCE") {
		// A newer Docker on a host without CAP_SYS_RESOURCE: ALL lacks it.
		b.noCapDrop.Store(true)
		_, err = docker(ctx, nil, withoutCapDrop(args)...)
	}
	if err != nil {
		b.removeVolume(vol)
		if errors.As(err, &de) && strings.Contains(de.stderr, "is already in use") {
			return fmt.Errorf("creating droplet %q: the container name %s is taken by a container that is not this droplet's (a droplet of the same name in another local cloud?)", m.Name, c)
		}
		return fmt.Errorf("creating droplet %q: %w", m.Name, err)
	}
	// Joined before its first start, so eth1 is there when it boots.
	if err := b.connectVPC(ctx, c, m); err != nil {
		b.remove(c, vol)
		return err
	}
	if err := b.copySeed(ctx, c, m); err != nil {
		b.remove(c, vol)
		return err
	}
	b.logf("%s: created (droplet %d, %s, private %s)", c, m.ID, m.PublicIPv4, m.PrivateIPv4)
	return nil
}

// copySeed copies m's NoCloud seed, and the systemd drop-ins of its
// Holds, into container c, as tar streams on the docker CLI's stdin.
func (b *DockerBackend) copySeed(ctx context.Context, c string, m Machine) error {
	vo := vendorOptions{AptProxy: b.AptProxy, RegistryMirror: b.RegistryMirror, Monitoring: m.Monitoring, Fail: m.VendorFail}
	if !b.isCgroupV2(ctx) {
		vo.CgroupParent = "docker"
	}
	vendor, err := vendorData(vo)
	if err != nil {
		return fmt.Errorf("droplet %q: vendor-data: %w", m.Name, err)
	}
	seed, err := seedTar(m, vendor)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, bytes.NewReader(seed), "cp", "-", c+":"+seedDir); err != nil {
		return fmt.Errorf("copying the cloud-init seed into %s: %w", c, err)
	}
	if len(m.Holds) == 0 {
		return nil
	}
	holds, err := holdTar(m.Holds)
	if err != nil {
		return fmt.Errorf("droplet %q: %w", m.Name, err)
	}
	if _, err := docker(ctx, bytes.NewReader(holds), "cp", "-", c+":"+holdDir); err != nil {
		return fmt.Errorf("copying the hold drop-ins into %s: %w", c, err)
	}
	return nil
}

// holdTar is a tar stream of systemd drop-ins (relative to holdDir) that
// make each held unit sleep before it starts, with its start timeout
// lengthened by as much.
func holdTar(holds map[string]time.Duration) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	units := make([]string, 0, len(holds))
	for k := range holds {
		units = append(units, k)
	}
	sort.Strings(units)
	for _, k := range units {
		d := holds[k]
		unit, ok := holdUnits[k]
		if !ok {
			return nil, fmt.Errorf("cannot hold %q (want %s or %s)", k, HoldCloudInit, HoldSSHD)
		}
		if d <= 0 || d > maxHold {
			return nil, fmt.Errorf("hold of %s: %v is not within (0, %v]", k, d, maxHold)
		}
		secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		body := "# fleet local cloud: fault hold=" + k + "\n[Service]\nExecStartPre=/bin/sleep " + secs +
			"\nTimeoutStartSec=" + strconv.FormatFloat((d+90*time.Second).Seconds(), 'f', 0, 64) + "\n"
		dir := unit + ".d/"
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: now}); err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: dir + "50-fleet-hold.conf", Mode: 0o644, Size: int64(len(body)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// instanceID is the cloud-init instance id of a new droplet container:
// unique on the engine, not just the droplet id. Droplet ids restart in
// every local cloud while snapshots are shared by all of them, so a droplet
// made from a snapshot could have the id of the droplet the snapshot was
// taken of; cloud-init would then take it for the same instance, skip its
// per-instance modules and keep the snapshot's SSH host keys. (The seed
// stays in the container, so the id holds across reboots.)
func instanceID(dropletID int) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return "i-" + strconv.Itoa(dropletID) + "-" + hex.EncodeToString(b)
}

// seedTar is a tar stream of the NoCloud seed of m: user-data (UserData
// byte for byte), meta-data and vendor-data, all 0600.
func seedTar(m Machine, vendor []byte) ([]byte, error) {
	md := struct {
		InstanceID    string   `yaml:"instance-id"`
		LocalHostname string   `yaml:"local-hostname"`
		PublicKeys    []string `yaml:"public-keys,omitempty"`
	}{instanceID(m.ID), m.Name, m.SSHKeys}
	meta, err := yaml.Marshal(md)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, f := range []struct {
		name string
		data []byte
	}{{"user-data", []byte(m.UserData)}, {"meta-data", meta}, {"vendor-data", vendor}} {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: now}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// waitRunning polls container c's systemd, backing off from 100ms to 1s,
// until it answers, the container stops, BootTimeout passes or ctx is
// done.
func (b *DockerBackend) waitRunning(ctx context.Context, c, name string) error {
	timeout := b.BootTimeout
	if timeout <= 0 {
		timeout = defaultBootTimeout
	}
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Millisecond
	for {
		ok, err := systemdUp(ctx, c)
		if ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil { // not running?
			st, ierr := docker(ctx, nil, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c)
			if ierr != nil {
				return fmt.Errorf("droplet %q: container %s: %w", name, c, ierr)
			}
			if f := strings.Fields(st); len(f) == 2 && f[0] != "running" && f[0] != "created" {
				return fmt.Errorf("droplet %q: container %s stopped while booting (%s, exit code %s); its last log lines:\n%s",
					name, c, f[0], f[1], logTail(c, 30))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("droplet %q: container %s did not finish booting within %v; its last log lines:\n%s",
				name, c, timeout, logTail(c, 30))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay*3/2, time.Second)
	}
}

// systemdUp says whether systemd runs in container c: `systemctl
// is-system-running` names a state of a running manager (it exits
// non-zero for all but "running", so its output decides). err is set if
// docker exec itself failed (as when c is not running).
func systemdUp(ctx context.Context, c string) (bool, error) {
	out, err := docker(ctx, nil, "exec", c, "systemctl", "is-system-running")
	var de *dockerError
	if err != nil && errors.As(err, &de) && de.exitCode > 0 && de.exitCode < 126 {
		out, err = "", nil // systemctl answered; what it printed is in the error
		for _, f := range strings.Fields(de.stdout) {
			out = f
		}
	}
	if err != nil {
		return false, err
	}
	switch strings.TrimSpace(out) {
	case "initializing", "starting", "running", "degraded", "maintenance":
		return true, nil
	}
	return false, nil // "offline" (not yet), "stopping", "unknown"
}

// logTail is the last n lines of container c's output.
func logTail(c string, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "logs", "--tail", strconv.Itoa(n), c)
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		return fmt.Sprintf("(docker logs: %v)", err)
	}
	return strings.TrimRight(string(out), "\n")
}

// Destroy removes the droplet's container (however it is doing) and its
// volume. Removing what is already gone is not an error.
func (b *DockerBackend) Destroy(ctx context.Context, id int) error {
	names, err := b.containers(ctx, id)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range names {
		if _, err := docker(ctx, nil, "rm", "--force", "--volumes", c); err != nil && !isNoSuch(err) {
			errs = append(errs, fmt.Errorf("removing container %s: %w", c, err))
			continue
		}
		b.logf("%s: removed (droplet %d)", c, id)
	}
	vols := []string{b.volumeName(id)}
	out, err := docker(ctx, nil, "volume", "ls", "--quiet",
		"--filter", "label="+labelInstance+"="+b.Instance, "--filter", "label="+labelID+"="+strconv.Itoa(id))
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range strings.Fields(out) {
		if v != vols[0] {
			vols = append(vols, v)
		}
	}
	for _, v := range vols {
		if _, err := docker(ctx, nil, "volume", "rm", "--force", v); err != nil && !isNoSuch(err) {
			errs = append(errs, fmt.Errorf("removing volume %s: %w", v, err))
		}
	}
	return errors.Join(errs...)
}

// remove removes container c and volume vol after a failed create.
func (b *DockerBackend) remove(c, vol string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = docker(ctx, nil, "rm", "--force", c)
	_, _ = docker(ctx, nil, "volume", "rm", "--force", vol)
}

func (b *DockerBackend) removeVolume(vol string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = docker(ctx, nil, "volume", "rm", "--force", vol)
}

// Route points reservedIP at dropletIPv4 through Router; without one it
// does nothing.
func (b *DockerBackend) Route(_ context.Context, reservedIP, dropletIPv4 string) error {
	if b.Router == nil {
		return nil
	}
	return b.Router.Set(reservedIP, dropletIPv4)
}

// List returns the droplets of this instance from their containers'
// labels. Booted: the container runs. UserData and SSHKeys are read back
// from the seed in the container.
func (b *DockerBackend) List(ctx context.Context) ([]Machine, error) {
	out, err := docker(ctx, nil, "ps", "--all", "--quiet", "--no-trunc", "--filter", "label="+labelInstance+"="+b.Instance)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return nil, nil
	}
	out, err = docker(ctx, nil, append([]string{"inspect", "--type", "container"}, ids...)...)
	if err != nil {
		return nil, err
	}
	var infos []struct {
		Name   string
		State  struct{ Running bool }
		Config struct {
			Labels map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		return nil, fmt.Errorf("docker inspect: %w", err)
	}
	ms := make([]Machine, len(infos))
	errs := make([]error, len(infos))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, in := range infos {
		l := in.Config.Labels
		id, _ := strconv.Atoi(l[labelID])
		ms[i] = Machine{
			ID: id, Name: l[labelName], Region: l[labelRegion], Size: l[labelSize],
			Image: l[labelImage], PublicIPv4: l[labelIPv4], PrivateIPv4: l[labelPrivateIPv4],
		}
		if t := l[labelTags]; t != "" {
			ms[i].Tags = strings.Split(t, ",")
		}
		c := strings.TrimPrefix(in.Name, "/")
		ms[i].Booted = in.State.Running
		ms[i].Status = map[bool]string{true: "active", false: "off"}[in.State.Running]
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ms[i].UserData, ms[i].SSHKeys, errs[i] = readSeed(ctx, c)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			b.logf("%s: reading its cloud-init seed: %v", strings.TrimPrefix(infos[i].Name, "/"), err)
		}
	}
	return ms, nil
}

// readSeed reads user-data and the meta-data SSH keys back from container
// c (running or not).
func readSeed(ctx context.Context, c string) (userData string, keys []string, err error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "cp", c+":"+seedDir, "-")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", nil, fmt.Errorf("docker cp: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	tr := tar.NewReader(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return "", nil, err
		}
		switch hdr.Name[strings.LastIndex(hdr.Name, "/")+1:] {
		case "user-data":
			userData = string(data)
		case "meta-data":
			var md struct {
				PublicKeys []string `yaml:"public-keys"`
			}
			if err := yaml.Unmarshal(data, &md); err != nil {
				return "", nil, fmt.Errorf("meta-data: %w", err)
			}
			keys = md.PublicKeys
		}
	}
	return userData, keys, nil
}

// containers are the names of droplet id's containers (of this instance).
func (b *DockerBackend) containers(ctx context.Context, id int) ([]string, error) {
	out, err := docker(ctx, nil, "ps", "--all", "--format", "{{.Names}}",
		"--filter", "label="+labelInstance+"="+b.Instance, "--filter", "label="+labelID+"="+strconv.Itoa(id))
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (b *DockerBackend) isCgroupV2(ctx context.Context) bool {
	b.cgroupOnce.Do(func() {
		out, err := docker(ctx, nil, "info", "--format", "{{.CgroupVersion}}")
		b.cgroupV2 = err == nil && strings.TrimSpace(out) == "2"
	})
	return b.cgroupV2
}

// checkAddress fails if ip's ports 22, 80 or 443 cannot be published: a
// fleet container (of any instance) has the address, or a host process
// listens on it or on all addresses.
func (b *DockerBackend) checkAddress(ctx context.Context, ip string) error {
	out, err := docker(ctx, nil, "ps", "--all", "--format", `{{.Names}} {{.Label "fleet.instance"}}`,
		"--filter", "label="+labelIPv4+"="+ip)
	if err != nil {
		return err
	}
	if f := strings.Fields(out); len(f) > 0 {
		inst := ""
		if len(f) > 1 {
			inst = f[1]
		}
		return fmt.Errorf("address %s is taken by droplet container %s (local cloud instance %q)", ip, f[0], inst)
	}
	want := net.ParseIP(ip)
	listeners := hostListeners()
	for _, port := range []int{22, 80, 443} {
		for _, l := range listeners {
			if l.port != port {
				continue
			}
			switch {
			case l.ip.Equal(net.IPv4zero):
				if port == 22 {
					return fmt.Errorf("port 22 on %s is taken: a host sshd listening on 0.0.0.0:22 collides with droplet addresses; make it listen on a specific address (ListenAddress) or stop it", ip)
				}
				return fmt.Errorf("port %d on %s is taken: a host process listening on 0.0.0.0:%d collides with droplet addresses; make it listen on a specific address or stop it", port, ip, port)
			case l.ip.Equal(want):
				return fmt.Errorf("port %d on %s is taken by a host process listening on %s:%d", port, ip, ip, port)
			}
		}
		// A dual-stack listener on [::] shows as IPv6 only: try to bind.
		if bindInUse(ip, port) {
			return fmt.Errorf("port %d on %s is taken: a host process listening on all addresses ([::]:%d) collides with droplet addresses; make it listen on a specific address or stop it", port, ip, port)
		}
	}
	return nil
}

type hostListener struct {
	ip   net.IP
	port int
}

// hostListeners are the listening TCP sockets of this network namespace
// (from /proc/net/tcp and tcp6; none where they do not exist).
func hostListeners() []hostListener {
	var ls []hostListener
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			addr, portHex, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			port, err1 := strconv.ParseUint(portHex, 16, 16)
			raw, err2 := hex.DecodeString(addr)
			if err1 != nil || err2 != nil || (len(raw) != 4 && len(raw) != 16) {
				continue
			}
			// Each 32-bit word is in host (little-endian) order.
			for i := 0; i < len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			ls = append(ls, hostListener{ip: net.IP(raw), port: int(port)})
		}
	}
	return ls
}

// bindInUse says whether binding ip:port fails with "address in use" (a
// failure for any other reason, such as no permission, says nothing).
func bindInUse(ip string, port int) bool {
	l, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err == nil {
		l.Close()
		return false
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

// dockerError is a failed docker command.
type dockerError struct {
	args     []string
	exitCode int
	stdout   string
	stderr   string
	err      error
}

func (e *dockerError) Error() string {
	cmd := "docker"
	if len(e.args) > 0 {
		cmd += " " + e.args[0]
	}
	if e.stderr != "" {
		return cmd + ": " + e.stderr
	}
	return cmd + ": " + e.err.Error()
}

func (e *dockerError) Unwrap() error { return e.err }

// docker runs the docker CLI with args (and stdin, if not nil) and returns
// its trimmed stdout.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		de := &dockerError{args: args, exitCode: -1, stdout: strings.TrimSpace(stdout.String()), stderr: strings.TrimSpace(stderr.String()), err: err}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			de.exitCode = ee.ExitCode()
		}
		return "", de
	}
	return strings.TrimSpace(stdout.String()), nil
}

// isNoSuch says whether err is Docker's "no such container/volume".
func isNoSuch(err error) bool {
	var de *dockerError
	return errors.As(err, &de) && strings.Contains(strings.ToLower(de.stderr), "no such")
}

// withoutCapDrop is a create's args without --cap-drop SYS_RESOURCE.
func withoutCapDrop(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--cap-drop" && i+1 < len(args) && args[i+1] == "SYS_RESOURCE" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
