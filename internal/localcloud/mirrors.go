package localcloud

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The local cloud's package and image mirrors, standing in for the mirror
// a DigitalOcean droplet's apt uses and for Docker Hub: Debian's
// apt-cacher-ng and docker-registry, each in a container of the image
// fleet-mirror:<hash of mirror-image/>. They are engine-wide: every local
// cloud on the Docker engine shares them (container fleet-apt-mirror,
// cache on volume fleet-apt-cache; container fleet-registry, data on
// volume fleet-registry-data). Each publishes its port on 127.0.0.1 only
// (for readiness probes and seeding); droplets reach them at their
// container addresses on Docker's default bridge.

//go:embed mirror-image
var mirrorImageFS embed.FS

const (
	mirrorImageRepo = "fleet-mirror"
	mirrorImageDir  = "mirror-image"

	// AptMirrorContainer and RegistryContainer name the mirrors' containers.
	AptMirrorContainer = "fleet-apt-mirror"
	RegistryContainer  = "fleet-registry"

	labelMirror = "fleet.mirror" // "apt" or "registry"
	labelRecipe = "fleet.recipe" // the recipe hash of the container's image

	// mirrorReadyTimeout bounds the wait for a mirror to answer once its
	// container runs (both start in well under a second).
	mirrorReadyTimeout = 60 * time.Second
	// maxMirrorBody caps what is read from a mirror's HTTP answer.
	maxMirrorBody = 1 << 20
)

// Mirrors are the addresses droplets use.
type Mirrors struct {
	// AptProxy is apt-cacher-ng's URL, for apt's Acquire::http::Proxy,
	// e.g. "http://172.17.0.2:3142". apt fetches http sources through it
	// (cached) and https ones through CONNECT (not cached).
	AptProxy string
	// RegistryMirror is the registry's URL, for dockerd's
	// "registry-mirrors", e.g. "http://172.17.0.3:5000". It is plain
	// HTTP: BuildKit (docker build with docker-buildx) also needs its
	// host:port (RegistryHost) in "insecure-registries"; `docker pull`
	// alone does not.
	RegistryMirror string
}

// RegistryHost is RegistryMirror's host:port ("" if it has none), the
// entry dockerd's "insecure-registries" needs.
func (m Mirrors) RegistryHost() string {
	if _, rest, ok := strings.Cut(m.RegistryMirror, "://"); ok {
		return strings.TrimSuffix(rest, "/")
	}
	return ""
}

// mirrorSeeds are the host images copied into the registry as Docker Hub
// would name them. The first is required (the droplet image's base, which
// EnsureMirrors makes if missing); the others are copied if the host has
// them.
var mirrorSeeds = []string{dropletBaseImage, "axllent/mailpit:latest"}

// mirrorSpec describes one mirror container.
type mirrorSpec struct {
	name   string   // container name
	kind   string   // labelMirror value
	volume string   // named volume for its data
	mount  string   // where the volume goes
	user   string   // the package's system user
	port   int      // the port it serves in the container
	probe  string   // path answering 200 once it is ready
	cmd    []string // command in the image
}

var (
	aptMirrorSpec = mirrorSpec{
		name: AptMirrorContainer, kind: "apt", volume: "fleet-apt-cache",
		mount: "/var/cache/apt-cacher-ng", user: "apt-cacher-ng", port: 3142,
		probe: "/acng-report.html",
		cmd:   []string{"apt-cacher-ng", "-c", "/etc/apt-cacher-ng"},
	}
	registrySpec = mirrorSpec{
		name: RegistryContainer, kind: "registry", volume: "fleet-registry-data",
		mount: "/var/lib/docker-registry", user: "docker-registry", port: 5000,
		probe: "/v2/",
		cmd:   []string{"docker-registry", "serve", "/etc/docker/registry/fleet.yml"},
	}
)

// mirrorsMu serializes EnsureMirrors within the process; across processes
// Docker's unique container names decide (see ensureMirror).
var mirrorsMu sync.Mutex

