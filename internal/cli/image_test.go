package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// imageRoot is the command tree with `fleet image NAME` replaced by sub.
func imageRoot(f *Factory, name string, sub *cobra.Command) *cobra.Command {
	root := NewCmdRoot(f)
	for _, c := range root.Commands() {
		if c.Name() != "image" {
			continue
		}
		for _, s := range c.Commands() {
			if s.Name() == name {
				c.RemoveCommand(s)
			}
		}
		c.AddCommand(sub)
	}
	return root
}

// Flags reach the options (gh's runF half of a command test).
func TestNewCmdImageFlags(t *testing.T) {
	type got struct{ json, force, yes bool }
	for _, tt := range []struct {
		args    []string
		want    got
		wantErr string
	}{
		{args: []string{"bake"}},
		{args: []string{"bake", "--force"}, want: got{force: true}},
		{args: []string{"bake", "--json"}, want: got{json: true}},
		{args: []string{"bake", "v1"}, wantErr: "takes no arguments"},
		{args: []string{"bake", "--keep", "1"}, wantErr: "unknown flag: --keep"},
		{args: []string{"list"}},
		{args: []string{"list", "--json"}, want: got{json: true}},
		{args: []string{"list", "--force"}, wantErr: "unknown flag: --force"},
		{args: []string{"prune"}},
		{args: []string{"prune", "--yes", "--json"}, want: got{yes: true, json: true}},
		{args: []string{"prune", "-y"}, want: got{yes: true}},
		{args: []string{"prune", "x"}, wantErr: "takes no arguments"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			ios, _, _ := TestStreams()
			f := &Factory{IOStreams: ios, Getenv: func(string) string { return "" }}
			var g *got
			var sub *cobra.Command
			switch tt.args[0] {
			case "bake":
				sub = NewCmdImageBake(f, func(_ context.Context, o *ImageBakeOptions) error {
					g = &got{json: o.JSON, force: o.Force}
					if o.Deployer == nil {
						t.Error("no Deployer")
					}
					return nil
				})
			case "list":
				sub = NewCmdImageList(f, func(_ context.Context, o *ImageListOptions) error { g = &got{json: o.JSON}; return nil })
			case "prune":
				sub = NewCmdImagePrune(f, func(_ context.Context, o *ImagePruneOptions) error { g = &got{json: o.JSON, yes: o.Yes}; return nil })
			}
			root := imageRoot(f, tt.args[0], sub)
			root.SetArgs(append([]string{"image"}, tt.args...))
			err := root.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if code := exitCode(err); code != ExitUsage {
					t.Errorf("exit %d, want %d", code, ExitUsage)
				}
				return
			}
			if err != nil || g == nil {
				t.Fatalf("err %v, options %+v", err, g)
			}
			if *g != tt.want {
				t.Errorf("options %+v, want %+v", *g, tt.want)
			}
		})
	}
}

func sampleBake() *deploy.BakeResult {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	old := cloud.Image{ID: 41, Name: "fleet-blog-0123456789ab", Type: "snapshot", Regions: []string{"fra1"}, CreatedAt: t0.Add(-24 * time.Hour), SizeGB: 2.36, MinDiskGB: 25}
	return &deploy.BakeResult{
		Image:     cloud.Image{ID: 42, Name: "fleet-blog-0123456789ab", Type: "snapshot", Regions: []string{"fra1"}, CreatedAt: t0, SizeGB: 2.41, MinDiskGB: 25},
		Hash:      "0123456789ab",
		Base:      "debian-13-x64",
		Droplet:   "blog-bake-c0ffee",
		Adopted:   true,
		Destroyed: []string{"blog-bake-facade"},
		Deleted:   []cloud.Image{old},
		Phases:    []deploy.Phase{{Name: "waiting for cloud-init on blog-bake-c0ffee", Duration: 95 * time.Second}, {Name: "snapshotting blog-bake-c0ffee as fleet-blog-0123456789ab", Duration: 70 * time.Second}},
	}
}

// `fleet image bake --json` is a contract (testdata/image-bake-json.golden);
// without --json, stdout is the image ID alone.
func TestPrintBake(t *testing.T) {
	ios, out, _ := TestStreams()
	if err := printBake(ios, true, sampleBake()); err != nil {
		t.Fatal(err)
	}
	var back bakeJSON
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil || back.Image.ID != 42 || !back.Image.Current || len(back.Deleted) != 1 || back.Deleted[0].Current {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	golden := filepath.Join("testdata", "image-bake-json.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("image bake --json changed (go test -run TestPrintBake -update):\n%s\nwant:\n%s", out.Bytes(), want)
	}

	ios, out, errOut := TestStreams()
	if err := printBake(ios, false, sampleBake()); err != nil {
		t.Fatal(err)
	}
	if out.String() != "42\n" || !strings.Contains(errOut.String(), "baked fleet-blog-0123456789ab from debian-13-x64") || !strings.Contains(errOut.String(), "deleted snapshot fleet-blog-0123456789ab (41)") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
}

func TestPrintBakes(t *testing.T) {
	b := sampleBake()
	bakes := []deploy.Bake{{Image: b.Image, Hash: b.Hash, Current: true}, {Image: b.Deleted[0], Hash: "fedcba987654"}}
	ios, out, _ := TestStreams()
	if err := printBakes(ios, false, bakes, b.Hash); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "42\tfleet-blog-0123456789ab\t0123456789ab\tyes\t") || !strings.HasSuffix(lines[0], "\t2.41 GB") || !strings.Contains(lines[1], "\tno\t") {
		t.Errorf("rows:\n%s", out)
	}
	ios, out, _ = TestStreams()
	if err := printBakes(ios, true, nil, b.Hash); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "{\n  \"current_hash\": \"0123456789ab\",\n  \"images\": []\n}\n" {
		t.Errorf("empty list --json: %s", got)
	}
}
