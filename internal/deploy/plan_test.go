package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"gopkg.in/yaml.v3"
)

// planMember adds a droplet of project blog to c.
func planMember(c *fakeCloud, id int, version, size string, age time.Duration, tags ...string) {
	c.addDroplet(cloud.Droplet{
		ID: id, Name: "blog-" + strings.ReplaceAll(version, ".", "-") + "-x", Status: "active", Region: "fra1", Size: size,
		Tags: append([]string{ProjectTag("blog"), VersionTag(version)}, tags...), CreatedAt: time.Now().Add(-age),
	})
}

// Plan reads, checks as Up does and prices; it changes nothing (the fake
// logs every mutating call, and Sizes).
func TestPlan(t *testing.T) {
	for _, tt := range []struct {
		name    string
		setup   func(c *fakeCloud)
		version string
		// want
		create                        bool
		resume                        int
		destroy                       []int
		before, afterUp, afterPromote float64
		err                           string
	}{
		{name: "first up", version: "v1.0.0", create: true, before: 0, afterUp: 6, afterPromote: 6},
		{
			name: "live, previous, failed (keep 2)", version: "v1.4.0", create: true,
			setup: func(c *fakeCloud) {
				planMember(c, 1, "v1.0.0", "s-2vcpu-4gb", 4*time.Hour, TagPromoted)
				planMember(c, 2, "v1.1.0", "s-1vcpu-512mb-10gb", 3*time.Hour, TagPromoted)
				planMember(c, 3, "v1.2.0", "s-1vcpu-1gb", 2*time.Hour, TagPromoted)
				planMember(c, 4, "v1.3.0", "s-1vcpu-1gb", time.Hour, TagFailed)
				c.addIP("203.0.113.7", 3)
			},
			// now 24+4+6+6; up adds 6; promote keeps the new one, the old
			// live (3) and the newest previous (2): 6+6+4.
			before: 40, afterUp: 46, afterPromote: 16,
		},
		{
			name: "resume with a duplicate", version: "v1.1.0", resume: 3, destroy: []int{2},
			setup: func(c *fakeCloud) {
				planMember(c, 1, "v1.0.0", "s-1vcpu-1gb", 3*time.Hour, TagPromoted)
				planMember(c, 2, "v1.1.0", "s-1vcpu-1gb", 2*time.Hour)
				planMember(c, 3, "v1.1.0", "s-1vcpu-1gb", time.Hour)
				c.addIP("203.0.113.7", 1)
			},
			before: 18, afterUp: 12, afterPromote: 12,
		},
		{
			name: "candidate of another version", version: "v1.2.0", err: "candidate blog-v1-1-0-x (v1.1.0) is waiting",
			setup: func(c *fakeCloud) { planMember(c, 2, "v1.1.0", "s-1vcpu-1gb", time.Hour) },
		},
		{name: "bad version", version: "v1_0", err: "version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fc := newFakeCloud()
			if tt.setup != nil {
				tt.setup(fc)
			}
			d := upDeployer(t, fc)
			p, err := d.Plan(t.Context(), tt.version, UpOptions{})
			if got := fc.calls; len(got) > 1 || (len(got) == 1 && got[0] != "Sizes") {
				t.Errorf("calls besides reads: %v", got)
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				// The same refusal as Up's.
				if _, uerr := upDeployer(t, fc).Up(t.Context(), tt.version, UpOptions{}); uerr == nil || uerr.Error() != err.Error() {
					t.Errorf("Up says %v, Plan %v", uerr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.Create != nil) != tt.create {
				t.Fatalf("create %+v, want %v", p.Create, tt.create)
			}
			if p.Create != nil {
				if !strings.HasPrefix(p.Create.Name, "blog-"+strings.ReplaceAll(tt.version, ".", "-")+"-") || p.Create.Image.Slug != "debian-13-x64" || p.Create.Size != "s-1vcpu-1gb" {
					t.Errorf("create %+v", p.Create)
				}
				if !strings.Contains(p.UserData, "hostname: "+p.Create.Name) {
					t.Errorf("user_data %q", p.UserData)
				}
			}
			if got := p.Resume.idOr0(); got != tt.resume {
				t.Errorf("resume %d, want %d", got, tt.resume)
			}
			var destroy []int
			for _, m := range p.Destroy {
				destroy = append(destroy, m.ID)
			}
			if !slices.Equal(destroy, tt.destroy) {
				t.Errorf("destroy %v, want %v", destroy, tt.destroy)
			}
			if c := p.Cost; c.Before != tt.before || c.AfterUp != tt.afterUp || c.AfterPromote != tt.afterPromote || len(c.Unpriced) > 0 {
				t.Errorf("cost %+v, want %v → %v → %v", c, tt.before, tt.afterUp, tt.afterPromote)
			}
			mutating := 0
			for _, c := range p.Calls {
				if c.Mutating() && c.When == "" {
					mutating++
				}
			}
			want := len(tt.destroy) + 5 // DELETEs; the gate's host key and healthy tags
			if tt.create {
				want++ // POST /v2/droplets
			}
			if mutating != want {
				t.Errorf("%d unconditional mutating calls planned, want %d: %+v", mutating, want, p.Calls)
			}
		})
	}
}

// A size the API does not list is a warning (the create would be
// refused), and its droplets are counted as unpriced, not as free.
func TestPlanUnknownSize(t *testing.T) {
	fc := newFakeCloud()
	planMember(fc, 1, "v1.0.0", "x-huge", time.Hour, TagPromoted)
	fc.addIP("203.0.113.7", 1)
	d := upDeployer(t, fc)
	d.Spec.Droplet.Size = "s-99vcpu"
	p, err := d.Plan(t.Context(), "v1.1.0", UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], "droplet.size s-99vcpu") || strings.Join(p.Cost.Unpriced, ",") != "s-99vcpu,x-huge" {
		t.Errorf("warnings %q, unpriced %q", p.Warnings, p.Cost.Unpriced)
	}
}