// EnsureMirrors makes sure the package and image mirrors run and returns
// their addresses. The first call on an engine builds fleet-mirror (half a
// minute) and starts both containers; later calls find them running (a
// few Docker calls) and start them if stopped, or replace them if their
// recipe changed. It then copies the host's seed images into the registry
// that it lacks or that changed on the host. Progress goes to logw (may
// be nil).
func EnsureMirrors(ctx context.Context, logw io.Writer) (Mirrors, error) {
	if logw == nil {
		logw = io.Discard
	}
	mirrorsMu.Lock()
	defer mirrorsMu.Unlock()
	if err := dockerEngineAnswers(ctx); err != nil {
		return Mirrors{}, err
	}
	// The base image is the first seed, and the mirror image's base.
	if err := ensureBaseImage(ctx, logw); err != nil {
		return Mirrors{}, err
	}
	image, hash, err := ensureMirrorImage(ctx, logw)
	if err != nil {
		return Mirrors{}, err
	}
	apt, err := ensureMirror(ctx, aptMirrorSpec, image, hash, logw)
	if err != nil {
		return Mirrors{}, err
	}
	reg, err := ensureMirror(ctx, registrySpec, image, hash, logw)
	if err != nil {
		return Mirrors{}, err
	}
	if err := seedRegistry(ctx, reg.hostAddr, mirrorSeeds, logw); err != nil {
		return Mirrors{}, err
	}
	return Mirrors{
		AptProxy:       "http://" + net.JoinHostPort(apt.ip, strconv.Itoa(aptMirrorSpec.port)),
		RegistryMirror: "http://" + net.JoinHostPort(reg.ip, strconv.Itoa(registrySpec.port)),
	}, nil
}

// dockerEngineAnswers says, as an error, why the Docker engine cannot be
// used: no docker CLI, or no engine answering it.
func dockerEngineAnswers(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("cannot reach the Docker engine: the docker CLI is not on PATH (install docker.io or Docker Engine)")
	}
	if _, err := docker(ctx, nil, "version", "--format", "{{.Server.Version}}"); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot reach the Docker engine: is dockerd running? (%v)", err)
	}
	return nil
}

// readRecipe reads the embedded files under dir, sorted by name.
func readRecipe(fsys fs.FS, dir string) ([]recipeFile, error) {
	var files []recipeFile
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files = append(files, recipeFile{name: strings.TrimPrefix(p, dir+"/"), data: data})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, err
}

// MirrorImageTag is the tag of the mirrors' image of this fleet build.
func MirrorImageTag() string {
	files, err := readRecipe(mirrorImageFS, mirrorImageDir)
	if err != nil {
		panic(err) // the files are embedded: cannot happen
	}
	return mirrorImageRepo + ":" + recipeHash(files)
}

// ensureMirrorImage builds fleet-mirror:<hash> unless Docker has it.
func ensureMirrorImage(ctx context.Context, logw io.Writer) (tag, hash string, err error) {
	files, err := readRecipe(mirrorImageFS, mirrorImageDir)
	if err != nil {
		return "", "", fmt.Errorf("mirror image recipe: %w", err)
	}
	hash = recipeHash(files)
	tag = mirrorImageRepo + ":" + hash
	if ok, err := imageExists(ctx, tag); err != nil || ok {
		return tag, hash, err
	}
	fmt.Fprintf(logw, "building the mirror image %s (once per recipe change)\n", tag)
	if err := buildRecipe(ctx, files, tag, hash, logw); err != nil {
		return "", "", fmt.Errorf("building the mirror image %s: %w", tag, err)
	}
	return tag, hash, nil
}

// buildRecipe writes files to a temporary directory and builds it as tag,
// labelled with its recipe hash.
func buildRecipe(ctx context.Context, files []recipeFile, tag, hash string, logw io.Writer) error {
	dir, err := os.MkdirTemp("", "fleet-recipe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, f := range files {
		mode := os.FileMode(0o644)
		if bytes.HasPrefix(f.data, []byte("#!")) {
			mode = 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, mode); err != nil {
			return err
		}
	}
	tail := &tailBuffer{max: 4096}
	cmd := exec.CommandContext(ctx, "docker", "build", "--label", labelRecipe+"="+hash, "-t", tag, dir)
	cmd.Stdout = io.MultiWriter(logw, tail)
	cmd.Stderr = io.MultiWriter(logw, tail)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%v\n%s", err, tail.String())
	}
	return nil
}

// mirrorState is what ensureMirror reads of a mirror's container.
type mirrorState struct {
	id       string
	status   string // created, running, restarting, exited, ...
	restarts int    // how often its restart policy restarted it
	recipe   string // labelRecipe
	ip       string // on the default bridge
	hostAddr string // 127.0.0.1:port published for the mirror's port
}

