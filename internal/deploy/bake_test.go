package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
)

const (
	ciDone   = `{"status": "done", "errors": []}`
	ciFailed = `{"status": "error", "errors": ["scripts_user: runcmd failed (apt-get install docker.io: exit 100)"]}`
)

// bakeCloud boots every droplet it creates: an sshd (remotetest) holding
// the host key of its user_data, whose `cloud-init status` answers
// cloudInit.
type bakeCloud struct {
	*fakeCloud
	t         *testing.T
	client    ssh.PublicKey
	mu        sync.Mutex
	cloudInit remotetest.Handler
	userData  map[string]string // by droplet name
	rotations int               // host key swaps done
	// swapDelay: sshd takes up the swapped key this long after the swap
	// command returns (its reload is asynchronous).
	swapDelay time.Duration
}

func newBakeCloud(t *testing.T, client ssh.PublicKey) *bakeCloud {
	b := &bakeCloud{fakeCloud: newFakeCloud(), t: t, client: client, userData: map[string]string{}}
	b.answer(remotetest.Reply{Stdout: ciDone})
	return b
}

func (b *bakeCloud) answer(r remotetest.Reply) { b.answerWith(r.Handle) }

func (b *bakeCloud) answerWith(h remotetest.Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cloudInit = h
}

func (b *bakeCloud) CreateDroplet(ctx context.Context, req cloud.CreateRequest) (*cloud.Droplet, int, error) {
	dr, a, err := b.fakeCloud.CreateDroplet(ctx, req)
	if err != nil || !strings.Contains(req.UserData, "ed25519_private") { // no host key: no SSH (a provision-only up)
		return dr, a, err
	}
	srv := b.sshd(hostKeyOf(b.t, req.UserData))
	b.fakeCloud.mu.Lock()
	b.droplets[dr.ID].PublicIPv4 = srv.Addr
	b.fakeCloud.mu.Unlock()
	b.mu.Lock()
	b.userData[req.Name] = req.UserData
	b.mu.Unlock()
	dr.PublicIPv4 = srv.Addr
	return dr, a, nil
}

// hostKeyOf is the host key fleet put in user_data.
func hostKeyOf(t *testing.T, userData string) ssh.Signer {
	var doc struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal([]byte(userData), &doc); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey([]byte(doc.SSHKeys["ed25519_private"]))
	if err != nil {
		t.Fatalf("no host key in user_data: %v", err)
	}
	return s
}

// clientKey writes a private key file for the Dialer.
func clientKey(t *testing.T) (string, ssh.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return file, sp
}

// bakeDeployer is upDeployer with image: bake, SSH, and its bake cloud.
func bakeDeployer(t *testing.T) (*Deployer, *bakeCloud) {
	t.Helper()
	file, pub := clientKey(t)
	bc := newBakeCloud(t, pub)
	d := upDeployer(t, bc)
	d.Spec.Droplet.Image, d.Spec.Droplet.BaseImage = spec.ImageBake, "debian-13-x64"
	d.Spec.Timeouts.Snapshot = time.Second
	d.Remote = &Remote{Dialer: &remote.Dialer{KnownHosts: remote.KnownHosts{Dir: t.TempDir()}, KeyFiles: []string{file}}, SSHWait: 5 * time.Second}
	d.Warnings = &strings.Builder{}
	return d, bc
}

func (d *Deployer) testHash(t *testing.T) string {
	t.Helper()
	p, err := d.planBake()
	if err != nil {
		t.Fatal(err)
	}
	return p.hash
}

// bakeDropletsLeft counts the droplets tagged fleet-bake.
func bakeDropletsLeft(t *testing.T, c *fakeCloud) int {
	ds, err := c.ListByTag(t.Context(), TagBake)
	if err != nil {
		t.Fatal(err)
	}
	return len(ds)
}

