package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// synthLayer is a layer tar holding one file.
func synthLayer(t *testing.T, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))})
	tw.Write([]byte(content))
	tw.Close()
	return buf.Bytes()
}

type synthImage struct {
	tag    string
	config []byte
	layers [][]byte
}

func newSynthImage(t *testing.T, tag string, layers ...[]byte) synthImage {
	var diffs []string
	for _, l := range layers {
		diffs = append(diffs, digest(l))
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Labels": map[string]string{"tag": tag}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	return synthImage{tag: tag, config: cfg, layers: layers}
}

func (s synthImage) diffIDs() []string {
	var d []string
	for _, l := range s.layers {
		d = append(d, digest(l))
	}
	return d
}

// synthSave is a `docker save` archive of images in the legacy layout of
// docker 20.10 (<v1 id>/layer.tar, <image id>.json, manifest.json last)
// or in the OCI layout of docker 25+ (blobs/sha256/<digest>).
func synthSave(t *testing.T, oci bool, images ...synthImage) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var man []entry
	written := map[string]bool{}
	for _, im := range images {
		e := entry{RepoTags: []string{im.tag}}
		parent := ""
		for _, l := range im.layers {
			name := "blobs/sha256/" + strings.TrimPrefix(digest(l), "sha256:")
			if !oci {
				// v1 IDs are derived, not the diffID.
				name = strings.TrimPrefix(digest([]byte(parent+digest(l))), "sha256:") + "/layer.tar"
				parent = name
			}
			if !written[name] {
				written[name] = true
				add(name, l)
				if !oci {
					add(filepath.Dir(name)+"/VERSION", []byte("1.0"))
				}
			}
			e.Layers = append(e.Layers, name)
		}
		e.Config = strings.TrimPrefix(digest(im.config), "sha256:") + ".json"
		if oci {
			e.Config = "blobs/sha256/" + strings.TrimPrefix(digest(im.config), "sha256:")
		}
		add(e.Config, im.config)
		man = append(man, e)
	}
	mj, _ := json.Marshal(man)
	add("manifest.json", mj)
	add("repositories", []byte("{}"))
	tw.Close()
	return buf.Bytes()
}

// readLoadArchive gunzips a load archive and returns its files.
func readLoadArchive(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[h.Name] = b
		}
	}
	return files
}

func TestChainIDs(t *testing.T) {
	a, b := "sha256:aa", "sha256:bb"
	got := chainIDs([]string{a, b})
	sum := sha256.Sum256([]byte(a + " " + b))
	want := []string{a, "sha256:" + hex.EncodeToString(sum[:])}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("chainIDs = %v, want %v", got, want)
	}
}