// inspectMirror reads container name's state; ok is false if there is no
// such container.
func inspectMirror(ctx context.Context, name string, port int) (st mirrorState, ok bool, err error) {
	out, err := docker(ctx, nil, "container", "inspect", name)
	if err != nil {
		if isNoSuch(err) {
			return st, false, nil
		}
		return st, false, err
	}
	st, err = parseMirrorInspect([]byte(out), port)
	return st, err == nil, err
}

// parseMirrorInspect reads `docker container inspect` output of one
// container.
func parseMirrorInspect(data []byte, port int) (mirrorState, error) {
	var cs []struct {
		ID           string `json:"Id"`
		RestartCount int
		State        struct {
			Status string
		}
		Config struct {
			Labels map[string]string
		}
		NetworkSettings struct {
			IPAddress string
			Networks  map[string]struct{ IPAddress string }
			Ports     map[string][]struct{ HostIp, HostPort string }
		}
	}
	if err := json.Unmarshal(data, &cs); err != nil {
		return mirrorState{}, fmt.Errorf("docker inspect: %w", err)
	}
	if len(cs) != 1 {
		return mirrorState{}, fmt.Errorf("docker inspect: %d containers, want 1", len(cs))
	}
	c := cs[0]
	st := mirrorState{id: c.ID, status: c.State.Status, restarts: c.RestartCount, recipe: c.Config.Labels[labelRecipe]}
	st.ip = c.NetworkSettings.IPAddress
	if n, ok := c.NetworkSettings.Networks["bridge"]; ok && n.IPAddress != "" {
		st.ip = n.IPAddress
	}
	for _, b := range c.NetworkSettings.Ports[strconv.Itoa(port)+"/tcp"] {
		if b.HostIp == "127.0.0.1" && b.HostPort != "" {
			st.hostAddr = net.JoinHostPort(b.HostIp, b.HostPort)
		}
	}
	return st, nil
}

// ensureMirror makes sure spec's container runs the image of recipe hash
// and answers, and returns its state. Several processes may do this at
// once: every change is made by container ID (never by name, which a
// rival may have reused) and followed by a fresh read, and a rival's
// container of the same name makes `docker run` fail, after which its
// container is read and used.
func ensureMirror(ctx context.Context, spec mirrorSpec, image, hash string, logw io.Writer) (mirrorState, error) {
	const attempts = 8
	last := errors.New("none")
	restarting := false
	for i := 0; i < attempts; i++ {
		if err := ctx.Err(); err != nil {
			return mirrorState{}, err
		}
		st, ok, err := inspectMirror(ctx, spec.name, spec.port)
		if err != nil {
			return mirrorState{}, fmt.Errorf("mirror %s: %w", spec.name, err)
		}
		switch {
		case !ok:
			fmt.Fprintf(logw, "starting %s (%s)\n", spec.name, image)
			if _, err := docker(ctx, nil, mirrorRunArgs(spec, image, hash)...); err != nil {
				if isNameConflict(err) {
					last = err
					continue // a rival made it first: read theirs
				}
				return mirrorState{}, fmt.Errorf("starting mirror %s: %w%s", spec.name, err, mirrorLogs(spec.name))
			}
		case st.recipe != hash:
			fmt.Fprintf(logw, "replacing %s (recipe %s, now %s)\n", spec.name, st.recipe, hash)
			if _, err := docker(ctx, nil, "rm", "-f", st.id); err != nil && !isNoSuch(err) && !isRemovalInProgress(err) {
				return mirrorState{}, fmt.Errorf("replacing mirror %s: %w", spec.name, err)
			}
		case st.status == "restarting":
			// It exited and its restart policy brings it back: once may
			// be chance, twice in a row is a crash loop.
			if restarting {
				return mirrorState{}, fmt.Errorf("mirror %s keeps exiting (restarted %d times)%s", spec.name, st.restarts, mirrorLogs(spec.name))
			}
			restarting = true
			select {
			case <-ctx.Done():
				return mirrorState{}, ctx.Err()
			case <-time.After(2 * time.Second):
			}
		case st.status != "running":
			fmt.Fprintf(logw, "starting %s (was %s)\n", spec.name, st.status)
			if _, err := docker(ctx, nil, "start", st.id); err != nil {
				if isNoSuch(err) {
					last = err
					continue
				}
				return mirrorState{}, fmt.Errorf("starting mirror %s: %w%s", spec.name, err, mirrorLogs(spec.name))
			}
		case st.ip == "" || st.hostAddr == "":
			return mirrorState{}, fmt.Errorf("mirror %s runs but has no address on Docker's default bridge (ip %q) or no port on 127.0.0.1 (%q): remove it with `docker rm -f %s` and try again", spec.name, st.ip, st.hostAddr, spec.name)
		default:
			if err := waitMirror(ctx, spec, st); err != nil {
				return mirrorState{}, err
			}
			return st, nil
		}
	}
	return mirrorState{}, fmt.Errorf("mirror %s: no stable container after %d tries (another process keeps changing it?): %v", spec.name, attempts, last)
}