func TestBakeHappyPath(t *testing.T) {
	d, bc := bakeDeployer(t)
	res, err := d.Bake(t.Context(), BakeOptions{})
	if err != nil {
		t.Fatalf("bake: %v", err)
	}
	tmpl, _ := os.ReadFile(d.Spec.Droplet.CloudInit)
	hash := TemplateHash(tmpl, "debian-13-x64")
	if res.Hash != hash || res.Image.Name != "fleet-blog-"+hash || res.Existing || res.Adopted || res.Image.ID == 0 {
		t.Fatalf("result %+v, want a new snapshot fleet-blog-%s", res, hash)
	}
	if got := bc.imageNames(); !slices.Equal(got, []string{"fleet-blog-" + hash}) {
		t.Errorf("snapshots %q", got)
	}
	if n := bakeDropletsLeft(t, bc.fakeCloud); n != 0 {
		t.Errorf("%d bake droplets left", n)
	}
	req := bc.created[1000]
	if req.Image != "debian-13-x64" || !slices.Contains(req.Tags, "fleet:blog") || !slices.Contains(req.Tags, TagBake) || !slices.Contains(req.Tags, BakeTag("blog", hash)) {
		t.Errorf("create request %+v", req)
	}
	if ud := bc.userData[req.Name]; !strings.Contains(ud, "hostname: blog-bake-") {
		t.Errorf("user_data not rendered for the bake: %q", ud)
	}
	if i, j := slices.Index(bc.calls, "PowerOff 1000"), slices.Index(bc.calls, "Snapshot 1000 fleet-blog-"+hash); i < 0 || j < i {
		t.Errorf("calls %q: want PowerOff, then Snapshot", bc.calls)
	}

	// Again: the snapshot of this hash is returned, nothing is made.
	again, err := d.Bake(t.Context(), BakeOptions{})
	if err != nil || !again.Existing || again.Image.ID != res.Image.ID || len(bc.created) != 1 {
		t.Fatalf("second bake: %+v, %v (%d creates)", again, err, len(bc.created))
	}
	// --force bakes anew and deletes the old one: one snapshot per hash.
	forced, err := d.Bake(t.Context(), BakeOptions{Force: true})
	if err != nil || forced.Existing || forced.Image.ID == res.Image.ID || len(forced.Deleted) != 1 || forced.Deleted[0].ID != res.Image.ID {
		t.Fatalf("forced bake: %+v, %v", forced, err)
	}
	if got := bc.imageNames(); len(got) != 1 {
		t.Errorf("snapshots after --force: %q", got)
	}
}

func TestBakeCloudInitFails(t *testing.T) {
	d, bc := bakeDeployer(t)
	bc.answer(remotetest.Reply{Stdout: ciFailed, Code: 1})
	_, err := d.Bake(t.Context(), BakeOptions{})
	var be *BakeError
	if !errors.As(err, &be) || !be.Destroyed || !strings.Contains(err.Error(), "runcmd failed") || !strings.Contains(err.Error(), "was destroyed; no snapshot was made") {
		t.Fatalf("bake: %v, want a BakeError saying cloud-init failed and the droplet is gone", err)
	}
	if n := bakeDropletsLeft(t, bc.fakeCloud); n != 0 {
		t.Errorf("%d bake droplets left", n)
	}
	if got := bc.imageNames(); len(got) != 0 {
		t.Errorf("snapshots %q", got)
	}
	if _, err := os.Stat(d.Remote.Dialer.KnownHosts.Path(be.Droplet)); !os.IsNotExist(err) {
		t.Errorf("the destroyed droplet's host key is still pinned (%v)", err)
	}
}

// A failure only in the vendor-data (DigitalOcean's metrics agent) is
// told apart from the template's own; the template's stays as it was.
func TestBakeVendorDataFails(t *testing.T) {
	const vendorFailed = `{"status": "error", "errors": ["('scripts-vendor', RuntimeError('Runparts: 1 failures (do-agent) in 2 attempted commands'))"]}`
	for _, tc := range []struct {
		name, json string
		vendor     bool
	}{
		{"vendor-data", vendorFailed, true},
		{"template", ciFailed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, bc := bakeDeployer(t)
			bc.answer(remotetest.Reply{Stdout: tc.json, Code: 1})
			_, err := d.Bake(t.Context(), BakeOptions{})
			var be *BakeError
			var ve *VendorDataError
			if !errors.As(err, &be) || !be.Destroyed || errors.As(err, &ve) != tc.vendor {
				t.Fatalf("bake: %v, want a BakeError (vendor-data: %v)", err, tc.vendor)
			}
			if got := strings.Contains(err.Error(), "not in your cloud-init template"); got != tc.vendor {
				t.Errorf("message says it is the vendor-data: %v, want %v:\n%v", got, tc.vendor, err)
			}
		})
	}
}

