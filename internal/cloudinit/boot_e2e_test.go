//go:build e2e

package cloudinit_test

// A real boot of the repository's template with an injected host key, in
// fleet's local droplet image (a container with cloud-init, sshd and
// Docker). Run with
//
//	go test -tags e2e ./internal/cloudinit/ -run Boot -v
//
// It needs what internal/localcloud's Docker tests need (dockerd, ssh,
// ssh-keygen, ssh-keyscan) and uses 127.0.0.160.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"github.com/fleetdeploy/fleet/internal/localcloud"
)

type logWriter struct{ tb testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// smtpSink is a one-message SMTP server on 127.0.0.1:2525 (the stack's
// postfix, as the droplet's satellite postfix sees it); it writes what it
// got to /root/relayed.
const smtpSink = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 2525)); s.listen(1)
c, _ = s.accept(); f = c.makefile("rwb")
def say(l): f.write(l.encode() + b"\r\n"); f.flush()
say("220 sink ESMTP"); got = []
while True:
    l = f.readline().decode().rstrip("\r\n")
    u = l.upper()
    if u.startswith("EHLO") or u.startswith("HELO"): say("250 sink")
    elif u.startswith("DATA"):
        say("354 go on")
        while True:
            d = f.readline().decode().rstrip("\r\n")
            if d == ".": break
            got.append(d)
        say("250 queued")
    elif u.startswith("QUIT"): say("221 bye"); break
    else: got.append(l); say("250 ok")
open("/root/relayed", "w").write("\n".join(got) + "\n")
`

func TestBootRepoTemplate(t *testing.T) {
	const ip = "127.0.0.160"
	var r [4]byte
	rand.Read(r[:])
	instance := "ci-e2e-" + hex.EncodeToString(r[:])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// The bare droplet installs Docker and postfix through the local
	// cloud's apt proxy, and pulls base images from its registry mirror.
	mirrors, err := localcloud.EnsureMirrors(ctx, logWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	b, err := localcloud.NewDockerBackend(ctx, localcloud.DockerOptions{Instance: instance, Log: logWriter{t}, BootTimeout: 3 * time.Minute,
		AptProxy: mirrors.AptProxy, RegistryMirror: mirrors.RegistryMirror})
	if err != nil {
		t.Fatal(err)
	}
	const id = 716001
	t.Cleanup(func() {
		if err := b.Destroy(context.Background(), id); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})

	hk, err := cloudinit.NewHostKey()
	if err != nil {
		t.Fatal(err)
	}
	d := cloudinit.Data{Project: "blog", Version: "v1.2.0", DropletName: "blog-v1-2-0-" + hex.EncodeToString(r[:2]), DeployID: "d-" + instance, HostKey: hk}
	userData, err := cloudinit.Render(filepath.Join("..", "..", "cloud-init", "droplet.yaml"), d)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	knownHosts := filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(ip+" "+hk.AuthorizedLine+"\n"), 0o600)

	m := localcloud.Machine{ID: id, Name: d.DropletName, Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64",
		UserData: string(userData), SSHKeys: []string{strings.TrimSpace(string(pub))}, PublicIPv4: ip}
	start := time.Now()
	if err := b.Boot(ctx, m); err != nil {
		t.Fatalf("Boot: %v", err)
	}
	t.Logf("booted in %v", time.Since(start).Round(time.Millisecond))
	// As on DigitalOcean the droplet runs before cloud-init is done.
	wait := exec.CommandContext(ctx, "docker", "exec", b.ContainerName(m.Name), "cloud-init", "status", "--wait")
	if out, err := wait.CombinedOutput(); err != nil {
		t.Logf("cloud-init status --wait: %v\n%s", err, out)
	}
	t.Logf("cloud-init done %v after the create", time.Since(start).Round(time.Millisecond))

	// ssh pinned to the injected key only.
	ssh := func(command string) (string, error) {
		out, err := exec.CommandContext(ctx, "ssh", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+knownHosts,
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", "-i", key, "root@"+ip, command).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	check := func(what, command string, ok func(string) bool) {
		t.Helper()
		out, err := ssh(command)
		t.Logf("%s:\n$ %s\n%s", what, command, out)
		if err != nil || !ok(out) {
			t.Errorf("%s: %v", what, err)
		}
	}
	check("cloud-init", "cloud-init status --long", func(s string) bool {
		return strings.Contains(s, "status: done") && strings.Contains(s, "extended_status: done") && !strings.Contains(s, "degraded")
	})
	if out, err := exec.CommandContext(ctx, "ssh-keyscan", "-t", "ed25519,rsa,ecdsa", ip).Output(); err != nil || strings.TrimSpace(string(out)) != ip+" "+hk.AuthorizedLine {
		t.Errorf("ssh-keyscan: %v\n%s\nwant %s %s", err, out, ip, hk.AuthorizedLine)
	} else {
		t.Logf("ssh-keyscan: %s", strings.TrimSpace(string(out)))
	}
	check("host keys", "ls /etc/ssh/ssh_host_*", func(s string) bool {
		return s == "/etc/ssh/ssh_host_ed25519_key\n/etc/ssh/ssh_host_ed25519_key.pub"
	})
	check("layout", "stat -c '%a %U:%G %n' /srv/fleet/blog /etc/fleet/blog/secrets", func(s string) bool {
		return s == "755 root:root /srv/fleet/blog\n700 root:root /etc/fleet/blog/secrets"
	})
	check("postfix", "postconf relayhost inet_interfaces mydestination myorigin myhostname && cat /etc/mailname && postfix status", func(s string) bool {
		return strings.Contains(s, "relayhost = [127.0.0.1]:2525\ninet_interfaces = loopback-only\nmydestination =\nmyorigin = /etc/mailname\nmyhostname = "+d.DropletName+"\n"+d.DropletName+"\n")
	})
	check("docker", "docker info --format '{{.ServerVersion}}' && docker compose version", func(s string) bool {
		return strings.Contains(s, "Docker Compose version v2") || strings.Contains(s, "Docker Compose version 2")
	})
	check("responder", "curl -fsS http://127.0.0.1/", func(s string) bool { return s == "fleet blog v1.2.0" })

	// Cron's mail goes to root; the satellite relays it to the stack.
	if err := os.WriteFile(filepath.Join(dir, "sink.py"), []byte(smtpSink), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-c", "docker exec -i "+b.ContainerName(m.Name)+" sh -c 'cat >/root/sink.py' <"+filepath.Join(dir, "sink.py")).CombinedOutput(); err != nil {
		t.Fatalf("copying the sink: %v\n%s", err, out)
	}
	check("relay", "(setsid python3 /root/sink.py >/root/sink.log 2>&1 &) ; sleep 1; "+
		"printf 'Subject: cron\\n\\nhello from cron\\n' | sendmail root; postqueue -f; "+
		"for i in $(seq 50); do [ -s /root/relayed ] && break; sleep 0.2; done; cat /root/relayed", func(s string) bool {
		return strings.Contains(s, "RCPT TO:<root@"+d.DropletName+">") && strings.Contains(s, "hello from cron")
	})

	// Docker in the droplet runs a container (an image from the host).
	save := exec.Command("sh", "-c", "docker save debian:trixie-slim | docker exec -i "+b.ContainerName(m.Name)+" docker load")
	if out, err := save.CombinedOutput(); err != nil {
		t.Errorf("loading an image: %v\n%s", err, out)
	}
	check("docker run", "docker run --rm debian:trixie-slim echo nested", func(s string) bool { return s == "nested" })
}
