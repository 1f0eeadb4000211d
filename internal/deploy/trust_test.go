package deploy

import (
	"errors"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
)

// A droplet whose recorded fingerprint does not match the key it presents
// is refused, from a fresh home and from a warm one whose cache holds the
// presented key: the cloud's record decides, never the cache.
func TestDialRefusesUnrecordedHostKey(t *testing.T) {
	for _, tc := range []struct {
		name   string
		warm   bool // a verified dial filled the cache before the retag
		retag  bool // the tag records another key
		wantOK bool
	}{
		{name: "fresh home, recorded", wantOK: true},
		{name: "warm home, recorded", warm: true, wantOK: true},
		{name: "fresh home, mismatch", retag: true},
		{name: "warm home, mismatch", warm: true, retag: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, bc := bootDeployer(t)
			srv := bc.boot(cloud.Droplet{ID: 7, Name: "blog-v1-0-0-xa", Status: "active", Region: "fra1",
				Tags: []string{ProjectTag("blog"), VersionTag("v1.0.0"), TagHealthy}})
			if tc.warm {
				c, err := d.dialMember(t.Context(), memberOf(t, d, 7))
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if tc.retag {
				dr, _ := bc.GetDroplet(t.Context(), 7)
				for _, tag := range dr.Tags {
					if strings.HasPrefix(tag, HostKeyPrefix) {
						bc.Untag(t.Context(), 7, tag)
					}
				}
				bc.Tag(t.Context(), 7, HostKeyTag(newHostSigner(t).PublicKey()))
			}
			before := len(srv.Commands())
			c, err := d.dialMember(t.Context(), memberOf(t, d, 7))
			if tc.wantOK {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			var mm *remote.HostKeyMismatchError
			if !errors.As(err, &mm) || !mm.Recorded || !strings.Contains(err.Error(), "recorded in the cloud") {
				t.Fatalf("dial: %v, want a mismatch with the cloud's record", err)
			}
			if len(srv.Commands()) != before {
				t.Fatal("a command ran on the refused droplet")
			}
		})
	}
}

// memberOf reads droplet id's Member from the cloud, as every command does.
func memberOf(t *testing.T, d *Deployer, id int) *Member {
	t.Helper()
	st, err := d.State(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range st.Members {
		if st.Members[i].ID == id {
			return &st.Members[i]
		}
	}
	t.Fatalf("no droplet %d", id)
	return nil
}

func TestHostKeyTag(t *testing.T) {
	k := newHostSigner(t).PublicKey()
	tag := HostKeyTag(k)
	if len(tag) != len(HostKeyPrefix)+52 || !strings.HasPrefix(tag, HostKeyPrefix) {
		t.Fatalf("HostKeyTag = %q", tag)
	}
	if got := recordedKeys([]string{"fleet:blog", tag, HostKeyPrefix}); len(got) != 1 || HostKeyPrefix+got[0] != tag {
		t.Fatalf("recordedKeys = %q", got)
	}
}