// A bake interrupted anywhere converges when run again: one snapshot of
// the hash, no bake droplet left.
func TestBakeInterruptedConverges(t *testing.T) {
	for _, tc := range []struct {
		name string
		// arm makes the first run stop (cancel) at its point.
		arm          func(bc *bakeCloud, cancel context.CancelFunc)
		adopted      bool // the re-run resumes the droplet
		sameSnapshot bool // the re-run returns the snapshot the first made
		// elsewhere: the re-run runs on another machine (no pinned keys)
		elsewhere bool
	}{
		{name: "during cloud-init", adopted: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			var once sync.Once
			bc.answerWith(func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
				first := false
				once.Do(func() { first = true })
				if first {
					cancel()
					return remotetest.Reply{Hang: true}.Handle(ctx, x)
				}
				return remotetest.Reply{Stdout: ciDone}.Handle(ctx, x)
			})
		}},
		{name: "before power off", adopted: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			bc.inject("PowerOff", fault{times: 1, err: context.Canceled, hook: cancel})
		}},
		{name: "snapshot made, answer lost", sameSnapshot: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			bc.inject("Snapshot", fault{mode: failAfter, times: 1, err: context.Canceled, hook: cancel})
		}},
		{name: "snapshot not made", adopted: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			bc.inject("Snapshot", fault{times: 1, err: context.Canceled, hook: cancel})
		}},
		{name: "snapshot not made, re-run elsewhere", adopted: true, elsewhere: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			bc.inject("Snapshot", fault{times: 1, err: context.Canceled, hook: cancel})
		}},
		{name: "snapshot made, droplet not destroyed", sameSnapshot: true, arm: func(bc *bakeCloud, cancel context.CancelFunc) {
			bc.inject("DeleteDroplet", fault{times: 1, err: context.Canceled, hook: cancel})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, bc := bakeDeployer(t)
			ctx, cancel := context.WithCancel(t.Context())
			tc.arm(bc, cancel)
			if _, err := d.Bake(ctx, BakeOptions{}); !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want interrupted", err)
			}
			if tc.elsewhere {
				d.Remote.Dialer.KnownHosts.Dir = t.TempDir()
			}
			first := bc.imageNames()
			var firstID int
			for id := range bc.images {
				firstID = id
			}
			res, err := d.Bake(t.Context(), BakeOptions{})
			if err != nil {
				t.Fatalf("re-run: %v", err)
			}
			if res.Adopted != tc.adopted || len(bc.created) != 1 {
				t.Errorf("re-run adopted=%v with %d creates in all, want adopted=%v and 1", res.Adopted, len(bc.created), tc.adopted)
			}
			if tc.sameSnapshot && (len(first) != 1 || res.Image.ID != firstID) {
				t.Errorf("re-run returned snapshot %d, the first run made %q (%d)", res.Image.ID, first, firstID)
			}
			if got := bc.imageNames(); len(got) != 1 || got[0] != "fleet-blog-"+res.Hash {
				t.Errorf("snapshots %q, want one of hash %s", got, res.Hash)
			}
			if n := bakeDropletsLeft(t, bc.fakeCloud); n != 0 {
				t.Errorf("%d bake droplets left", n)
			}
		})
	}
}

// A leftover this machine cannot verify (no pinned key: another machine
// started it) is destroyed and the bake starts over; a leftover of
// another hash is destroyed too.
func TestBakeReplacesLeftovers(t *testing.T) {
	d, bc := bakeDeployer(t)
	hash := d.testHash(t)
	bc.addDroplet(cloud.Droplet{ID: 7, Name: "blog-bake-aaaaaa", Status: "active", Region: "fra1", Tags: []string{"fleet:blog", TagBake, BakeTag("blog", hash)}})
	bc.addDroplet(cloud.Droplet{ID: 8, Name: "blog-bake-bbbbbb", Status: "off", Region: "fra1", Tags: []string{"fleet:blog", TagBake, BakeTag("blog", "0123456789ab")}})
	bc.addDroplet(cloud.Droplet{ID: 9, Name: "shop-bake-cccccc", Status: "off", Region: "fra1", Tags: []string{"fleet:shop", TagBake}})
	res, err := d.Bake(t.Context(), BakeOptions{})
	if err != nil || res.Adopted {
		t.Fatalf("bake: %+v, %v", res, err)
	}
	if slices.Sort(res.Destroyed); !slices.Equal(res.Destroyed, []string{"blog-bake-aaaaaa", "blog-bake-bbbbbb"}) {
		t.Errorf("destroyed %q", res.Destroyed)
	}
	if _, err := bc.GetDroplet(t.Context(), 9); err != nil {
		t.Errorf("another project's bake droplet was touched: %v", err)
	}
	// State keeps bake droplets out of the lifecycle.
	bc.addDroplet(cloud.Droplet{ID: 10, Name: "blog-bake-dddddd", Status: "active", Tags: []string{"fleet:blog", TagBake}})
	st, err := d.State(t.Context())
	if err != nil || len(st.Members) != 0 || len(st.Bakes) != 1 || st.Candidate() != nil {
		t.Errorf("state: %+v, %v; want the bake droplet apart from the members", st, err)
	}
}