// A failing price list fails the plan: a plan without its cost is not one.
func TestPlanSizesFail(t *testing.T) {
	fc := newFakeCloud()
	fc.inject("Sizes", fault{err: errors.New("503")})
	if _, err := upDeployer(t, fc).Plan(t.Context(), "v1.0.0", UpOptions{}); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err %v", err)
	}
}

// The host key's private half never reaches the plan: its block becomes
// one marker line (the YAML still parses), and any line of it or any
// secret value left elsewhere is redacted too.
func TestRedactUserData(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "t.yaml")
	os.WriteFile(tmpl, []byte("#cloud-config\nwrite_files:\n  - path: /etc/x\n    content: hunter2-secret\n"), 0o644)
	key, err := cloudinit.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	ud, err := cloudinit.Render(tmpl, cloudinit.Data{Project: "blog", Version: "v1", DropletName: "n", DeployID: "i", Stack: true, HostKey: key})
	if err != nil {
		t.Fatal(err)
	}
	out := redactUserData(ud, key, []string{"hunter2-secret"})
	for _, l := range strings.Split(strings.TrimSpace(key.PrivatePEM), "\n") {
		if strings.Contains(out, l) {
			t.Errorf("private key line %q in:\n%s", l, out)
		}
	}
	if strings.Contains(out, "hunter2") || !strings.Contains(out, RedactedHostKey) || !strings.Contains(out, key.AuthorizedLine) {
		t.Errorf("redacted:\n%s", out)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("redacted user_data is not YAML: %v\n%s", err, out)
	}
	if k := doc["ssh_keys"].(map[string]any)["ed25519_private"]; strings.TrimSpace(k.(string)) != RedactedHostKey {
		t.Errorf("ed25519_private = %q", k)
	}
}

// droplet.image: bake reads whether the current bake exists and never
// bakes: without one the plan says up would bake first (and lists the
// bake's calls); with one, the droplet boots it.
func TestPlanBake(t *testing.T) {
	fc := newFakeCloud()
	d := upDeployer(t, fc)
	d.Spec.Droplet.Image = "bake"
	p, err := d.Plan(t.Context(), "v1.0.0", UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := os.ReadFile(d.Spec.Droplet.CloudInit)
	name := SnapshotName("blog", TemplateHash(tmpl, "debian-13-x64"))
	if b := p.Create.Image.Bake; b == nil || b.Name != name || b.Base != "debian-13-x64" || p.Create.Image.Snapshot != nil {
		t.Fatalf("image %+v, want a bake of %s", p.Create.Image, name)
	}
	if len(fc.calls) != 1 {
		t.Errorf("calls besides reads: %v", fc.calls)
	}
	bakeCalls := 0
	for _, c := range p.Calls {
		if strings.HasPrefix(c.Why, "bake: ") {
			bakeCalls++
		}
	}
	if bakeCalls == 0 {
		t.Errorf("no bake calls planned: %+v", p.Calls)
	}

	id := fc.addImage(cloud.Image{Name: name, Regions: []string{"fra1"}})
	p, err = upDeployer(t, fc).withImage("bake").Plan(t.Context(), "v1.0.0", UpOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Create.Image.Snapshot; s == nil || s.ID != id || p.Create.Image.Bake != nil {
		t.Fatalf("image %+v, want snapshot %d", p.Create.Image, id)
	}
}

func (d *Deployer) withImage(img string) *Deployer {
	d.Spec.Droplet.Image = img
	return d
}
