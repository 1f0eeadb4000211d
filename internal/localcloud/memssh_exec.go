package localcloud

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// session serves one SSH session channel: env and pty requests are
// accepted, one exec (or shell) runs, then the channel closes with its
// exit status.
func (d *memSSHD) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "env", "pty-req", "window-change":
			req.Reply(true, nil)
		case "exec", "shell":
			var cmd struct{ Line string }
			if req.Type == "exec" && ssh.Unmarshal(req.Payload, &cmd) != nil {
				req.Reply(false, nil)
				return
			}
			req.Reply(true, nil)
			go ssh.DiscardRequests(reqs) // signals: commands here end on their own
			code := d.run(cmd.Line, ch, ch.Stderr())
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// run answers one command line as the droplet's shell would, for the
// commands fleet runs on a fresh droplet; it returns the exit status.
func (d *memSSHD) run(line string, stdout, stderr io.Writer) int {
	switch {
	case line == "true" || line == ":":
		return 0
	case strings.HasPrefix(line, "cloud-init status"):
		return d.cloudInitStatus(line, stdout)
	case strings.HasPrefix(line, "tail -n ") && strings.HasSuffix(line, "/var/log/cloud-init-output.log"):
		fmt.Fprintln(stdout, "(the memory backend runs no cloud-init: no output log)")
		return 0
	case strings.Contains(line, "ssh-keygen") && strings.Contains(line, "fleet-next"):
		return d.stageHostKey(stdout, stderr)
	case strings.Contains(line, "fleet-next") && strings.Contains(line, "mv -f"):
		return d.swapHostKey(stderr)
	case line == "":
		fmt.Fprintln(stderr, "memory droplet: no interactive shell")
		return 1
	}
	name, _, _ := strings.Cut(line, " ")
	fmt.Fprintf(stderr, "memory droplet: %s: command not found (the memory backend runs no programs)\n", name)
	return 127
}

// cloudInitStatus: `cloud-init status [--wait] [--format json]`. With
// --wait it returns once cloud-init is done (a hold=cloud-init fault
// delays that); vendor-fail makes it fail in scripts-vendor, as the
// metrics agent's install does on DigitalOcean, so only with monitoring.
func (d *memSSHD) cloudInitStatus(line string, stdout io.Writer) int {
	d.mu.Lock()
	done, stopping := d.done, d.stopping
	d.mu.Unlock()
	if wait := time.Until(done); wait > 0 && strings.Contains(line, "--wait") {
		select {
		case <-time.After(wait):
		case <-stopping:
			return 255
		}
	}
	status, code, errs := "done", 0, `[]`
	switch {
	case time.Now().Before(done):
		status = "running"
	case d.vendorFail && d.machine.Monitoring:
		// cloud-init 25.1's words for a failed vendor-data script.
		status, code, errs = "error", 1, `["('scripts-vendor', RuntimeError('Runparts: 1 failures (do-agent) in 1 attempted commands'))"]`
	}
	if strings.Contains(line, "--format json") {
		fmt.Fprintf(stdout, `{"status": %q, "extended_status": %q, "errors": %s}`+"\n", status, status, errs)
	} else {
		fmt.Fprintf(stdout, "status: %s\n", status)
	}
	return code
}

// stageHostKey makes the next host key and prints its public half.
func (d *memSSHD) stageHostKey(stdout, stderr io.Writer) int {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	var next ssh.Signer
	var pemText string
	if err == nil {
		next, err = ssh.NewSignerFromKey(priv)
	}
	if err == nil {
		pemText, err = marshalHostKey(priv)
	}
	if err != nil {
		fmt.Fprintln(stderr, "ssh-keygen:", err)
		return 1
	}
	d.mu.Lock()
	d.next, d.nextPEM = next, pemText
	d.mu.Unlock()
	stdout.Write(ssh.MarshalAuthorizedKey(next.PublicKey()))
	return 0
}

// swapHostKey puts the staged key in place: new connections see it.
func (d *memSSHD) swapHostKey(stderr io.Writer) int {
	d.mu.Lock()
	if d.next == nil {
		d.mu.Unlock()
		fmt.Fprintln(stderr, "no staged host key")
		return 1
	}
	d.host, d.hostPEM, d.next, d.nextPEM = d.next, d.nextPEM, nil, ""
	d.mu.Unlock()
	if d.onSwap != nil {
		d.onSwap()
	}
	return 0
}
