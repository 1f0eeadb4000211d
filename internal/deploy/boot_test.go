package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
)

// sshd is a droplet's sshd holding host: it answers `cloud-init status`
// as b.cloudInit says, and fleet's host key rotation as a shell would
// (stage a new ed25519 key, then swap it in: later connections see it).
func (b *bakeCloud) sshd(host ssh.Signer) *remotetest.Server {
	var srv *remotetest.Server
	var next ssh.Signer
	srv = remotetest.NewServer(b.t, remotetest.Options{HostKey: host, Exec: func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
		cmd := x.Line
		switch {
		case remotetest.Runs("cloud-init", "status")(x):
			b.mu.Lock()
			h := b.cloudInit
			b.mu.Unlock()
			return h(ctx, x)
		case strings.Contains(cmd, "ssh-keygen"):
			next = newHostSigner(b.t)
			return remotetest.Reply{Stdout: string(ssh.MarshalAuthorizedKey(next.PublicKey()))}.Handle(ctx, x)
		case strings.Contains(cmd, "fleet-next") && strings.Contains(cmd, "mv -f") && next != nil:
			b.mu.Lock()
			b.rotations++
			delay := b.swapDelay
			b.mu.Unlock()
			if k := next; delay > 0 {
				time.AfterFunc(delay, func() { srv.SetHostKey(k) })
			} else {
				srv.SetHostKey(k)
			}
			return remotetest.Reply{}.Handle(ctx, x)
		}
		return remotetest.Reply{Code: 127}.Handle(ctx, x)
	}})
	srv.Authorize(b.client)
	return srv
}

func newHostSigner(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// boot adds a running droplet whose host key the cloud records.
func (b *bakeCloud) boot(d cloud.Droplet) *remotetest.Server {
	host := newHostSigner(b.t)
	srv := b.sshd(host)
	d.PublicIPv4 = srv.Addr
	d.Tags = append(d.Tags, HostKeyTag(host.PublicKey()))
	b.addDroplet(d)
	return srv
}

// bootDeployer is upDeployer on a cloud whose droplets boot an sshd,
// with the SSH fleet needs to reach them.
func bootDeployer(t *testing.T) (*Deployer, *bakeCloud) {
	t.Helper()
	file, pub := clientKey(t)
	bc := newBakeCloud(t, pub)
	d := upDeployer(t, bc)
	d.Remote = &Remote{Dialer: &remote.Dialer{KnownHosts: remote.KnownHosts{Dir: t.TempDir()}, KeyFiles: []string{file}}, SSHWait: 5 * time.Second}
	d.Warnings = &strings.Builder{}
	return d, bc
}
