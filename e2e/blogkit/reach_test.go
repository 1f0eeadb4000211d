//go:build e2e

package blogkit

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReachableFromContainer starts Pebble, mailpit and the fake Akismet
// on the bridge gateway and talks to each from a container on Docker's
// default bridge (the path a droplet's containers take, less the
// droplet's own NAT): the ACME port accepts, mailpit's SMTP banner
// arrives, Akismet answers verify-key.
func TestReachableFromContainer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", "debian:trixie-slim").Run(); err != nil {
		t.Skip("no debian:trixie-slim image")
	}
	gw, err := Gateway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := StartPebble(t, PebbleOptions{ListenIP: gw})
	m := StartMailpit(t, MailpitOptions{ListenIP: gw})
	a := StartAkismet(t, gw+":0")
	pebbleHostPort := strings.TrimSuffix(strings.TrimPrefix(p.DirectoryURL, "https://"), "/dir")
	ph, pp, _ := net.SplitHostPort(pebbleHostPort)
	mh, mp, _ := net.SplitHostPort(m.SMTPAddr)
	ah, ap, _ := net.SplitHostPort(strings.TrimPrefix(a.URL, "http://"))
	form := "api_key=" + AkismetTestKey + "&blog=x"
	script := `set -e
exec 3<>/dev/tcp/` + ph + `/` + pp + `; exec 3>&-; echo pebble-ok
exec 4<>/dev/tcp/` + mh + `/` + mp + `; head -c 3 <&4; echo; exec 4>&-
exec 5<>/dev/tcp/` + ah + `/` + ap + `
printf 'POST /1.1/verify-key HTTP/1.0\r\nHost: akismet\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ` + strconv.Itoa(len(form)) + `\r\n\r\n` + form + `' >&5
cat <&5 | tail -n 1; echo
`
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "debian:trixie-slim", "bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("from a container: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "pebble-ok") || !strings.Contains(s, "220") || !strings.HasSuffix(strings.TrimSpace(s), "\nvalid") {
		t.Errorf("from a container:\n%s", s)
	}
}
