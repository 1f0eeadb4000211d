package deploy

// stack.build: local. The images are built with the docker of the
// operator's (or CI's) machine and shipped over SSH without a registry:
// only the layers the candidate's engine lacks travel, as a `docker load`
// archive whose manifest names every layer but holds only the missing
// ones. `docker load` opens a layer's file only when the layer's chain is
// absent from its store, so the layers the droplet has need no file.
//
// Layers the candidate lacks but the live droplet holds (the previous
// release's) go from live to the candidate over their private network
// (relay.go), or, where there is none, live → fleet → candidate; they are
// not counted as shipped.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"gopkg.in/yaml.v3"
)

// ShipStats is what a local build shipped to the candidate.
type ShipStats struct {
	ShippedBytes  int64 // compressed bytes sent from the builder's images
	ShippedLayers int   // layers sent from the builder's images
	ReusedLayers  int   // layers relayed from the live droplet
	RelayedBytes  int64 // compressed bytes of those relayed layers
	PresentLayers int   // layers the candidate already had
	// LinkBytes is the SSH traffic between fleet and the droplets while
	// shipping, both ways, framing included: what crossed the operator's
	// link.
	LinkBytes int64
	// DropletBytes is what went from the live droplet to the candidate
	// over their private network (Relay "vpc").
	DropletBytes int64
	// Relay is how layers of the live droplet reached the candidate:
	// RelayVPC, RelayFleet, or "" when none did.
	Relay string
}

// localImage is an image to build for a service of the resolved compose file.
type localImage struct {
	Services   []string
	Ref        string // the image compose expects, with a tag
	Versioned  string // Ref's name tagged with the release version
	Context    string // local path, or a URL
	Dockerfile string // local path, or "" (the context's Dockerfile)
	Target     string
	Args       map[string]string

	ID      string   // after the build
	DiffIDs []string // after the build
}

// resolvedCompose is what fleet reads of `docker compose config`'s output.
type resolvedCompose struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context            string             `yaml:"context"`
			Dockerfile         string             `yaml:"dockerfile"`
			DockerfileInline   string             `yaml:"dockerfile_inline"`
			Target             string             `yaml:"target"`
			Args               map[string]*string `yaml:"args"`
			AdditionalContexts map[string]string  `yaml:"additional_contexts"`
		} `yaml:"build"`
	} `yaml:"services"`
}

// localImages reads the services' builds from the resolved compose file
// and maps their contexts, which lie under the droplet's release dir rel,
// back to the bundle's root.
func localImages(data []byte, project, version, rel, root string) ([]*localImage, error) {
	var rc resolvedCompose
	if err := yaml.Unmarshal(data, &rc); err != nil {
		return nil, fmt.Errorf("reading the resolved compose file: %w", err)
	}
	local := func(p, what string) (string, error) {
		if !path.IsAbs(p) {
			return "", fmt.Errorf("%s %s is not an absolute path in the resolved compose file", what, p)
		}
		r, ok := strings.CutPrefix(path.Clean(p), rel)
		if !ok || (r != "" && !strings.HasPrefix(r, "/")) {
			return "", fmt.Errorf("%s %s lies outside the release dir %s", what, p, rel)
		}
		return filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(r, "/"))), nil
	}
	names := make([]string, 0, len(rc.Services))
	for n := range rc.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	byRef := map[string]*localImage{}
	var out []*localImage
	for _, n := range names {
		s := rc.Services[n]
		if s.Build == nil {
			continue // an image from a registry: the droplet pulls it
		}
		b := s.Build
		where := "services." + n + ".build"
		if b.DockerfileInline != "" {
			return nil, fmt.Errorf("%s.dockerfile_inline is not supported with stack.build: local", where)
		}
		if len(b.AdditionalContexts) > 0 {
			return nil, fmt.Errorf("%s.additional_contexts is not supported with stack.build: local", where)
		}
		img := s.Image
		if img == "" {
			img = project + "-" + n
		}
		ref := withTag(img)
		im := &localImage{Services: []string{n}, Ref: ref, Versioned: repoName(ref) + ":" + version, Target: b.Target, Args: map[string]string{}}
		for k, v := range b.Args {
			if v != nil {
				im.Args[k] = *v
			}
		}
		if strings.Contains(b.Context, "://") || strings.HasPrefix(b.Context, "git@") {
			im.Context = b.Context
			im.Dockerfile = b.Dockerfile
		} else {
			var err error
			if im.Context, err = local(b.Context, where+".context"); err != nil {
				return nil, err
			}
			if df := b.Dockerfile; df != "" {
				if path.IsAbs(df) {
					if im.Dockerfile, err = local(df, where+".dockerfile"); err != nil {
						return nil, err
					}
				} else {
					im.Dockerfile = filepath.Join(im.Context, filepath.FromSlash(df))
				}
			}
		}
		if prev := byRef[ref]; prev != nil {
			prev.Services = append(prev.Services, n) // one build per image
			continue
		}
		byRef[ref] = im
		out = append(out, im)
	}
	return out, nil
}

