package localcloud

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseHubRef(t *testing.T) {
	tests := []struct {
		ref, repo, tag, err string
	}{
		{ref: "debian:trixie-slim", repo: "library/debian", tag: "trixie-slim"},
		{ref: "debian", repo: "library/debian", tag: "latest"},
		{ref: "library/debian:13", repo: "library/debian", tag: "13"},
		{ref: "axllent/mailpit:latest", repo: "axllent/mailpit", tag: "latest"},
		{ref: "docker.io/library/nginx:1.27", repo: "library/nginx", tag: "1.27"},
		{ref: "index.docker.io/axllent/mailpit", repo: "axllent/mailpit", tag: "latest"},
		{ref: "docker.io/nginx", repo: "library/nginx", tag: "latest"},
		{ref: "a/b/c:v1.0_x", repo: "a/b/c", tag: "v1.0_x"},
		{ref: "ghcr.io/foo/bar:1", err: "not a Docker Hub image"},
		{ref: "localhost/foo", err: "not a Docker Hub image"},
		{ref: "127.0.0.1:5000/foo:1", err: "not a Docker Hub image"},
		{ref: "debian@sha256:0123", err: "digest"},
		{ref: "", err: "empty"},
		{ref: strings.Repeat("a", 256), err: "too long"},
		{ref: "Debian:13", err: "bad name component"},
		{ref: "debian:", err: "bad tag"},
		{ref: "debian:-x", err: "bad tag"},
		{ref: "/debian", err: "bad name component"},
		{ref: "a//b", err: "bad name component"},
		{ref: "debian:" + strings.Repeat("x", 129), err: "bad tag"},
	}
	for _, tt := range tests {
		got, err := parseHubRef(tt.ref)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseHubRef(%q) = %+v, %v; want error containing %q", tt.ref, got, err, tt.err)
			}
			continue
		}
		if err != nil || got.repo != tt.repo || got.tag != tt.tag {
			t.Errorf("parseHubRef(%q) = %+v, %v; want %s:%s", tt.ref, got, err, tt.repo, tt.tag)
		}
	}
}

func TestMirrorSeedsParse(t *testing.T) {
	if len(mirrorSeeds) == 0 || mirrorSeeds[0] != dropletBaseImage {
		t.Fatalf("mirrorSeeds = %v: the first (required) must be %s", mirrorSeeds, dropletBaseImage)
	}
	for _, s := range mirrorSeeds {
		if _, err := parseHubRef(s); err != nil {
			t.Error(err)
		}
	}
}