// mirrorRunArgs are the `docker run` arguments of spec's container.
func mirrorRunArgs(spec mirrorSpec, image, hash string) []string {
	args := []string{"run", "-d", "--name", spec.name,
		"--label", labelMirror + "=" + spec.kind,
		"--label", labelRecipe + "=" + hash,
		"--restart", "unless-stopped",
		"--user", spec.user,
		// Loopback only: nothing of the local cloud listens on the
		// host's other addresses.
		"-p", "127.0.0.1::" + strconv.Itoa(spec.port),
		"--mount", "type=volume,source=" + spec.volume + ",target=" + spec.mount,
		"--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=2",
		image}
	return append(args, spec.cmd...)
}

// waitMirror polls spec's probe over the published port until it answers
// 200, the container stops, mirrorReadyTimeout passes or ctx ends.
func waitMirror(ctx context.Context, spec mirrorSpec, st mirrorState) error {
	ctx, cancel := context.WithTimeout(ctx, mirrorReadyTimeout)
	defer cancel()
	url := "http://" + st.hostAddr + spec.probe
	delay := 50 * time.Millisecond
	var last error
	for n := 0; ; n++ {
		code, _, err := mirrorGet(ctx, url, nil)
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("GET %s: status %d", url, code)
		}
		if n%4 == 3 { // now and then: has it died?
			if cur, ok, err := inspectMirror(ctx, spec.name, spec.port); err == nil && (!ok || cur.id != st.id || cur.status != "running" || cur.restarts != st.restarts) {
				return fmt.Errorf("mirror %s stopped or restarted while starting (%v)%s", spec.name, last, mirrorLogs(spec.name))
			}
		}
		select {
		case <-ctx.Done():
			if parent := context.Cause(ctx); errors.Is(parent, context.Canceled) {
				return parent
			}
			return fmt.Errorf("mirror %s did not answer within %s (%v)%s", spec.name, mirrorReadyTimeout, last, mirrorLogs(spec.name))
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// mirrorLogs is the tail of container name's log, for an error message.
func mirrorLogs(name string) string {
	return "\nlast lines of `docker logs " + name + "`:\n" + logTail(name, 20)
}

// isRemovalInProgress says whether err is Docker's answer to a removal
// of a container that another client is removing.
func isRemovalInProgress(err error) bool {
	var de *dockerError
	return errors.As(err, &de) && strings.Contains(de.stderr, "already in progress")
}

// isNameConflict says whether err is Docker's "name already in use".
func isNameConflict(err error) bool {
	var de *dockerError
	return errors.As(err, &de) && strings.Contains(de.stderr, "is already in use")
}

var mirrorHTTP = &http.Client{Timeout: 10 * time.Second}

// mirrorGet GETs url with the given headers and returns the status and
// the first maxMirrorBody bytes of the body.
func mirrorGet(ctx context.Context, url string, header http.Header) (int, []byte, error) {
	code, body, _, err := mirrorGetHeader(ctx, url, header)
	return code, body, err
}

// mirrorGetHeader is mirrorGet that also returns the response headers.
func mirrorGetHeader(ctx context.Context, url string, header http.Header) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := mirrorHTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMirrorBody))
	return resp.StatusCode, body, resp.Header, err
}