// withTag is ref with ":latest" unless it has a tag or digest.
func withTag(ref string) string {
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref
	}
	return ref + ":latest"
}

// repoName is ref without its tag or digest.
func repoName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// chainIDs are the chain IDs of a layer stack: the identity under which
// an engine stores the i-th layer on top of the ones below it.
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// engineImage is an image an engine holds.
type engineImage struct {
	ID      string
	DiffIDs []string
}

// engineLayers is what an engine holds: its images, the chains of their
// layers and their diffIDs.
type engineLayers struct {
	Images []engineImage
	Chains map[string]bool
	Diffs  map[string]bool
}

// layersCmd lists every image of the engine with its layers' diffIDs.
const layersCmd = `ids=$(docker image ls -aq --no-trunc | sort -u); [ -z "$ids" ] || docker image inspect --format '{{.Id}} {{json .RootFS.Layers}}' $ids`

// parseLayers reads layersCmd's output.
func parseLayers(out []byte) (*engineLayers, error) {
	e := &engineLayers{Chains: map[string]bool{}, Diffs: map[string]bool{}}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		id, js, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("unexpected docker image inspect output: %q", line)
		}
		var diffs []string
		if err := json.Unmarshal([]byte(js), &diffs); err != nil {
			return nil, fmt.Errorf("unexpected docker image inspect output: %q: %v", line, err)
		}
		e.Images = append(e.Images, engineImage{ID: id, DiffIDs: diffs})
		for _, c := range chainIDs(diffs) {
			e.Chains[c] = true
		}
		for _, d := range diffs {
			e.Diffs[d] = true
		}
	}
	return e, nil
}

