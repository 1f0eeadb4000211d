//go:build e2e

package localcloud

// The package and image mirrors on a real Docker engine. Run with
//
//	go test -tags e2e ./internal/localcloud/ -run Mirror -v
//
// They need a running dockerd, debian:trixie-slim and a reachable Debian
// mirror (deb.debian.org) the first time. The mirrors are engine-wide and
// stay running afterwards, as for `fleet local serve`.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMirrorsE2E(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	m1, err := EnsureMirrors(ctx, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	ids1 := mirrorIDs(t, ctx)

	start = time.Now()
	m2, err := EnsureMirrors(ctx, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	warm := time.Since(start)
	t.Logf("EnsureMirrors: first call %v, second %v; %+v", first.Round(time.Millisecond), warm.Round(time.Millisecond), m1)
	if m2 != m1 {
		t.Errorf("second EnsureMirrors = %+v, first %+v", m2, m1)
	}
	if ids2 := mirrorIDs(t, ctx); ids2 != ids1 {
		t.Errorf("second EnsureMirrors changed the containers: %v, then %v", ids1, ids2)
	}
	if warm > 5*time.Second {
		t.Errorf("second EnsureMirrors took %v, want < 5s (nothing to do)", warm)
	}
	aptHost := checkMirrorURL(t, "AptProxy", m1.AptProxy, 3142)
	regHost := checkMirrorURL(t, "RegistryMirror", m1.RegistryMirror, 5000)
	if got, want := m1.RegistryHost(), regHost+":5000"; got != want {
		t.Errorf("RegistryHost() = %q, want %q", got, want)
	}

	t.Run("apt", func(t *testing.T) { testAptThroughProxy(t, ctx, m1.AptProxy, aptHost) })
	t.Run("registry", func(t *testing.T) { testRegistrySeeded(t, ctx, regHost) })
}

// mirrorIDs returns the IDs of both mirror containers.
func mirrorIDs(t *testing.T, ctx context.Context) [2]string {
	t.Helper()
	var ids [2]string
	for i, name := range []string{AptMirrorContainer, RegistryContainer} {
		out, err := docker(ctx, nil, "inspect", "--format", "{{.Id}}", name)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = out
	}
	return ids
}

// checkMirrorURL checks that raw is http://<IPv4 on the default bridge>:port
// and returns the IP.
func checkMirrorURL(t *testing.T, what, raw string, port int) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Port() != strconv.Itoa(port) || u.Path != "" {
		t.Fatalf("%s = %q, want http://IP:%d", what, raw, port)
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || ip.To4() == nil || ip.IsLoopback() || ip.IsUnspecified() {
		t.Fatalf("%s = %q: want an IPv4 address droplets reach", what, raw)
	}
	return u.Hostname()
}

// aptScript installs pkg in a trixie container through the proxy, with
// deb822 http sources like DigitalOcean's debian-13-x64.
const aptScript = `set -e
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*
cat >/etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $URI
Suites: trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.debian.org/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
echo "Acquire::http::Proxy \"$PROXY\";" >/etc/apt/apt.conf.d/01proxy
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get -q -y --no-install-recommends install "$PKG"
dpkg -s "$PKG" | grep -q '^Status: install ok installed'
`

const debianMirror = "http://deb.debian.org/debian"