func TestParseMirrorInspect(t *testing.T) {
	const full = `[{"Id":"abc","RestartCount":2,"State":{"Status":"running"},"Config":{"Labels":{"fleet.recipe":"h1","fleet.mirror":"apt"}},
		"NetworkSettings":{"IPAddress":"172.17.0.9","Networks":{"bridge":{"IPAddress":"172.17.0.2"}},
		"Ports":{"3142/tcp":[{"HostIp":"127.0.0.1","HostPort":"49153"}],"5000/tcp":null}}}]`
	tests := []struct {
		name, data string
		port       int
		want       mirrorState
		err        string
	}{
		{name: "full", data: full, port: 3142,
			want: mirrorState{id: "abc", status: "running", restarts: 2, recipe: "h1", ip: "172.17.0.2", hostAddr: "127.0.0.1:49153"}},
		{name: "other port unpublished", data: full, port: 5000,
			want: mirrorState{id: "abc", status: "running", restarts: 2, recipe: "h1", ip: "172.17.0.2"}},
		{name: "stopped: no address", port: 5000,
			data: `[{"Id":"d","State":{"Status":"exited"},"Config":{"Labels":null},"NetworkSettings":{"IPAddress":"","Networks":{"bridge":{"IPAddress":""}},"Ports":{}}}]`,
			want: mirrorState{id: "d", status: "exited"}},
		{name: "old engine: top-level address only", port: 5000,
			data: `[{"Id":"e","State":{"Status":"running"},"Config":{},"NetworkSettings":{"IPAddress":"172.17.0.5","Ports":{"5000/tcp":[{"HostIp":"127.0.0.1","HostPort":"1"}]}}}]`,
			want: mirrorState{id: "e", status: "running", ip: "172.17.0.5", hostAddr: "127.0.0.1:1"}},
		{name: "published on all addresses is not taken", port: 5000,
			data: `[{"Id":"f","State":{"Status":"running"},"Config":{},"NetworkSettings":{"Ports":{"5000/tcp":[{"HostIp":"0.0.0.0","HostPort":"5000"}]}}}]`,
			want: mirrorState{id: "f", status: "running"}},
		{name: "two containers", data: `[{"Id":"a"},{"Id":"b"}]`, err: "2 containers"},
		{name: "none", data: `[]`, err: "0 containers"},
		{name: "not JSON", data: `Error: no such object`, err: "docker inspect"},
	}
	for _, tt := range tests {
		got, err := parseMirrorInspect([]byte(tt.data), tt.port)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

func TestMirrorsRegistryHost(t *testing.T) {
	tests := []struct{ mirror, want string }{
		{"http://172.17.0.3:5000", "172.17.0.3:5000"},
		{"http://172.17.0.3:5000/", "172.17.0.3:5000"},
		{"", ""},
		{"172.17.0.3:5000", ""},
	}
	for _, tt := range tests {
		if got := (Mirrors{RegistryMirror: tt.mirror}).RegistryHost(); got != tt.want {
			t.Errorf("RegistryHost of %q = %q, want %q", tt.mirror, got, tt.want)
		}
	}
}

func TestMirrorRecipe(t *testing.T) {
	files, err := readRecipe(mirrorImageFS, mirrorImageDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
	}
	if want := []string{"Dockerfile", "fleet.conf", "registry.yml"}; !slices.Equal(names, want) {
		t.Errorf("recipe files %v, want %v", names, want)
	}
	tag := MirrorImageTag()
	if !regexp.MustCompile(`^fleet-mirror:[0-9a-f]{12}$`).MatchString(tag) || tag != MirrorImageTag() {
		t.Errorf("MirrorImageTag() = %q, want a stable fleet-mirror:<12 hex>", tag)
	}
	if tag == DropletImageTag() {
		t.Error("the mirror and droplet images have the same tag")
	}
	df := string(files[0].data)
	for _, want := range []string{"FROM " + dropletBaseImage, "apt-cacher-ng", "docker-registry", "COPY fleet.conf", "COPY registry.yml"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(df, "\nVOLUME") {
		t.Error("Dockerfile declares a VOLUME: every container would leave an anonymous volume")
	}
}

func TestReadRecipeHash(t *testing.T) {
	base := fstest.MapFS{
		"r/b.conf":     {Data: []byte("b")},
		"r/a/x":        {Data: []byte("x")},
		"r/Dockerfile": {Data: []byte("FROM x")},
		"other/y":      {Data: []byte("y")},
	}
	files, err := readRecipe(base, "r")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
	}
	if want := []string{"Dockerfile", "a/x", "b.conf"}; !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	h := recipeHash(files)
	variants := map[string]fstest.MapFS{
		"content changed": {"r/b.conf": {Data: []byte("c")}, "r/a/x": {Data: []byte("x")}, "r/Dockerfile": {Data: []byte("FROM x")}},
		"file renamed":    {"r/c.conf": {Data: []byte("b")}, "r/a/x": {Data: []byte("x")}, "r/Dockerfile": {Data: []byte("FROM x")}},
		"file added":      {"r/b.conf": {Data: []byte("b")}, "r/a/x": {Data: []byte("x")}, "r/Dockerfile": {Data: []byte("FROM x")}, "r/z": {}},
		// Name and content boundaries are both hashed.
		"bytes moved": {"r/b.conf": {Data: []byte("")}, "r/a/x": {Data: []byte("xb")}, "r/Dockerfile": {Data: []byte("FROM x")}},
	}
	for name, fsys := range variants {
		f, err := readRecipe(fsys, "r")
		if err != nil {
			t.Fatal(err)
		}
		if recipeHash(f) == h {
			t.Errorf("%s: same hash %s", name, h)
		}
	}
	same := fstest.MapFS{"r/Dockerfile": {Data: []byte("FROM x")}, "r/a/x": {Data: []byte("x")}, "r/b.conf": {Data: []byte("b")}, "q": {}}
	if f, _ := readRecipe(same, "r"); recipeHash(f) != h {
		t.Error("the same files elsewhere in the tree changed the hash")
	}
	if _, err := readRecipe(base, "missing"); err == nil {
		t.Error("readRecipe of a missing directory: no error")
	}
}

func TestMirrorRunArgs(t *testing.T) {
	for _, spec := range []mirrorSpec{aptMirrorSpec, registrySpec} {
		args := mirrorRunArgs(spec, "fleet-mirror:0123456789ab", "0123456789ab")
		line := strings.Join(args, " ")
		for _, want := range []string{
			"--name " + spec.name,
			"--label fleet.recipe=0123456789ab",
			"--label fleet.mirror=" + spec.kind,
			"--restart unless-stopped",
			"--user " + spec.user,
			"type=volume,source=" + spec.volume + ",target=" + spec.mount,
		} {
			if !strings.Contains(line, want) {
				t.Errorf("%s: run args %q lack %q", spec.name, line, want)
			}
		}
		// Every publish is on loopback.
		for i, a := range args {
			if a == "-p" || a == "--publish" {
				if i+1 >= len(args) || !strings.HasPrefix(args[i+1], "127.0.0.1:") {
					t.Errorf("%s: publishes %q, want 127.0.0.1 only", spec.name, args[i+1])
				}
			}
		}
		if !slices.Contains(args, "-p") {
			t.Errorf("%s: publishes nothing on 127.0.0.1 (readiness and seeding use it)", spec.name)
		}
		if got := args[len(args)-len(spec.cmd)-1]; got != "fleet-mirror:0123456789ab" {
			t.Errorf("%s: image %q before the command", spec.name, got)
		}
	}
}
