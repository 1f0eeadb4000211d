//go:build e2e

package localcloud

// Docker backend tests: real containers, real cloud-init, sshd and Docker
// in Docker. Run with
//
//	go test -tags e2e ./internal/localcloud/ -run Docker
//	go test -tags e2e ./internal/localcloud/ -run '^$' -bench DropletBootToSSH -benchtime 3x
//
// They need a running dockerd, the docker and ssh clients, ssh-keygen, and
// debian:trixie-slim (or a way to make it, see EnsureImage). Droplets use
// 127.0.0.150-159, away from other tests' addresses.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloudinit"
)

// testWriter sends lines to t.Logf.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDockerTestBackend makes a backend with a unique instance label and
// removes every container and volume of that instance at the end.
func newDockerTestBackend(tb testing.TB) *DockerBackend {
	tb.Helper()
	var r [4]byte
	rand.Read(r[:])
	instance := "e2e-" + hex.EncodeToString(r[:])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	b, err := NewDockerBackend(ctx, DockerOptions{Instance: instance, Log: testWriter{tb}, BootTimeout: 2 * time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("backend %s ready in %v (image %s)", instance, time.Since(start).Round(time.Millisecond), b.Image)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, _ := docker(ctx, nil, "ps", "-aq", "--filter", "label=fleet.instance="+instance); out != "" {
			args := append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)
			if _, err := docker(ctx, nil, args...); err != nil {
				tb.Errorf("cleanup: %v", err)
			}
		}
		if out, _ := docker(ctx, nil, "volume", "ls", "-q", "--filter", "label=fleet.instance="+instance); out != "" {
			args := append([]string{"volume", "rm", "-f"}, strings.Fields(out)...)
			if _, err := docker(ctx, nil, args...); err != nil {
				tb.Errorf("cleanup: %v", err)
			}
		}
	})
	return b
}

// e2eSSHKey makes an ed25519 key pair with ssh-keygen; it returns the private
// key's path and the authorized_keys line.
func e2eSSHKey(tb testing.TB) (string, string) {
	tb.Helper()
	key := filepath.Join(tb.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-e2e", "-f", key).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		tb.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

// sshRun runs command on root@ip with key through the system ssh client.
func sshRun(ctx context.Context, key, ip, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", key, "root@"+ip, command)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dexec runs a command in container c; it returns the output even when
// the command fails.
func dexec(tb testing.TB, c string, args ...string) (string, error) {
	tb.Helper()
	out, err := exec.Command("docker", append([]string{"exec", c}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// idleMiB is the memory use of container c as `docker stats` shows it.
func idleMiB(tb testing.TB, c string) float64 {
	tb.Helper()
	out, err := exec.Command("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", c).Output()
	if err != nil {
		tb.Fatalf("docker stats: %v", err)
	}
	used, _, _ := strings.Cut(strings.TrimSpace(string(out)), " / ")
	for _, u := range []struct {
		suffix string
		mib    float64
	}{{"GiB", 1024}, {"MiB", 1}, {"KiB", 1.0 / 1024}, {"kB", 1.0 / 1024}, {"B", 1.0 / 1024 / 1024}} {
		if n, ok := strings.CutSuffix(used, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				tb.Fatalf("docker stats: %q", out)
			}
			return f * u.mib
		}
	}
	tb.Fatalf("docker stats: %q", out)
	return 0
}

// hostCgroupHierarchies is /proc/cgroups's subsystem:hierarchy pairs.
func hostCgroupHierarchies(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		tb.Fatal(err)
	}
	var pairs []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
			pairs = append(pairs, f[0]+":"+f[1])
		}
	}
	return strings.Join(pairs, " ")
}

// assertGone checks that droplet id of b has no container or volume left.
func assertGone(t *testing.T, b *DockerBackend, id int) {
	t.Helper()
	ctx := context.Background()
	if names, err := b.containers(ctx, id); err != nil || len(names) > 0 {
		t.Errorf("containers of droplet %d after Destroy: %v %v", id, names, err)
	}
	if out, err := docker(ctx, nil, "volume", "ls", "-q", "--filter", "name="+b.volumeName(id)); err != nil || out != "" {
		t.Errorf("volumes of droplet %d after Destroy: %q %v", id, out, err)
	}
}

const e2eUserData = `#cloud-config
write_files:
  - path: /etc/fleet/e2e
    permissions: "0644"
    content: |
      hello from user data
runcmd:
  - echo ran > /root/runcmd-ran
`

// waitCloudInit waits (up to limit) for cloud-init in container c to
// finish and returns `cloud-init status --long`'s output and error.
func waitCloudInit(t *testing.T, c string, limit time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "exec", c, "cloud-init", "status", "--wait", "--long").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("cloud-init in %s did not finish within %v:\n%s", c, limit, out)
	}
	return strings.TrimSpace(string(out)), err
}

