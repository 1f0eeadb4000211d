package deploy

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// remotetestDeployer is a Deployer whose droplet m is srv: its
// PublicIPv4 is srv's "127.0.0.1:port" (the Dialer takes a port), and its
// host key is pinned as `fleet up` would have.
func remotetestDeployer(t *testing.T, srv *remotetest.Server, data *spec.Data) (*Deployer, *Member, *bytes.Buffer) {
	t.Helper()
	m := &Member{Droplet: cloud.Droplet{ID: 1, Name: "blog-1-0-0-abc123", PublicIPv4: srv.Addr}}
	kh := remote.KnownHosts{Dir: t.TempDir()}
	if err := kh.Pin(m.Name, m.PublicIPv4, srv.HostKey); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	d := &Deployer{
		Spec: &spec.Spec{Project: "blog", Stack: &spec.Stack{Data: data}},
		Remote: &Remote{
			Dialer: &remote.Dialer{KnownHosts: kh, KeyFiles: []string{srv.ClientKeyFile}},
			Log:    &log,
		},
	}
	return d, m, &log
}

// The seam for table tests of abort paths: a freeze run on a fake droplet
// through the real Dialer, Client and runData, against scripted results.
func TestFreezeOnRemotetestDroplet(t *testing.T) {
	const freeze = `touch "$FLAG" && echo 'frozen; writes wait'` // quotes and $ must reach sh -c intact
	runsFreeze := remotetest.Runs("sh", "-c", freeze)
	for _, tc := range []struct {
		name  string
		reply remotetest.Reply
		check func(t *testing.T, err error, log string)
	}{
		{name: "frozen", reply: remotetest.Reply{Stdout: "frozen; writes wait\n"},
			check: func(t *testing.T, err error, log string) {
				if err != nil || !strings.Contains(log, "frozen; writes wait") {
					t.Fatalf("freeze: %v; log %q", err, log)
				}
			}},
		{name: "refused", reply: remotetest.Reply{Stderr: "nginx: busy\n", Code: 1},
			check: func(t *testing.T, err error, log string) {
				var ee *remote.ExitError
				if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(err.Error(), "freeze on blog-1-0-0-abc123") || !strings.Contains(err.Error(), "nginx: busy") {
					t.Fatalf("freeze: %v, want exit 1 naming the droplet, with its stderr", err)
				}
			}},
		{name: "hangs until cancelled", reply: remotetest.Reply{Hang: true},
			check: func(t *testing.T, err error, log string) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("freeze: %v, want the context's error", err)
				}
			}},
		{name: "droplet vanishes", reply: remotetest.Reply{Stdout: "freez", Drop: true},
			check: func(t *testing.T, err error, log string) {
				if err == nil || !strings.Contains(err.Error(), "without an exit status") {
					t.Fatalf("freeze: %v, want a lost connection", err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := remotetest.NewServer(t, remotetest.Options{Exec: remotetest.Script(remotetest.Rule{Match: runsFreeze, Reply: tc.reply})})
			d, m, log := remotetestDeployer(t, srv, &spec.Data{Freeze: freeze})
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			c, err := d.dialMember(ctx, m)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			out := d.outputs(nil)
			err = d.runData(ctx, c, "freeze", d.Spec.Stack.Data.Freeze, out)
			out.flush()
			tc.check(t, err, log.String())

			cmds := srv.Commands()
			if len(cmds) != 1 {
				t.Fatalf("droplet got %d commands, want 1", len(cmds))
			}
			want := []remotetest.Call{
				{Args: []string{"cd", "/srv/fleet/blog"}},
				{Assigns: []string{"COMPOSE_PROJECT_NAME=blog", "COMPOSE_FILE=/srv/fleet/blog/compose.yaml"}, Args: []string{"sh", "-c", freeze}},
			}
			if !reflect.DeepEqual(cmds[0].Calls, want) {
				t.Errorf("droplet ran %q\nparsed %q\nwant   %q", cmds[0].Line, cmds[0].Calls, want)
			}
		})
	}
}