// up with image: bake creates the candidate from the newest bake of the
// current template in the region, and bakes first when there is none.
func TestUpWithBake(t *testing.T) {
	d, bc := bakeDeployer(t)
	hash := d.testHash(t)
	at := func(min int) time.Time { return time.Date(2026, 1, 1, 0, min, 0, 0, time.UTC) }
	older := bc.addImage(cloud.Image{Name: "fleet-blog-" + hash, Regions: []string{"fra1"}, CreatedAt: at(1)})
	newest := bc.addImage(cloud.Image{Name: "fleet-blog-" + hash, Regions: []string{"fra1"}, CreatedAt: at(2)})
	bc.addImage(cloud.Image{Name: "fleet-blog-" + hash, Regions: []string{"nyc3"}, CreatedAt: at(3)})      // another region
	bc.addImage(cloud.Image{Name: "fleet-blog-0123456789ab", Regions: []string{"fra1"}, CreatedAt: at(4)}) // another template
	res, err := d.Up(t.Context(), "v1.0.0", UpOptions{})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if req := bc.created[res.Droplet.ID]; req.ImageID != newest || res.Image.Baked != nil {
		t.Fatalf("created from image %d (baked: %v), want the newest bake %d (not %d)", req.ImageID, res.Image.Baked, newest, older)
	}

	// The template changes: the next up bakes, then creates from the bake.
	if err := os.WriteFile(d.Spec.Droplet.CloudInit, []byte("#cloud-config\nhostname: {{.DropletName}}\npackages: [docker.io]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rollback(t.Context(), RollbackOptions{}); err != nil { // discard the candidate
		t.Fatal(err)
	}
	res, err = d.Up(t.Context(), "v1.1.0", UpOptions{})
	if err != nil {
		t.Fatalf("up after the template changed: %v", err)
	}
	b := res.Image.Baked
	if b == nil || b.Hash == hash || b.Image.Name != "fleet-blog-"+b.Hash {
		t.Fatalf("up did not bake the new template: %+v", res.Image)
	}
	if req := bc.created[res.Droplet.ID]; req.ImageID != b.Image.ID || req.Image != "" {
		t.Errorf("candidate created from %q/%d, want the new bake %d", req.Image, req.ImageID, b.Image.ID)
	}
	if n := bakeDropletsLeft(t, bc.fakeCloud); n != 0 {
		t.Errorf("%d bake droplets left", n)
	}
}

func TestResolveImage(t *testing.T) {
	d, bc := bakeDeployer(t)
	snap := bc.addImage(cloud.Image{Name: "blog base", Regions: []string{"fra1"}})
	bc.addImage(cloud.Image{Name: "elsewhere", Regions: []string{"nyc3"}})
	for _, tc := range []struct {
		image, want, err string
	}{
		{image: "debian-13-x64", want: "debian-13-x64"},
		{image: "blog base", want: "blog base (image " + strconv.Itoa(snap) + ")"},
		{image: "no-such-thing", err: `droplet.image: "no-such-thing" is neither an image slug DigitalOcean knows nor a snapshot of this account`},
		{image: "elsewhere", err: `droplet.image: snapshot "elsewhere" is not in region fra1 (it is in nyc3)`},
	} {
		d.Spec.Droplet.Image = tc.image
		ref, err := d.ResolveImage(t.Context())
		var ce *ConfigError
		switch {
		case tc.err != "" && (!errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v, want a ConfigError %q", tc.image, err, tc.err)
		case tc.err == "" && (err != nil || ref.String() != tc.want):
			t.Errorf("%s: %v, %v; want %s", tc.image, ref, err, tc.want)
		}
	}
}

func TestBakesAndPrune(t *testing.T) {
	d, bc := bakeDeployer(t)
	hash := d.testHash(t)
	at := func(min int) time.Time { return time.Date(2026, 1, 1, 0, min, 0, 0, time.UTC) }
	cur := bc.addImage(cloud.Image{Name: "fleet-blog-" + hash, Regions: []string{"fra1"}, CreatedAt: at(3)})
	dup := bc.addImage(cloud.Image{Name: "fleet-blog-" + hash, Regions: []string{"fra1"}, CreatedAt: at(2)})
	old := bc.addImage(cloud.Image{Name: "fleet-blog-0123456789ab", Regions: []string{"fra1"}, CreatedAt: at(1)})
	bc.addImage(cloud.Image{Name: "fleet-blog-x-0123456789ab", Regions: []string{"fra1"}}) // project blog-x
	bc.addImage(cloud.Image{Name: "fleet-blog-notes", Regions: []string{"fra1"}})          // not a bake
	bakes, h, err := d.Bakes(t.Context())
	if err != nil || h != hash || len(bakes) != 3 {
		t.Fatalf("bakes: %+v, %s, %v", bakes, h, err)
	}
	if !bakes[0].Current || bakes[0].ID != cur || bakes[1].Current || bakes[2].Current {
		t.Errorf("current: %+v", bakes)
	}
	stale := StaleBakes(bakes)
	done, err := d.DeleteBakes(t.Context(), stale)
	if err != nil || len(done) != 2 || done[0].ID != dup || done[1].ID != old {
		t.Fatalf("prune: %+v, %v", done, err)
	}
	if got := bc.imageNames(); !slices.Equal(got, []string{"fleet-blog-" + hash, "fleet-blog-notes", "fleet-blog-x-0123456789ab"}) {
		t.Errorf("left: %q", got)
	}
}