// TestFilterSave: a docker save archive is rewritten into a load archive
// that names every layer but holds only those the engine lacks.
func TestFilterSave(t *testing.T) {
	base := synthLayer(t, "etc/os-release", "debian")
	apt := synthLayer(t, "usr/bin/python3", strings.Repeat("py", 5000))
	app1 := synthLayer(t, "app/app.py", "print('v1')")
	app2 := synthLayer(t, "app/app.py", "print('v2')")
	conf := synthLayer(t, "etc/nginx/hello.conf", "server {}")
	appV1 := newSynthImage(t, "hello-app:latest", base, apt, app1)
	appV2 := newSynthImage(t, "hello-app:latest", base, apt, app2)
	nginx := newSynthImage(t, "hello-nginx:latest", base, apt, conf)
	// The apt layer straight on the base's place: same diffID, other chain.
	aptAlone := newSynthImage(t, "odd:latest", apt)

	engine := func(images ...synthImage) []byte {
		var b strings.Builder
		for _, im := range images {
			js, _ := json.Marshal(im.diffIDs())
			fmt.Fprintf(&b, "%s %s\n", digest(im.config), js)
		}
		return []byte(b.String())
	}
	tests := []struct {
		name    string
		has     []byte       // layersCmd's output on the droplet
		live    []byte       // layersCmd's output on the live droplet ("" none)
		build   []synthImage // built here
		shipped [][]byte     // layers sent from the build
		relayed [][]byte     // layers relayed from live
	}{
		{"new droplet, no live", engine(newSynthImage(t, "debian", base)), nil, []synthImage{appV1, nginx}, [][]byte{apt, app1, conf}, nil},
		{"empty engine", nil, nil, []synthImage{appV1}, [][]byte{base, apt, app1}, nil},
		{"droplet has everything", engine(appV1, nginx), nil, []synthImage{appV1, nginx}, nil, nil},
		{"only the changed layer", engine(appV1, nginx), nil, []synthImage{appV2, nginx}, [][]byte{app2}, nil},
		{"same diffID on another chain is not enough", engine(aptAlone), nil, []synthImage{appV1}, [][]byte{base, apt, app1}, nil},
		{"live has the previous release", engine(newSynthImage(t, "debian", base)), engine(appV1, nginx), []synthImage{appV2, nginx}, [][]byte{app2}, [][]byte{apt, conf}},
		{"live has nothing of it", engine(newSynthImage(t, "debian", base)), engine(newSynthImage(t, "debian", base)), []synthImage{appV2}, [][]byte{apt, app2}, nil},
	}
	for _, oci := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/oci=%v", tt.name, oci), func(t *testing.T) {
				cand, err := parseLayers(tt.has)
				if err != nil {
					t.Fatal(err)
				}
				var images []*localImage
				for _, s := range tt.build {
					images = append(images, &localImage{Ref: s.tag, Versioned: repoName(s.tag) + ":v2", ID: digest(s.config), DiffIDs: s.diffIDs()})
				}
				need := cand.missing(images)
				dir := t.TempDir()
				relayed := map[string]string{}
				if tt.live != nil {
					live, err := parseLayers(tt.live)
					if err != nil {
						t.Fatal(err)
					}
					want := map[string]bool{}
					for _, l := range need {
						if live.Diffs[l] {
							want[l] = true
						}
					}
					// What docker save on live sends: the images holding them.
					sc, err := readSave(bytes.NewReader(synthSave(t, oci, appV1, nginx)), dir, want)
					if err != nil {
						t.Fatal(err)
					}
					relayed = sc.Layers
				}
				fromBuild := map[string]bool{}
				for _, l := range need {
					if _, ok := relayed[l]; !ok {
						fromBuild[l] = true
					}
				}
				sc, err := readSave(bytes.NewReader(synthSave(t, oci, tt.build...)), dir, fromBuild)
				if err != nil {
					t.Fatal(err)
				}
				var load []loadImage
				for _, im := range images {
					cfg, err := sc.config(im)
					if err != nil {
						t.Fatal(err)
					}
					load = append(load, loadImage{Config: cfg, RepoTags: []string{im.Ref, im.Versioned}, DiffIDs: im.DiffIDs})
				}
				var out bytes.Buffer
				rb, sb, err := writeLoadArchive(&out, load, relayed, sc.Layers)
				if err != nil {
					t.Fatal(err)
				}
				if rb+sb != int64(out.Len()) {
					t.Errorf("counted %d+%d bytes, wrote %d", rb, sb, out.Len())
				}
				if (rb == 0) != (len(tt.relayed) == 0) {
					t.Errorf("relayed bytes %d with %d relayed layers", rb, len(tt.relayed))
				}
				files := readLoadArchive(t, out.Bytes())

				var wantLayers, gotLayers []string
				for _, l := range append(slices.Clone(tt.shipped), tt.relayed...) {
					wantLayers = append(wantLayers, layerPath(digest(l)))
				}
				for name, data := range files {
					if strings.HasSuffix(name, "/layer.tar") {
						gotLayers = append(gotLayers, name)
						if layerPath(digest(data)) != name {
							t.Errorf("%s holds another layer", name)
						}
					}
				}
				slices.Sort(wantLayers)
				slices.Sort(gotLayers)
				if !slices.Equal(gotLayers, wantLayers) {
					t.Errorf("layers in the archive:\n got %v\nwant %v", gotLayers, wantLayers)
				}
				var man []struct {
					Config   string
					RepoTags []string
					Layers   []string
				}
				if err := json.Unmarshal(files["manifest.json"], &man); err != nil {
					t.Fatalf("manifest.json: %v", err)
				}
				if len(man) != len(tt.build) {
					t.Fatalf("manifest has %d images, want %d", len(man), len(tt.build))
				}
				for i, m := range man {
					s := tt.build[i]
					if !bytes.Equal(files[m.Config], s.config) {
						t.Errorf("image %d: config %s is not the image's", i, m.Config)
					}
					if want := []string{s.tag, repoName(s.tag) + ":v2"}; !slices.Equal(m.RepoTags, want) {
						t.Errorf("image %d: tags %v, want %v", i, m.RepoTags, want)
					}
					var wl []string
					for _, d := range s.diffIDs() {
						wl = append(wl, layerPath(d))
					}
					if !slices.Equal(m.Layers, wl) {
						t.Errorf("image %d: manifest layers %v, want every layer %v", i, m.Layers, wl)
					}
				}
				// Nothing is left spooled but the kept layers.
				ents, _ := os.ReadDir(dir)
				if len(ents) != len(sc.Layers)+len(relayed) {
					t.Errorf("%d files spooled, want %d", len(ents), len(sc.Layers)+len(relayed))
				}
			})
		}
	}
}