// Docker's grammar of a repository path component and of a tag.
var (
	hubComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	hubTagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// hubRef is an image of Docker Hub as the registry stores it.
type hubRef struct{ repo, tag string }

// parseHubRef turns a Docker Hub reference ("debian:trixie-slim",
// "axllent/mailpit", "library/debian:13") into its repository path and
// tag; a reference naming another registry or a digest is an error.
func parseHubRef(ref string) (hubRef, error) {
	if ref == "" || len(ref) > 255 {
		return hubRef{}, fmt.Errorf("image %q: empty or too long", ref)
	}
	if strings.Contains(ref, "@") {
		return hubRef{}, fmt.Errorf("image %q: a digest cannot be seeded, name a tag", ref)
	}
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	parts := strings.Split(name, "/")
	if first := parts[0]; len(parts) > 1 && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if first != "docker.io" && first != "index.docker.io" {
			return hubRef{}, fmt.Errorf("image %q: not a Docker Hub image (registry %s)", ref, first)
		}
		parts = parts[1:]
	}
	if len(parts) == 1 {
		parts = []string{"library", parts[0]}
	}
	for _, p := range parts {
		if !hubComponentRE.MatchString(p) {
			return hubRef{}, fmt.Errorf("image %q: bad name component %q", ref, p)
		}
	}
	if !hubTagRE.MatchString(tag) {
		return hubRef{}, fmt.Errorf("image %q: bad tag %q", ref, tag)
	}
	return hubRef{repo: strings.Join(parts, "/"), tag: tag}, nil
}

// manifestAccept lists the manifest types the registry may hold.
var manifestAccept = []string{
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.oci.image.index.v1+json",
}

// registryDigests returns the digests the registry at addr holds for r:
// its manifest's config digest (the image ID the classic Docker image
// store gives it) and the manifest's own digest (the ID in the containerd
// image store). Both are "" if the registry lacks r.
func registryDigests(ctx context.Context, addr string, r hubRef) (config, manifest string, err error) {
	url := "http://" + addr + "/v2/" + r.repo + "/manifests/" + r.tag
	code, body, hdr, err := mirrorGetHeader(ctx, url, http.Header{"Accept": {strings.Join(manifestAccept, ", ")}})
	if err != nil {
		return "", "", err
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", "", nil
	default:
		return "", "", fmt.Errorf("GET %s: status %d", url, code)
	}
	var m struct {
		Config struct{ Digest string }
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", "", fmt.Errorf("GET %s: %w", url, err)
	}
	return m.Config.Digest, hdr.Get("Docker-Content-Digest"), nil
}

// seedRegistry copies each of seeds the host has into the registry at
// addr (127.0.0.1:port, which the host's dockerd treats as insecure by
// default) unless the registry holds the same image already.
func seedRegistry(ctx context.Context, addr string, seeds []string, logw io.Writer) error {
	for i, seed := range seeds {
		r, err := parseHubRef(seed)
		if err != nil {
			return err
		}
		id, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", seed)
		if err != nil {
			if i > 0 && isNoSuch(err) {
				continue // optional and absent
			}
			return fmt.Errorf("seeding the registry with %s: %w", seed, err)
		}
		config, manifest, err := registryDigests(ctx, addr, r)
		if err != nil {
			return fmt.Errorf("seeding the registry with %s: %w%s", seed, err, mirrorLogs(RegistryContainer))
		}
		if id == config || id == manifest {
			continue
		}
		fmt.Fprintf(logw, "seeding %s with %s as %s:%s\n", RegistryContainer, seed, r.repo, r.tag)
		if err := pushSeed(ctx, addr, seed, r); err != nil {
			return fmt.Errorf("seeding the registry with %s: %w", seed, err)
		}
	}
	return nil
}

// pushSeed tags seed as addr/repo:tag, pushes it and drops that tag. Two
// processes seeding at once share the tag: one may drop it under the
// other's push, which then tags and pushes again.
func pushSeed(ctx context.Context, addr, seed string, r hubRef) error {
	target := addr + "/" + r.repo + ":" + r.tag
	var err error
	for try := 0; try < 3; try++ {
		if _, err = docker(ctx, nil, "tag", seed, target); err != nil {
			return err
		}
		_, err = docker(ctx, nil, "push", target)
		if _, rmErr := docker(ctx, nil, "image", "rm", target); rmErr != nil && !isNoSuch(rmErr) && err == nil {
			err = rmErr
		}
		var de *dockerError
		if err == nil || !errors.As(err, &de) || !strings.Contains(de.stderr, "does not exist") {
			return err
		}
	}
	return err
}