// missing lists, once each and in order, the diffIDs of images whose chain
// the engine lacks: the layers `docker load` will read a file for.
func (e *engineLayers) missing(images []*localImage) []string {
	seen := map[string]bool{}
	var out []string
	for _, im := range images {
		for i, c := range chainIDs(im.DiffIDs) {
			d := im.DiffIDs[i]
			if !e.Chains[c] && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// saveContents is what readSave kept of a `docker save` archive.
type saveContents struct {
	Small  map[string][]byte // digest of each small entry → its content (configs, manifest)
	Names  map[string]string // entry name → digest of its content
	Layers map[string]string // diffID → spooled file, for the wanted layers
}

// smallEntry is the size up to which readSave keeps an entry in memory.
const smallEntry = 1 << 20

// readSave reads a `docker save` archive (any of its layouts) from r. An
// entry's digest is the sha256 of its content; a layer's is its diffID.
// Entries whose digest is wanted are spooled into dir, small ones kept in
// memory; everything else is read and dropped.
func readSave(r io.Reader, dir string, want map[string]bool) (*saveContents, error) {
	sc := &saveContents{Small: map[string][]byte{}, Names: map[string]string{}, Layers: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return sc, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the docker save archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		f, err := os.CreateTemp(dir, "layer-")
		if err != nil {
			return nil, err
		}
		hash := sha256.New()
		var small bytes.Buffer
		sinks := []io.Writer{hash, f}
		if h.Size <= smallEntry {
			sinks = append(sinks, &small)
		}
		_, err = io.Copy(io.MultiWriter(sinks...), tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(f.Name())
			return nil, fmt.Errorf("reading %s of the docker save archive: %w", h.Name, err)
		}
		digest := "sha256:" + hex.EncodeToString(hash.Sum(nil))
		sc.Names[path.Clean(h.Name)] = digest
		if h.Size <= smallEntry {
			sc.Small[digest] = small.Bytes()
		}
		if _, dup := sc.Layers[digest]; want[digest] && !dup {
			sc.Layers[digest] = f.Name()
		} else {
			os.Remove(f.Name())
		}
	}
}

// config returns the image config of im: by its ID (the config's digest),
// or through the archive's manifest.json by tag.
func (sc *saveContents) config(im *localImage) ([]byte, error) {
	if c, ok := sc.Small[im.ID]; ok {
		return c, nil
	}
	var man []struct {
		Config   string
		RepoTags []string
	}
	if d, ok := sc.Names["manifest.json"]; ok {
		json.Unmarshal(sc.Small[d], &man)
	}
	for _, m := range man {
		for _, t := range m.RepoTags {
			if t == im.Ref {
				if c, ok := sc.Small[sc.Names[path.Clean(m.Config)]]; ok {
					return c, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("the docker save archive lacks the config of %s (%s)", im.Ref, im.ID)
}

// loadImage is an image of a load archive.
type loadImage struct {
	Config   []byte
	RepoTags []string
	DiffIDs  []string
}

// layerPath is where a load archive holds the layer diffID.
func layerPath(diffID string) string {
	return strings.TrimPrefix(diffID, "sha256:") + "/layer.tar"
}

// loadEpoch is the modification time of every entry of a load archive.
var loadEpoch = time.Unix(0, 0).UTC()

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// switchWriter writes to whichever writer is current.
type switchWriter struct{ cur io.Writer }

func (s *switchWriter) Write(p []byte) (int, error) { return s.cur.Write(p) }

// writeLoadArchive writes a gzip-compressed `docker load` archive of
// images to w: a manifest naming every layer of every image, the configs,
// and the layer files of relayed and shipped (diffID → file) only. The
// relayed layers form a first gzip member, the rest a second one
// (gunzip reads them as one stream), so what each source costs is
// counted: it returns the compressed sizes of both.
func writeLoadArchive(w io.Writer, images []loadImage, relayed, shipped map[string]string) (relayedBytes, shippedBytes int64, err error) {
	cw := &countingWriter{w: w}
	sw := &switchWriter{}
	tw := tar.NewWriter(sw)
	if len(relayed) > 0 {
		gz := gzip.NewWriter(cw)
		sw.cur = gz
		if err := addLayers(tw, relayed); err != nil {
			return 0, 0, err
		}
		if err := tw.Flush(); err != nil {
			return 0, 0, err
		}
		if err := gz.Close(); err != nil {
			return 0, 0, err
		}
		relayedBytes = cw.n
	}
	gz := gzip.NewWriter(cw)
	sw.cur = gz
	if err := addLayers(tw, shipped); err != nil {
		return 0, 0, err
	}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	man := make([]entry, 0, len(images))
	seen := map[string]bool{}
	for _, im := range images {
		sum := sha256.Sum256(im.Config)
		name := hex.EncodeToString(sum[:]) + ".json"
		if !seen[name] {
			seen[name] = true
			if err := addFile(tw, name, im.Config); err != nil {
				return 0, 0, err
			}
		}
		e := entry{Config: name, RepoTags: im.RepoTags}
		for _, d := range im.DiffIDs {
			e.Layers = append(e.Layers, layerPath(d))
		}
		man = append(man, e)
	}
	mj, err := json.Marshal(man)
	if err != nil {
		return 0, 0, err
	}
	if err := addFile(tw, "manifest.json", mj); err != nil {
		return 0, 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, 0, err
	}
	return relayedBytes, cw.n - relayedBytes, nil
}

func addFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: loadEpoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// addLayers adds the layer files, in diffID order.
func addLayers(tw *tar.Writer, layers map[string]string) error {
	ids := make([]string, 0, len(layers))
	for d := range layers {
		ids = append(ids, d)
	}
	sort.Strings(ids)
	for _, d := range ids {
		if err := addLayer(tw, d, layers[d]); err != nil {
			return err
		}
	}
	return nil
}

func addLayer(tw *tar.Writer, diffID, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	dir := strings.TrimPrefix(diffID, "sha256:")
	if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: loadEpoch}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: layerPath(diffID), Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: loadEpoch}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// shipLocalBuild builds the resolved compose file's images here and loads
// them into the candidate c, sending only the layers it lacks.
func (d *Deployer) shipLocalBuild(ctx context.Context, c *remote.Client, dr *cloud.Droplet, version string, p *prepared, out outputs, live *Member) (st *ShipStats, err error) {
	proj := d.Spec.Project
	st = &ShipStats{}
	link0 := traffic(c)
	var liveLink int64
	defer func() {
		if st != nil {
			st.LinkBytes = traffic(c) - link0 + liveLink
		}
	}()
	resolved, err := c.Output(ctx, sh("cat", composeFile(proj)))
	if err != nil {
		return nil, fmt.Errorf("reading the resolved compose file: %w", err)
	}
	images, err := localImages(resolved, proj, version, releaseDir(proj, version), p.bundle.Root)
	if err != nil {
		return nil, &ConfigError{Msg: err.Error()}
	}
	if len(images) == 0 {
		return st, nil
	}
	buildkit := "DOCKER_BUILDKIT=0" // docker without buildx has only the legacy builder
	if exec.CommandContext(ctx, "docker", "buildx", "version").Run() == nil {
		buildkit = "DOCKER_BUILDKIT=1"
	}
	for _, im := range images {
		d.step("building %s here (%s)", im.Versioned, strings.Join(im.Services, ", "))
		args := []string{"build", "-t", im.Ref, "-t", im.Versioned}
		if im.Dockerfile != "" {
			args = append(args, "-f", im.Dockerfile)
		}
		if im.Target != "" {
			args = append(args, "--target", im.Target)
		}
		keys := make([]string, 0, len(im.Args))
		for k := range im.Args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			args = append(args, "--build-arg", k+"="+im.Args[k])
		}
		cmd := exec.CommandContext(ctx, "docker", append(args, im.Context)...)
		cmd.Env = append(os.Environ(), buildkit)
		cmd.Stdout, cmd.Stderr = out.stdout, out.stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("docker build of %s: %w", im.Ref, err)
		}
		var o bytes.Buffer
		cmd = exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}} {{json .RootFS.Layers}}", im.Ref)
		cmd.Stdout, cmd.Stderr = &o, out.stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("docker image inspect %s: %w", im.Ref, err)
		}
		e, err := parseLayers(o.Bytes())
		if err != nil || len(e.Images) != 1 {
			return nil, fmt.Errorf("docker image inspect %s: %q: %v", im.Ref, o.String(), err)
		}
		im.ID, im.DiffIDs = e.Images[0].ID, e.Images[0].DiffIDs
	}

	d.step("asking the candidate which layers it has")
	have, err := c.Output(ctx, layersCmd)
	if err != nil {
		return nil, fmt.Errorf("listing the candidate's image layers: %w", err)
	}
	cand, err := parseLayers(have)
	if err != nil {
		return nil, err
	}
	total := map[string]bool{}
	for _, im := range images {
		for _, l := range im.DiffIDs {
			total[l] = true
		}
	}
	st.PresentLayers = len(total) - len(cand.missing(images))

	tmp, err := os.MkdirTemp("", "fleet-images-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	rr, err := d.relayLayers(ctx, c, dr, live, images, cand, tmp, out)
	liveLink = rr.LinkBytes
	if err != nil {
		return nil, err
	}
	st.Relay, st.DropletBytes = rr.Path, rr.DropletBytes
	need := rr.Cand.missing(images)
	relayed := rr.Spooled
	if relayed == nil {
		relayed = map[string]string{}
	}
	fromBuild := map[string]bool{}
	for _, l := range need {
		if _, ok := relayed[l]; !ok {
			fromBuild[l] = true
		}
	}
	fromLive := len(relayed)
	if rr.Path == RelayVPC {
		fromLive = len(total) - st.PresentLayers - len(need) // already there
	}
	d.step("reading the built images (%d of %d layers to ship, %d from the live droplet)", len(fromBuild), len(total), fromLive)
	refs := make([]string, len(images))
	for i, im := range images {
		refs[i] = im.Ref
	}
	save := exec.CommandContext(ctx, "docker", append([]string{"save"}, refs...)...)
	save.Stderr = out.stderr
	so, err := save.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := save.Start(); err != nil {
		return nil, fmt.Errorf("docker save: %w", err)
	}
	sc, rerr := readSave(bufio.NewReaderSize(so, 1<<20), tmp, fromBuild)
	io.Copy(io.Discard, so)
	if err := save.Wait(); err != nil || rerr != nil {
		return nil, fmt.Errorf("docker save %s: %w", strings.Join(refs, " "), errors.Join(err, rerr))
	}
	for l := range fromBuild {
		if _, ok := sc.Layers[l]; !ok {
			return nil, fmt.Errorf("docker save of %s lacks the layer %s", strings.Join(refs, " "), l)
		}
	}
	var load []loadImage
	for _, im := range images {
		cfg, err := sc.config(im)
		if err != nil {
			return nil, err
		}
		load = append(load, loadImage{Config: cfg, RepoTags: []string{im.Ref, im.Versioned}, DiffIDs: im.DiffIDs})
	}

	if rr.Path == RelayVPC {
		d.step("shipping %d layers (%d came from the live droplet %s droplet to droplet, %d bytes) to the candidate", len(need), fromLive, live.Name, rr.DropletBytes)
	} else {
		d.step("shipping %d layers (%d relayed from the live droplet) to the candidate", len(need), len(relayed))
	}
	pr, pw := io.Pipe()
	written := make(chan struct{})
	go func() {
		defer close(written)
		var err error
		st.RelayedBytes, st.ShippedBytes, err = writeLoadArchive(pw, load, relayed, sc.Layers)
		pw.CloseWithError(err)
	}()
	err = c.Run(ctx, "gunzip | docker load", pr, out.stdout, out.stderr)
	pr.Close() // stops the writer if the remote side quit early
	<-written  // the byte counts are final only once it returned
	if err != nil {
		return nil, fmt.Errorf("docker load on the candidate: %w", err)
	}
	st.ShippedLayers, st.ReusedLayers = len(sc.Layers), fromLive
	d.dropRelayed(ctx, c, rr.IDs, cand, images, out)
	return st, nil
}

// imageIDRE is what an image ID from a droplet must look like before it
// goes into a command line.
var imageIDRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// dropRelayed removes the untagged images the hop loaded into the
// candidate (their layers stay, the built images use them); never one the
// candidate had before or one fleet built, and a conflict is no error.
func (d *Deployer) dropRelayed(ctx context.Context, c *remote.Client, ids []string, before *engineLayers, images []*localImage, out outputs) {
	keep := map[string]bool{}
	for _, im := range before.Images {
		keep[im.ID] = true
	}
	for _, im := range images {
		keep[im.ID] = true
	}
	var rm []string
	for _, id := range ids {
		if !keep[id] && imageIDRE.MatchString(id) {
			rm = append(rm, id)
		}
	}
	if len(rm) == 0 {
		return
	}
	if err := c.Run(ctx, sh(append([]string{"docker", "image", "rm"}, rm...)...)+" >/dev/null 2>&1 || true", nil, out.stdout, out.stderr); err != nil && ctx.Err() == nil {
		d.warn("removing the relayed images from the candidate: %v", err)
	}
}