// waitSSH polls until root@ip answers over SSH or limit passes.
func waitSSH(t *testing.T, key, ip string, limit time.Duration) (time.Time, string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := sshRun(ctx, key, ip, "hostname && id -un")
		cancel()
		if err == nil {
			return time.Now(), out
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SSH to %s within %v: %v %s", ip, limit, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unitTimes are a systemd unit's monotonic start (InactiveExit) and
// active (ActiveEnter) timestamps in container c, in microseconds.
type unitTimes struct{ start, active int64 }

func getUnitTimes(t *testing.T, c string, units ...string) map[string]unitTimes {
	t.Helper()
	got := map[string]unitTimes{}
	for _, u := range units {
		out, err := dexec(t, c, "systemctl", "show", "-p", "InactiveExitTimestampMonotonic", "-p", "ActiveEnterTimestampMonotonic", u)
		if err != nil {
			t.Fatalf("systemctl show %s: %v %q", u, err, out)
		}
		var start, active int64
		for _, line := range strings.Split(out, "\n") {
			k, v, _ := strings.Cut(line, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "InactiveExitTimestampMonotonic":
				start = n
			case "ActiveEnterTimestampMonotonic":
				active = n
			}
		}
		if start == 0 || active == 0 {
			t.Fatalf("%s never started: %q", u, out)
		}
		got[u] = unitTimes{start: start, active: active}
	}
	return got
}

// The droplet boots like one of DigitalOcean's: systemd is PID 1, Boot
// returns as soon as it runs, cloud-init's stages come in trixie's order
// with sshd after its network stage, the vendor-data runs.
func TestDockerBoot(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	b.AptProxy = "http://127.0.0.1:3142"
	key, pub := e2eSSHKey(t)
	m := Machine{
		ID: 700001, Name: "e2e-" + b.Instance + "-ok", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: "debian-13-x64", UserData: e2eUserData, SSHKeys: []string{pub},
		PublicIPv4: "127.0.0.150", Tags: []string{"fleet:e2e", "fleet-version:v1_0_0"},
	}
	c := b.ContainerName(m.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	cgroupsBefore := hostCgroupHierarchies(t)
	start := time.Now()
	if err := b.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	active := time.Since(start)
	if out, err := dexec(t, c, "cat", "/proc/1/comm"); err != nil || out != "systemd" {
		t.Errorf("PID 1 is %q (%v), want systemd", out, err)
	}
	sshAt, out := waitSSH(t, key, m.PublicIPv4, 2*time.Minute)
	if out != m.Name+"\nroot" {
		t.Errorf("ssh root@%s: %q", m.PublicIPv4, out)
	}
	status, err := waitCloudInit(t, c, 3*time.Minute)
	doneAt := time.Now()
	if err != nil || !strings.Contains(status, "status: done") {
		t.Errorf("cloud-init status: %v\n%s", err, status)
	}
	t.Logf("container start to active (Boot) %v, to sshd %v, to cloud-init done %v",
		active.Round(time.Millisecond), sshAt.Sub(start).Round(time.Millisecond), doneAt.Sub(start).Round(time.Millisecond))
	if out, err := dexec(t, c, "systemctl", "is-system-running"); out != "running" {
		failed, _ := dexec(t, c, "systemctl", "--failed", "--no-legend")
		t.Errorf("systemctl is-system-running: %s (%v); failed units:\n%s", out, err, failed)
	}

	// trixie's order: cloud-init-local, cloud-init-network, then sshd and
	// the config stage, then the final stage.
	units := getUnitTimes(t, c, "cloud-init-local.service", "cloud-init-network.service", "ssh.service", "cloud-config.service", "cloud-final.service")
	for _, o := range [][2]string{
		{"cloud-init-local.service", "cloud-init-network.service"},
		{"cloud-init-network.service", "ssh.service"},
		{"cloud-init-network.service", "cloud-config.service"},
		{"cloud-config.service", "cloud-final.service"},
	} {
		if units[o[0]].active > units[o[1]].start {
			t.Errorf("%s started at %dus, before %s was done (%dus)", o[1], units[o[1]].start, o[0], units[o[0]].active)
		}
	}
	if out, err := dexec(t, c, "systemd-analyze", "critical-chain", "--no-pager", "cloud-final.service"); err == nil {
		t.Logf("critical chain:\n%s", out)
	}

	if out, err := dexec(t, c, "cat", "/etc/fleet/e2e", "/root/runcmd-ran"); err != nil || out != "hello from user data\nran" {
		t.Errorf("write_files and runcmd: %q %v", out, err)
	}
	if out, err := dexec(t, c, "cat", seedDir+"/user-data"); err != nil || out+"\n" != e2eUserData {
		t.Errorf("seed user-data differs from the droplet's user data:\n%s", out)
	}
	if out, err := dexec(t, c, "stat", "-c", "%a %U", seedDir+"/user-data", seedDir+"/meta-data", seedDir+"/vendor-data"); err != nil || out != "600 root\n600 root\n600 root" {
		t.Errorf("seed modes: %q %v", out, err)
	}
	// The vendor-data ran: the agent's stand-in, the apt proxy, and (on
	// cgroup v1) dockerd's cgroup parent, before user data could install
	// Docker.
	if out, err := dexec(t, c, "cat", "/opt/digitalocean/fleet-local-agent", "/etc/apt/apt.conf.d/00fleet-local-proxy"); err != nil ||
		!strings.Contains(out, `Acquire::http::Proxy "http://127.0.0.1:3142";`) {
		t.Errorf("vendor-data's files: %q %v", out, err)
	}
	if !b.isCgroupV2(ctx) {
		if out, err := dexec(t, c, "cat", "/etc/docker/daemon.json"); err != nil || !strings.Contains(out, `"cgroup-parent": "docker"`) {
			t.Errorf("daemon.json: %q %v", out, err)
		}
	}
	if out, err := dexec(t, c, "sh", "-c", "command -v docker dockerd postfix cron"); err == nil || out != "" {
		t.Errorf("the bare image has %q", out)
	}
	if mib := idleMiB(t, c); mib <= 0 {
		t.Errorf("docker stats shows no memory use for %s", c)
	} else {
		t.Logf("idle memory of %s: %.1f MiB", c, mib)
	}

	ms, err := b.List(ctx)
	if err != nil || len(ms) != 1 {
		t.Fatalf("List: %v %+v", err, ms)
	}
	got := ms[0]
	if got.ID != m.ID || got.Name != m.Name || got.PublicIPv4 != m.PublicIPv4 || !got.Booted ||
		got.Region != m.Region || got.Size != m.Size || got.Image != m.Image ||
		strings.Join(got.Tags, " ") != strings.Join(m.Tags, " ") ||
		got.UserData != m.UserData || len(got.SSHKeys) != 1 || got.SSHKeys[0] != pub {
		t.Errorf("List: %+v\nwant %+v", got, m)
	}

	// Booting again (as after a server restart) finds the same container.
	start = time.Now()
	if err := b.Boot(ctx, m); err != nil {
		t.Errorf("second Boot: %v", err)
	}
	t.Logf("second Boot took %v", time.Since(start).Round(time.Millisecond))

	// A container restart is a reboot: systemd stops on SIGRTMIN+3 and
	// everything comes back.
	start = time.Now()
	if out, err := exec.Command("docker", "restart", c).CombinedOutput(); err != nil {
		t.Fatalf("docker restart: %v\n%s", err, out)
	}
	t.Logf("docker restart (a reboot) took %v", time.Since(start).Round(time.Millisecond))
	if err := b.Boot(ctx, m); err != nil {
		t.Fatalf("Boot after restart: %v", err)
	}
	if status, err := waitCloudInit(t, c, 3*time.Minute); err != nil || !strings.Contains(status, "status: done") {
		t.Errorf("cloud-init status after restart: %v\n%s", err, status)
	}
	waitSSH(t, key, m.PublicIPv4, time.Minute)
	if out, err := sshRun(ctx, key, m.PublicIPv4, "cat /root/runcmd-ran"); err != nil || out != "ran" {
		t.Errorf("ssh after restart: %v\n%s", err, out)
	}

	// The droplet's systemd must not mount cgroup hierarchies the host
	// has not: that breaks the host's `docker stats`.
	if after := hostCgroupHierarchies(t); after != cgroupsBefore {
		t.Errorf("host cgroup hierarchies changed:\nbefore %s\nafter  %s", cgroupsBefore, after)
	}

	if err := b.Destroy(ctx, m.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	assertGone(t, b, m.ID)
	if err := b.Destroy(ctx, m.ID); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if ms, err := b.List(ctx); err != nil || len(ms) != 0 {
		t.Errorf("List after Destroy: %+v %v", ms, err)
	}
}

// Holds: the droplet is active at once; sshd answers only after its hold,
// cloud-init finishes only after its own (its config stage waits; sshd
// does not wait for it).
func TestDockerBootHold(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	key, pub := e2eSSHKey(t)
	const sshHold, cloudHold = 8 * time.Second, 20 * time.Second
	m := Machine{
		ID: 700005, Name: "e2e-" + b.Instance + "-hold", PublicIPv4: "127.0.0.155",
		UserData: e2eUserData, SSHKeys: []string{pub},
		Holds: map[string]time.Duration{HoldSSHD: sshHold, HoldCloudInit: cloudHold},
	}
	c := b.ContainerName(m.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if err := b.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	active := time.Since(start)
	if active >= sshHold {
		t.Errorf("Boot took %v: it waited for the held sshd", active)
	}
	if out, _ := dexec(t, c, "cloud-init", "status"); !strings.Contains(out, "status: running") && !strings.Contains(out, "status: not started") {
		t.Errorf("cloud-init status when active: %q, want running or not started", out)
	}
	sshAt, _ := waitSSH(t, key, m.PublicIPv4, 2*time.Minute)
	if d := sshAt.Sub(start); d < sshHold {
		t.Errorf("sshd answered after %v, before its hold of %v", d, sshHold)
	}
	if out, _ := dexec(t, c, "cloud-init", "status"); !strings.Contains(out, "status: running") {
		t.Errorf("cloud-init status when sshd answers: %q, want running (held)", out)
	}
	status, err := waitCloudInit(t, c, 3*time.Minute)
	doneAt := time.Since(start)
	if err != nil || !strings.Contains(status, "status: done") {
		t.Errorf("cloud-init status: %v\n%s", err, status)
	}
	if doneAt < cloudHold {
		t.Errorf("cloud-init done after %v, before its hold of %v", doneAt, cloudHold)
	}
	t.Logf("held: active %v, sshd %v, cloud-init done %v", active.Round(time.Millisecond),
		sshAt.Sub(start).Round(time.Millisecond), doneAt.Round(time.Millisecond))
	if out, err := dexec(t, c, "systemd-analyze", "critical-chain", "--no-pager", "ssh.service", "cloud-final.service"); err == nil {
		t.Logf("critical chains:\n%s", out)
	}
}

func TestDockerBootCloudInitFails(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	for _, tt := range []struct {
		name string
		m    Machine
		want string // in cloud-init status --long
	}{
		{"user-data", Machine{ID: 700002, PublicIPv4: "127.0.0.151",
			UserData: "#cloud-config\nruncmd:\n  - echo about to fail\n  - exit 1\n"}, "scripts_user"},
		{"vendor-fail", Machine{ID: 700006, PublicIPv4: "127.0.0.156", Monitoring: true, VendorFail: true,
			UserData: "#cloud-config\nruncmd:\n  - echo ran > /root/runcmd-ran\n"}, "scripts_vendor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := tt.m
			m.Name = "e2e-" + b.Instance + "-" + tt.name
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := b.Boot(ctx, m); err != nil {
				t.Fatalf("Boot: %v (a failing cloud-init must still boot)", err)
			}
			c := b.ContainerName(m.Name)
			out, err := waitCloudInit(t, c, 3*time.Minute)
			if err == nil || !strings.Contains(out, "status: error") || !strings.Contains(out, tt.want) {
				t.Errorf("cloud-init status: %v\n%s", err, out)
			}
			if m.VendorFail {
				// The user's scripts still run, as on DigitalOcean.
				if out, err := dexec(t, c, "cat", "/root/runcmd-ran"); err != nil || out != "ran" {
					t.Errorf("runcmd after a failed vendor-data: %q %v", out, err)
				}
			}
			if err := b.Destroy(ctx, m.ID); err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			assertGone(t, b, m.ID)
		})
	}
}

func TestDockerBootPortTaken(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	const ip = "127.0.0.153"
	l, err := net.Listen("tcp4", ip+":80")
	if err != nil {
		t.Skipf("cannot hold %s:80 for the test: %v", ip, err)
	}
	defer l.Close()
	m := Machine{ID: 700003, Name: "e2e-" + b.Instance + "-port", PublicIPv4: ip}
	err = b.Boot(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), "port 80 on "+ip+" is taken") {
		t.Errorf("Boot with %s:80 taken: %v", ip, err)
	}
	assertGone(t, b, m.ID)
}

func TestDockerBootContainerDies(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	// An image whose init fails at once.
	tag := "fleet-e2e-dying:" + b.Instance
	build := exec.Command("docker", "build", "-q", "-t", tag, "-")
	build.Stdin = strings.NewReader("FROM " + b.Image + "\nENTRYPOINT [\"sh\", \"-c\", \"echo fleet-e2e is dying; exit 3\"]\n")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	dying := &DockerBackend{Instance: b.Instance, Image: tag, Log: b.Log, BootTimeout: time.Minute}
	m := Machine{ID: 700004, Name: "e2e-" + b.Instance + "-dies", PublicIPv4: "127.0.0.154"}
	err := dying.Boot(context.Background(), m)
	if err == nil || !strings.Contains(err.Error(), "stopped while booting") || !strings.Contains(err.Error(), "fleet-e2e is dying") {
		t.Errorf("Boot of a dying container: %v", err)
	} else {
		t.Logf("Boot: %v", err)
	}
	if err := b.Destroy(context.Background(), m.ID); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	assertGone(t, b, m.ID)
}

func TestDockerHostListeners(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.155:0")
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, hl := range hostListeners() {
		if hl.port == port && hl.ip.Equal(net.ParseIP("127.0.0.155")) {
			return
		}
	}
	t.Errorf("hostListeners does not list 127.0.0.155:%d", port)
}

func TestDockerDestroyUnknown(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	if err := b.Destroy(context.Background(), 123456789); err != nil {
		t.Errorf("Destroy of a droplet that never was: %v", err)
	}
}

func TestDockerRoute(t *testing.T) {
	r := &recordingRouter{}
	b := &DockerBackend{Router: r}
	if err := b.Route(context.Background(), "127.0.0.200", "127.0.0.2"); err != nil || r.got != "127.0.0.200->127.0.0.2" {
		t.Errorf("Route: %v, router got %q", err, r.got)
	}
	if err := (&DockerBackend{}).Route(context.Background(), "127.0.0.200", ""); err != nil {
		t.Errorf("Route without a router: %v", err)
	}
}

type recordingRouter struct{ got string }

func (r *recordingRouter) Set(ip, target string) error {
	r.got = ip + "->" + target
	return nil
}

// BenchmarkDropletBootToSSH boots droplets from the cached image and
// reports the seconds from Boot's start until root can log in with SSH
// (ssh-s), until Boot returns (boot-s), and the droplet's idle memory.
func BenchmarkDropletBootToSSH(b *testing.B) {
	be := newDockerTestBackend(b)
	key, pub := e2eSSHKey(b)
	const ip = "127.0.0.152"
	ctx := context.Background()
	var sshTotal, bootTotal, memTotal float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := Machine{
			ID: 710000 + i, Name: fmt.Sprintf("e2e-%s-bench-%d", be.Instance, i), PublicIPv4: ip,
			SSHKeys: []string{pub}, UserData: e2eUserData,
		}
		start := time.Now()
		booted := make(chan error, 1)
		go func() { booted <- be.Boot(ctx, m) }()
		var sshAt, bootAt time.Duration
		for sshAt == 0 {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := sshRun(pctx, key, ip, "true")
			cancel()
			if err == nil {
				sshAt = time.Since(start)
				break
			}
			select {
			case err := <-booted:
				if err != nil {
					b.Fatalf("Boot: %v", err)
				}
				bootAt = time.Since(start)
				booted = nil
			default:
			}
			if time.Since(start) > 3*time.Minute {
				b.Fatal("no SSH within 3 minutes")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if booted != nil {
			if err := <-booted; err != nil {
				b.Fatalf("Boot: %v", err)
			}
			bootAt = time.Since(start)
		}
		b.StopTimer()
		time.Sleep(5 * time.Second)
		mem := idleMiB(b, be.ContainerName(m.Name))
		b.Logf("boot %d: ssh %.2fs, booted %.2fs, idle %.1f MiB", i, sshAt.Seconds(), bootAt.Seconds(), mem)
		sshTotal += sshAt.Seconds()
		bootTotal += bootAt.Seconds()
		memTotal += mem
		if err := be.Destroy(ctx, m.ID); err != nil {
			b.Fatalf("Destroy: %v", err)
		}
		b.StartTimer()
	}
	b.ReportMetric(sshTotal/float64(b.N), "ssh-s")
	b.ReportMetric(bootTotal/float64(b.N), "boot-s")
	b.ReportMetric(memTotal/float64(b.N), "idle-MiB")
}

// The repository's template on the bare image: its install path runs
// under real cloud-init and systemd (Docker, Compose v2, postfix as a
// satellite, cron, with Recommends, non-interactively), the droplet's
// dockerd pulls through the registry mirror and runs containers whose
// memory counts as the droplet's, and the host's `docker stats` keeps
// working. apt and Docker go through the local cloud's mirrors, as a
// local cloud's droplets do.
func TestDockerTemplateInstall(t *testing.T) {
	t.Parallel()
	b := newDockerTestBackend(t)
	mctx, mcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	mirrors, err := EnsureMirrors(mctx, testWriter{t})
	mcancel()
	if err != nil {
		t.Fatal(err)
	}
	b.AptProxy, b.RegistryMirror = mirrors.AptProxy, mirrors.RegistryMirror
	key, pub := e2eSSHKey(t)
	name := "e2e-" + b.Instance + "-tmpl"
	ud, err := cloudinit.Render(filepath.Join("..", "..", "cloud-init", "droplet.yaml"), cloudinit.Data{
		Project: "e2e", Version: "v1.0.0", DropletName: name, DeployID: "abc123",
	})
	if err != nil {
		t.Fatal(err)
	}
	m := Machine{ID: 700007, Name: name, PublicIPv4: "127.0.0.157", UserData: string(ud), SSHKeys: []string{pub}}
	c := b.ContainerName(m.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cgroupsBefore := hostCgroupHierarchies(t)

	start := time.Now()
	if err := b.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	active := time.Since(start)
	sshAt, _ := waitSSH(t, key, m.PublicIPv4, 2*time.Minute)
	status, err := waitCloudInit(t, c, 12*time.Minute)
	done := time.Since(start)
	t.Logf("container start to active %v, to sshd %v, to cloud-init done %v", active.Round(time.Millisecond),
		sshAt.Sub(start).Round(time.Millisecond), done.Round(time.Millisecond))
	if err != nil || !strings.Contains(status, "extended_status: done") {
		log, _ := dexec(t, c, "tail", "-n", "60", "/var/log/cloud-init-output.log")
		t.Fatalf("cloud-init status: %v\n%s\ncloud-init-output.log:\n%s", err, status, log)
	}
	if out, _ := dexec(t, c, "systemctl", "is-system-running"); out != "running" {
		failed, _ := dexec(t, c, "systemctl", "--failed", "--no-legend")
		t.Errorf("systemctl is-system-running: %s; failed units:\n%s", out, failed)
	}
	for _, check := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"systemctl", "is-active", "docker", "containerd", "postfix", "cron", "fleet-http"}, "active\nactive\nactive\nactive\nactive"},
		{[]string{"systemctl", "is-enabled", "docker", "postfix", "cron"}, "enabled\nenabled\nenabled"},
		{[]string{"docker", "compose", "version", "--short"}, "2."},
		{[]string{"postconf", "-h", "relayhost", "inet_interfaces", "mydestination"}, "[127.0.0.1]:2525\nloopback-only\n"},
		{[]string{"curl", "-fsS", "--max-time", "5", "http://127.0.0.1/"}, "fleet e2e v1.0.0"},
	} {
		out, err := dexec(t, c, check.cmd...)
		if err != nil || !strings.HasPrefix(out+"\n", check.want) {
			t.Errorf("%s: %v\n%q, want %q", strings.Join(check.cmd, " "), err, out, check.want)
		}
	}
	if out, err := dexec(t, c, "dpkg-query", "-W", "-f", "${Package} ", "docker-buildx", "needrestart", "git"); err != nil {
		t.Logf("Recommends installed: %s (%v)", out, err)
	} else {
		t.Logf("Recommends installed: %s", out)
	}
	if out, err := sshRun(ctx, key, m.PublicIPv4, "docker info --format '{{.CgroupDriver}} {{.Driver}}'"); err != nil {
		t.Errorf("ssh docker info: %v %s", err, out)
	} else {
		t.Logf("droplet dockerd: cgroup driver and storage %s", out)
	}

	// The droplet's dockerd pulls through the registry mirror (Docker Hub
	// is out of reach) and runs containers inside the droplet's cgroup.
	pullStart := time.Now()
	if out, err := dexec(t, c, "docker", "pull", "-q", dropletBaseImage); err != nil {
		t.Fatalf("docker pull %s in the droplet: %v\n%s", dropletBaseImage, err, out)
	}
	t.Logf("docker pull %s through the registry mirror took %v", dropletBaseImage, time.Since(pullStart).Round(time.Millisecond))
	before := idleMiB(t, c)
	if out, err := dexec(t, c, "docker", "run", "-d", "--name", "hog", dropletBaseImage,
		"sh", "-c", `x=$(head -c 150000000 /dev/zero | tr '\0' a); sleep 600`); err != nil {
		t.Fatalf("docker run in the droplet: %v\n%s", err, out)
	}
	var after float64
	for i := 0; i < 30; i++ {
		time.Sleep(time.Second)
		if after = idleMiB(t, c); after-before >= 100 {
			break
		}
	}
	t.Logf("droplet memory before and with a 150 MB container in it: %.1f MiB, %.1f MiB", before, after)
	if after-before < 100 {
		t.Errorf("a 150 MB container in the droplet added %.1f MiB to the droplet's memory", after-before)
	}
	id, err := docker(ctx, nil, "inspect", "--format", "{{.Id}}", c)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := dexec(t, c, "sh", "-c", "grep :memory: /proc/$(docker inspect -f '{{.State.Pid}}' hog)/cgroup"); err != nil || (!b.isCgroupV2(ctx) && !strings.Contains(out, id)) {
		t.Errorf("the droplet's container's memory cgroup is not under the droplet's (%s): %q %v", id, out, err)
	}

	// The host's docker stats works for a container made now.
	if after := hostCgroupHierarchies(t); after != cgroupsBefore {
		t.Errorf("host cgroup hierarchies changed:\nbefore %s\nafter  %s", cgroupsBefore, after)
	}
	probe := "fleet-e2e-stats-" + b.Instance
	if out, err := docker(ctx, nil, "run", "-d", "--rm", "--name", probe, "--label", "fleet.instance="+b.Instance, dropletBaseImage, "sleep", "120"); err != nil {
		t.Fatalf("docker run on the host: %v %s", err, out)
	}
	defer docker(context.Background(), nil, "rm", "-f", probe)
	if mib := idleMiB(t, probe); mib <= 0 {
		t.Errorf("the host's docker stats shows no memory for a new container while a droplet runs containers")
	}
}