func testAptThroughProxy(t *testing.T, ctx context.Context, proxy, ip string) {
	const pkg = "hello"
	install := func(uri string) time.Duration {
		start := time.Now()
		// No network trick: droplets sit on the default bridge like this.
		out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "-e", "PROXY="+proxy, "-e", "PKG="+pkg, "-e", "URI="+uri,
			dropletBaseImage, "sh", "-c", aptScript).CombinedOutput()
		if err != nil {
			t.Fatalf("apt-get through %s: %v\n%s", proxy, err, out)
		}
		return time.Since(start)
	}
	before := acngCounts(t, ctx, pkg)
	d1 := install(debianMirror)
	mid := acngCounts(t, ctx, pkg)
	d2 := install(debianMirror)
	after := acngCounts(t, ctx, pkg)
	t.Logf("apt-get update+install %s through %s: first %v, second %v (log counts of %s_*.deb fetched/served: %v, %v, %v)",
		pkg, proxy, d1.Round(time.Millisecond), d2.Round(time.Millisecond), pkg, before, mid, after)
	if mid.served != before.served+1 {
		t.Errorf("first install: apt-cacher-ng served the .deb %d times, want 1", mid.served-before.served)
	}
	if after.served != mid.served+1 || after.fetched != mid.fetched {
		t.Errorf("second install: served %d, fetched upstream %d times; want 1 and 0 (a cache hit)", after.served-mid.served, after.fetched-mid.fetched)
	}
	// DigitalOcean's mirror, as a droplet's sources may name it, works
	// through the proxy (only: the local cloud cannot reach it).
	d3 := install("http://mirrors.digitalocean.com/debian")
	t.Logf("through %s with mirrors.digitalocean.com sources: %v", proxy, d3.Round(time.Millisecond))

	// The cache is on the volume (the log is not: a replaced container
	// starts a new one).
	out, err := docker(ctx, nil, "exec", AptMirrorContainer, "find", aptMirrorSpec.mount, "-name", pkg+"_*.deb")
	if err != nil || !strings.Contains(out, "/"+pkg+"_") {
		t.Errorf("%s_*.deb not in the cache %s: %q %v", pkg, aptMirrorSpec.mount, out, err)
	}
}

// acngCount counts apt-cacher-ng's log lines about a package's .deb:
// fetched from upstream ("I") and served to a client ("O").
type acngCount struct{ fetched, served int }

func acngCounts(t *testing.T, ctx context.Context, pkg string) acngCount {
	t.Helper()
	out, err := docker(ctx, nil, "exec", AptMirrorContainer, "tail", "-n", "20000", "/var/log/apt-cacher-ng/apt-cacher.log")
	if err != nil {
		t.Fatal(err)
	}
	var c acngCount
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) < 5 || !strings.Contains(f[4], "/"+pkg+"_") || !strings.HasSuffix(f[4], ".deb") {
			continue
		}
		switch f[1] {
		case "I":
			c.fetched++
		case "O":
			c.served++
		}
	}
	return c
}

func testRegistrySeeded(t *testing.T, ctx context.Context, ip string) {
	addr := registryHostAddr(t, ctx)
	code, body, err := mirrorGet(ctx, "http://"+addr+"/v2/library/debian/tags/list", nil)
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), `"trixie-slim"`) {
		t.Fatalf("tags of library/debian: %d %s %v", code, body, err)
	}
	id, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", dropletBaseImage)
	if err != nil {
		t.Fatal(err)
	}
	config, manifest, err := registryDigests(ctx, addr, hubRef{"library/debian", "trixie-slim"})
	if err != nil || (config != id && manifest != id) {
		t.Fatalf("registry's library/debian:trixie-slim is %s (manifest %s), host's %s is %s (%v)", config, manifest, dropletBaseImage, id, err)
	}
	// From the droplets' side: the registry's bridge address, from a
	// container on the default bridge (bash's /dev/tcp: no curl there).
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/5000 && printf 'GET /v2/library/debian/tags/list HTTP/1.0\r\n\r\n' >&3 && cat <&3`, ip)
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", dropletBaseImage, "bash", "-c", script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"trixie-slim"`) {
		t.Fatalf("registry from a container at %s:5000: %v\n%s", ip, err, out)
	}
}

// registryHostAddr is the registry's 127.0.0.1:port.
func registryHostAddr(t *testing.T, ctx context.Context) string {
	t.Helper()
	st, ok, err := inspectMirror(ctx, RegistryContainer, 5000)
	if err != nil || !ok || st.hostAddr == "" {
		t.Fatalf("inspect %s: %+v %v %v", RegistryContainer, st, ok, err)
	}
	return st.hostAddr
}