func TestLocalImages(t *testing.T) {
	resolved := `name: hello
services:
  app:
    build:
      context: /srv/fleet/hello/releases/v1.1.0/app
      dockerfile: Dockerfile.prod
      args:
        A: b
      target: run
    image: hello-app
  nginx:
    build:
      context: /srv/fleet/hello/releases/v1.1.0
      dockerfile: nginx/Dockerfile
  worker:
    build:
      context: /srv/fleet/hello/releases/v1.1.0/app
      dockerfile: Dockerfile.prod
    image: hello-app
  db:
    image: postgres:16
`
	got, err := localImages([]byte(resolved), "hello", "v1.1.0", "/srv/fleet/hello/releases/v1.1.0", "/tmp/b")
	if err != nil {
		t.Fatal(err)
	}
	want := []*localImage{
		{Services: []string{"app", "worker"}, Ref: "hello-app:latest", Versioned: "hello-app:v1.1.0", Context: "/tmp/b/app", Dockerfile: "/tmp/b/app/Dockerfile.prod", Target: "run", Args: map[string]string{"A": "b"}},
		{Services: []string{"nginx"}, Ref: "hello-nginx:latest", Versioned: "hello-nginx:v1.1.0", Context: "/tmp/b", Dockerfile: "/tmp/b/nginx/Dockerfile", Args: map[string]string{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("localImages:\n got %+v %+v\nwant %+v %+v", got[0], got[1], want[0], want[1])
	}
	for _, bad := range []string{
		"services:\n  a:\n    build:\n      context: /srv/elsewhere\n",
		"services:\n  a:\n    build:\n      context: /srv/fleet/hello/releases/v1.1.0x\n",
		"services:\n  a:\n    build:\n      context: /srv/fleet/hello/releases/v1.1.0\n      additional_contexts: {x: /srv}\n",
	} {
		if _, err := localImages([]byte(bad), "hello", "v1.1.0", "/srv/fleet/hello/releases/v1.1.0", "/tmp/b"); err == nil {
			t.Errorf("localImages accepted %q", bad)
		}
	}
}

func TestRefs(t *testing.T) {
	for in, want := range map[string][2]string{
		"hello-app":                  {"hello-app:latest", "hello-app"},
		"hello-app:1":                {"hello-app:1", "hello-app"},
		"localhost:5000/a/b":         {"localhost:5000/a/b:latest", "localhost:5000/a/b"},
		"localhost:5000/a/b:v2":      {"localhost:5000/a/b:v2", "localhost:5000/a/b"},
		"a/b@sha256:0123456789abcde": {"a/b@sha256:0123456789abcde", "a/b"},
	} {
		if got := [2]string{withTag(in), repoName(withTag(in))}; got != want {
			t.Errorf("%s: got %v, want %v", in, got, want)
		}
	}
}
