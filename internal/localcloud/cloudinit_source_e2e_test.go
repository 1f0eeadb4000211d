//go:build e2e

package localcloud

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/remote"
)

// Real cloud-init on Docker droplets, read by fleet over SSH: a failing
// vendor-data (the metrics agent's install, with monitoring) and a
// failing template are told apart (CloudInitError.Source), and without
// monitoring the vendor-fail fault has nothing to fail.
func TestCloudInitFailureSource(t *testing.T) {
	b := newDockerTestBackend(t)
	key, authorized := e2eSSHKey(t)
	const failingTemplate = "#cloud-config\nruncmd:\n  - echo about to fail\n  - exit 1\n"
	const goodTemplate = "#cloud-config\nruncmd:\n  - echo ran > /root/runcmd-ran\n"
	for _, tt := range []struct {
		name       string
		m          Machine
		wantSource string // "-": cloud-init succeeds
	}{
		{"vendor", Machine{ID: 700091, PublicIPv4: "127.0.0.181", Monitoring: true, VendorFail: true, UserData: goodTemplate}, remote.SourceVendor},
		{"user", Machine{ID: 700092, PublicIPv4: "127.0.0.182", Monitoring: true, UserData: failingTemplate}, remote.SourceUser},
		{"no-monitoring", Machine{ID: 700093, PublicIPv4: "127.0.0.183", VendorFail: true, UserData: goodTemplate}, "-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := tt.m
			m.Name = "e2e-" + b.Instance + "-src-" + tt.name
			m.SSHKeys = []string{authorized}
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			if err := b.Boot(ctx, m); err != nil {
				t.Fatalf("Boot: %v", err)
			}
			defer func() {
				if err := b.Destroy(context.Background(), m.ID); err != nil {
					t.Errorf("Destroy: %v", err)
				}
			}()
			waitSSH(t, key, m.PublicIPv4, 2*time.Minute)
			// The host key, read through Docker (a trusted path), is pinned.
			c := b.ContainerName(m.Name)
			line, err := dexec(t, c, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
			if err != nil {
				t.Fatalf("host key: %v %s", err, line)
			}
			hostKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			if err != nil {
				t.Fatalf("host key %q: %v", line, err)
			}
			kh := remote.KnownHosts{Dir: t.TempDir()}
			if err := kh.Pin(m.Name, m.PublicIPv4, hostKey); err != nil {
				t.Fatal(err)
			}
			d := &remote.Dialer{KnownHosts: kh, KeyFiles: []string{key}, Logf: t.Logf}
			client, err := d.Dial(ctx, m.Name, m.PublicIPv4, time.Minute)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer client.Close()
			ci, err := client.WaitCloudInit(ctx, 4*time.Minute)
			if tt.wantSource == "-" {
				if err != nil {
					t.Fatalf("cloud-init failed without monitoring: %v", err)
				}
				if out, err := dexec(t, c, "ls", "/opt/digitalocean"); err != nil || strings.Contains(out, "do-agent") {
					t.Errorf("/opt/digitalocean without monitoring: %q %v", out, err)
				}
				t.Logf("cloud-init: %+v", ci)
				return
			}
			var ce *remote.CloudInitError
			if !errors.As(err, &ce) {
				t.Fatalf("WaitCloudInit: %v (%T), want a *remote.CloudInitError", err, err)
			}
			t.Logf("errors: %q", ce.Errors)
			if ce.Source != tt.wantSource {
				t.Errorf("Source = %q, want %q\n%v", ce.Source, tt.wantSource, err)
			}
			var ve *deploy.VendorDataError
			if got := errors.As(deploy.ClassifyCloudInit(err), &ve); got != (tt.wantSource == remote.SourceVendor) {
				t.Errorf("ClassifyCloudInit gives a VendorDataError: %v", got)
			}
			if tt.wantSource == remote.SourceVendor {
				// The user's scripts still ran, as on DigitalOcean.
				if out, err := dexec(t, c, "cat", "/root/runcmd-ran"); err != nil || out != "ran" {
					t.Errorf("runcmd after a failed vendor-data: %q %v", out, err)
				}
			}
		})
	}
}