// TestMirrorSeedE2E: a seed is pushed when it is new or changed on the
// host, and not when the registry has it.
func TestMirrorSeedE2E(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := EnsureMirrors(ctx, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	addr := registryHostAddr(t, ctx)
	const ref = "fleet-e2e/seed:test"
	r, _ := parseHubRef(ref)
	build := func(v string) string {
		cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", ref, "-")
		cmd.Stdin = strings.NewReader("FROM " + dropletBaseImage + "\nLABEL fleet.e2e.seed=" + v + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docker build: %v\n%s", err, out)
		}
		id, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	t.Cleanup(func() {
		if _, manifest, err := registryDigests(context.Background(), addr, r); err == nil && manifest != "" {
			req, _ := http.NewRequest(http.MethodDelete, "http://"+addr+"/v2/"+r.repo+"/manifests/"+manifest, nil)
			if resp, err := mirrorHTTP.Do(req); err == nil {
				resp.Body.Close()
			}
		}
		docker(context.Background(), nil, "image", "rm", ref)
	})
	seed := func(want string) bool {
		var log strings.Builder
		start := time.Now()
		if err := seedRegistry(ctx, addr, []string{dropletBaseImage, ref}, &log); err != nil {
			t.Fatal(err)
		}
		t.Logf("seedRegistry in %v: %q", time.Since(start).Round(time.Millisecond), log.String())
		config, manifest, err := registryDigests(ctx, addr, r)
		if err != nil || (config != want && manifest != want) {
			t.Fatalf("registry has %s (%s), want %s (%v)", config, manifest, want, err)
		}
		return strings.Contains(log.String(), "seeding")
	}
	id1 := build(strconv.FormatInt(time.Now().UnixNano(), 10))
	if !seed(id1) {
		t.Error("a new image was not pushed")
	}
	if seed(id1) {
		t.Error("an unchanged image was pushed again")
	}
	id2 := build(strconv.FormatInt(time.Now().UnixNano(), 10) + "b")
	if id2 == id1 {
		t.Fatal("the rebuilt image has the same ID")
	}
	if !seed(id2) {
		t.Error("a changed image was not pushed")
	}
}

// TestMirrorRaceE2E: processes starting a mirror at once end up sharing
// one container, also when they replace an old recipe's.
func TestMirrorRaceE2E(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	image, _, err := ensureMirrorImage(ctx, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	spec := registrySpec
	spec.name, spec.kind, spec.volume = "fleet-e2e-mirror-race", "e2e", "fleet-e2e-mirror-race"
	t.Cleanup(func() {
		docker(context.Background(), nil, "rm", "-f", spec.name)
		docker(context.Background(), nil, "volume", "rm", spec.volume)
	})
	for _, hash := range []string{"race1", "race2"} {
		const n = 4
		var wg sync.WaitGroup
		states := make([]mirrorState, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				states[i], errs[i] = ensureMirror(ctx, spec, image, hash, testWriter{t})
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("%s: ensureMirror %d: %v", hash, i, errs[i])
			}
			if states[i].id != states[0].id || states[i].recipe != hash {
				t.Errorf("%s: ensureMirror %d got container %.12s (recipe %s), 0 got %.12s", hash, i, states[i].id, states[i].recipe, states[0].id)
			}
		}
		out, err := docker(ctx, nil, "ps", "-aq", "--filter", "name=^"+spec.name+"$")
		if err != nil || len(strings.Fields(out)) != 1 {
			t.Errorf("%s: containers named %s: %q %v", hash, spec.name, out, err)
		}
	}
}

// TestMirrorFailsE2E: a mirror that cannot start fails EnsureMirrors'
// wait soon, with its name and its log's tail.
func TestMirrorFailsE2E(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	image, _, err := ensureMirrorImage(ctx, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	spec := registrySpec
	spec.name, spec.kind, spec.volume = "fleet-e2e-mirror-fail", "e2e", "fleet-e2e-mirror-fail"
	spec.cmd = []string{"sh", "-c", "echo fleet-e2e-boom >&2; exit 3"}
	t.Cleanup(func() {
		docker(context.Background(), nil, "rm", "-f", spec.name)
		docker(context.Background(), nil, "volume", "rm", spec.volume)
	})
	start := time.Now()
	_, err = ensureMirror(ctx, spec, image, "fail", testWriter{t})
	took := time.Since(start)
	t.Logf("failed after %v: %v", took.Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), spec.name) || !strings.Contains(err.Error(), "fleet-e2e-boom") {
		t.Fatalf("err = %v, want one naming %s with its log", err, spec.name)
	}
	if took > 30*time.Second {
		t.Errorf("took %v to fail, want < 30s", took)
	}
}
