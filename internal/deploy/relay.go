package deploy

// Layers the live droplet holds go to the candidate droplet to droplet
// over their private network: on live, `docker save IDS | ssh cand`, with
// a one-shot key the candidate accepts only from live's private IP, until
// an expiry, and only to run its `docker load` wrapper. The candidate's
// host key is pinned from the key fleet verified itself (c.HostKey()),
// never learnt on first use. Only control traffic crosses the operator's
// link. Where the droplets share no private network or the hop fails,
// the layers are relayed through fleet as before.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
)

// relayBase is where each droplet keeps the hop's files: a tmpfs, so a
// key left by a killed run dies with the next reboot at the latest (a
// variable for tests).
var relayBase = "/run"

// relayExpiry bounds how long the candidate accepts the one-shot key,
// should fleet die before revoking it.
const relayExpiry = 30 * time.Minute

// revokeTimeout bounds the revoke, which runs on a detached context so
// that it also runs after Ctrl-C.
const revokeTimeout = 10 * time.Second

// The markers the two ends of the hop print on stderr: sha256 and byte
// count of what live sent and what the candidate received.
const (
	relayOutMarker = "fleet-relay-out "
	relayInMarker  = "fleet-relay-in "
)

// Relay paths as ShipStats.Relay reports them.
const (
	RelayVPC   = "vpc"
	RelayFleet = "fleet"
)

// relayAuthorizeScript (POSIX sh, on the candidate) sweeps every earlier
// hop (lines and dirs), writes the load wrapper into a 0700 dir and
// appends the restricted line, whose expiry comes from the candidate's own
// clock. authorized_keys is rewritten through a copy that keeps its mode
// and owner, then renamed: sshd never reads half a file.
// Args: base token from-ip public-key load-script expiry-seconds.
const relayAuthorizeScript = `set -eu
umask 077
base=$1 tok=$2 from=$3 key=$4 load=$5
rm -rf "$base"/fleet-relay-*
d="$base/fleet-relay-$tok"
mkdir -m 0700 "$d"
printf '%s' "$load" >"$d/load"
chmod 0700 "$d/load"
exp=$(date -u -d "@$(( $(date +%s) + $6 ))" +%Y%m%d%H%M%S)
[ -d "$HOME/.ssh" ] || mkdir -m 0700 "$HOME/.ssh"
ak="$HOME/.ssh/authorized_keys"
[ -e "$ak" ] || : >"$ak"
t="$ak.fleet-relay-new"
cp -p "$ak" "$t"
{ grep -v -E ' fleet-relay:[0-9a-f]+$' "$ak" || [ $? -eq 1 ]; } >"$t"
printf 'restrict,from="%s",expiry-time="%sZ",command="%s" %s fleet-relay:%s\n' "$from" "$exp" "$d/load" "$key" "$tok" >>"$t"
mv -f "$t" "$ak"
`

// relayRevokeScript (POSIX sh) removes every hop's line and dir; the
// rest of authorized_keys, its order and mode are kept. Args: base.
const relayRevokeScript = `set -eu
rm -rf "$1"/fleet-relay-*
ak="$HOME/.ssh/authorized_keys"
[ -e "$ak" ] || exit 0
grep -q -E ' fleet-relay:[0-9a-f]+$' "$ak" || exit 0
t="$ak.fleet-relay-new"
cp -p "$ak" "$t"
{ grep -v -E ' fleet-relay:[0-9a-f]+$' "$ak" || [ $? -eq 1 ]; } >"$t"
mv -f "$t" "$ak"
`

// relayStageScript (on live) sweeps earlier hops' dirs and makes this
// one's, root-only. Args: base dir.
const relayStageScript = `set -eu
rm -rf "$1"/fleet-relay-*
mkdir -m 0700 "$2"
`

// countedPipe is a bash fragment: fifos "$f" and "$f.n" whose readers
// hash and count what the pipeline tees into them.
const countedPipe = `f=$(mktemp -u /tmp/fleet-relay.XXXXXX) && mkfifo -m 0600 "$f" "$f.n" || exit 1
sha256sum <"$f" >"$f.sum" & p=$!
wc -c <"$f.n" >"$f.len" & q=$!
`

// countedEnd reports the sum and count after marker and exits with the
// pipeline's status.
func countedEnd(marker string) string {
	return `; rc=$?
wait $p $q; read -r s _ <"$f.sum"; read -r n <"$f.len"; rm -f "$f" "$f.n" "$f.sum" "$f.len"
echo "` + marker + `$s $n" >&2
exit $rc`
}

// relayLoadScript is the candidate's forced command: docker load of
// stdin, every byte of which is hashed and counted (tee -p goes on
// reading after docker load stops). docker load's output goes to stderr,
// which ssh carries back to live and on to fleet.
func relayLoadScript() string {
	return "#!/bin/bash\n" + countedPipe + `tee -p "$f" "$f.n" | docker load >&2` + countedEnd(relayInMarker) + "\n"
}

// relaySendScript is live's end: docker save of ids into ssh, hashed and
// counted. pipefail: ssh's 255 (connect, auth, host key) is the status.
func relaySendScript(ids, sshArgv []string) string {
	return "bash -c " + remote.ShellQuote("set -o pipefail\n"+countedPipe+
		sh(append([]string{"docker", "save"}, ids...)...)+` | tee "$f" "$f.n" | `+sh(sshArgv...)+" >&2"+countedEnd(relayOutMarker))
}

// relaySSHArgs is the ssh invocation on live: no config, agent or
// forwarding, only the one-shot key, and the candidate's host key pinned
// with strict checking.
func relaySSHArgs(dir, user, host, hostKeyType string) []string {
	return []string{"ssh", "-F", "/dev/null", "-T",
		"-i", path.Join(dir, "key"),
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "UserKnownHostsFile=" + path.Join(dir, "known_hosts"),
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "HostKeyAlgorithms=" + hostKeyType,
		"-o", "UpdateHostKeys=no",
		"-o", "BatchMode=yes",
		"-o", "ForwardAgent=no",
		"-o", "ClearAllForwardings=yes",
		"-o", "ConnectTimeout=10",
		"-o", "ServerAliveInterval=15",
		"-o", "ServerAliveCountMax=4",
		user + "@" + host,
	}
}

// relayKey is a one-shot ed25519 key, made in memory.
type relayKey struct {
	token      string // hex, names the dirs and the authorized_keys line
	private    []byte // OpenSSH PEM
	authorized string // "ssh-ed25519 AAAA…"
}

func newRelayKey() (*relayKey, error) {
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &relayKey{
		token:      hex.EncodeToString(tok[:]),
		private:    pem.EncodeToMemory(block),
		authorized: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))),
	}, nil
}

// relayCatcher passes stderr on, except the two ends' marker lines,
// which it keeps.
type relayCatcher struct {
	w       io.Writer
	mu      sync.Mutex
	buf     []byte
	out, in string
}

func (r *relayCatcher) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		line := string(r.buf[:i+1])
		r.buf = r.buf[i+1:]
		if v, ok := strings.CutPrefix(line, relayOutMarker); ok {
			r.out = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(line, relayInMarker); ok {
			r.in = strings.TrimSpace(v)
		} else if r.w != nil {
			r.w.Write([]byte(line))
		}
	}
	if len(r.buf) > 64<<10 { // a line that never ends is passed on, not kept
		if r.w != nil {
			r.w.Write(r.buf)
		}
		r.buf = nil
	}
	return len(p), nil
}

// parseCounted reads "<sha256> <bytes>".
func parseCounted(v string) (sum string, n int64, ok bool) {
	s, c, found := strings.Cut(v, " ")
	if !found || len(s) != 64 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(c, 10, 64)
	return s, n, err == nil && n >= 0
}

// hopError is a droplet-to-droplet hop that failed; Connect is ssh's own
// failure (exit 255: reach, auth or host key), not the load's.
type hopError struct {
	Connect bool
	Err     error
}

func (e *hopError) Error() string { return e.Err.Error() }
func (e *hopError) Unwrap() error { return e.Err }

// privateIP is the droplet's private IPv4 when it is one.
func privateIP(dr *cloud.Droplet) (string, bool) {
	a, err := netip.ParseAddr(dr.PrivateIPv4)
	if err != nil || !a.Is4() || !a.IsPrivate() {
		return "", false
	}
	return a.String(), true
}

// vpcReason is why the hop cannot be tried, or "".
func vpcReason(live, cand *cloud.Droplet) string {
	_, lok := privateIP(live)
	_, cok := privateIP(cand)
	switch {
	case !lok || !cok:
		return "a droplet has no private IPv4"
	case live.VPCUUID == "" || live.VPCUUID != cand.VPCUUID:
		return fmt.Sprintf("the droplets are in different VPCs (%q, %q)", live.VPCUUID, cand.VPCUUID)
	}
	return ""
}

// relayOverVPC loads the live images ids into the candidate droplet to
// droplet and returns the bytes that crossed. The grant is revoked on
// both droplets before it returns, also after ctx ends.
func (d *Deployer) relayOverVPC(ctx context.Context, c *remote.Client, cand *cloud.Droplet, lc *remote.Client, live *cloud.Droplet, ids []string, out outputs) (int64, error) {
	livePriv, _ := privateIP(live)
	candPriv, _ := privateIP(cand)
	key, err := newRelayKey()
	if err != nil {
		return 0, err
	}
	hk := c.HostKey()
	if hk == nil {
		return 0, errors.New("the candidate's verified host key is unknown")
	}
	dir := path.Join(relayBase, "fleet-relay-"+key.token)
	defer d.revokeHop(ctx, c, cand.Name, lc, live.Name, dir, out)

	if err := c.Run(ctx, sh("sh", "-c", relayAuthorizeScript, "sh", relayBase, key.token, livePriv, key.authorized, relayLoadScript(), strconv.Itoa(int(relayExpiry.Seconds()))), nil, out.stdout, out.stderr); err != nil {
		return 0, fmt.Errorf("authorizing the hop on %s: %w", cand.Name, err)
	}
	if err := lc.Run(ctx, sh("sh", "-c", relayStageScript, "sh", relayBase, dir), nil, out.stdout, out.stderr); err != nil {
		return 0, fmt.Errorf("staging the hop on %s: %w", live.Name, err)
	}
	if err := lc.WriteFile(ctx, path.Join(dir, "key"), 0o600, bytes.NewReader(key.private)); err != nil {
		return 0, fmt.Errorf("staging the hop on %s: %w", live.Name, err)
	}
	kh := knownhosts.Line([]string{knownhosts.Normalize(candPriv)}, hk) + "\n"
	if err := lc.WriteFile(ctx, path.Join(dir, "known_hosts"), 0o600, strings.NewReader(kh)); err != nil {
		return 0, fmt.Errorf("staging the hop on %s: %w", live.Name, err)
	}

	user := d.Remote.Dialer.User
	if user == "" {
		user = "root"
	}
	algo := hk.Type()
	if algo == ssh.KeyAlgoRSA { // OpenSSH ≥ 8.8 refuses SHA-1 signatures
		algo = ssh.KeyAlgoRSASHA512 + "," + ssh.KeyAlgoRSASHA256
	}
	rc := &relayCatcher{w: out.stderr}
	err = lc.Run(ctx, relaySendScript(ids, relaySSHArgs(dir, user, candPriv, algo)), nil, out.stdout, rc)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		var xe *remote.ExitError
		if errors.As(err, &xe) && xe.Code == 255 {
			return 0, &hopError{Connect: true, Err: err}
		}
		return 0, &hopError{Err: err}
	}
	sent, sn, ok1 := parseCounted(rc.out)
	got, gn, ok2 := parseCounted(rc.in)
	switch {
	case !ok1 || !ok2:
		return 0, &hopError{Err: fmt.Errorf("the hop's ends reported no checksum (sent %q, received %q)", rc.out, rc.in)}
	case sent != got || sn != gn:
		return 0, &hopError{Err: &ChecksumError{What: fmt.Sprintf("the layers relayed from %s (%d bytes sent, %d received)", live.Name, sn, gn), Want: sent, Have: got}}
	}
	return sn, nil
}

// revokeHop removes the grant: the candidate's line and dir first, then
// live's key. A failure is a warning: the line expires on its own and
// live's tmpfs dir is swept by the next hop.
func (d *Deployer) revokeHop(ctx context.Context, c *remote.Client, candName string, lc *remote.Client, liveName, dir string, out outputs) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if err := c.Run(rctx, sh("sh", "-c", relayRevokeScript, "sh", relayBase), nil, out.stdout, out.stderr); err != nil {
		d.warn("revoking the relay key on %s: %v (it expires within %s)", candName, err, relayExpiry)
	}
	if err := lc.Run(rctx, sh("rm", "-rf", dir), nil, out.stdout, out.stderr); err != nil {
		d.warn("removing the relay key from %s:%s: %v", liveName, dir, err)
	}
}

// traffic is the bytes a connection has carried both ways.
func traffic(c *remote.Client) int64 {
	s, r := c.Traffic()
	return s + r
}

// pickByChain lists the live images whose layers give the candidate the
// chains it lacks: a layer is only of use on top of the same layers, so
// what counts is the chain, not the diffID. It returns the image IDs (the
// fewest, greedily) and the diffIDs of the layers they bring.
func pickByChain(images []*localImage, cand, live *engineLayers) (ids []string, diffs map[string]bool) {
	want := map[string]string{} // chain → diffID
	for _, im := range images {
		for i, ch := range chainIDs(im.DiffIDs) {
			if !cand.Chains[ch] && live.Chains[ch] {
				want[ch] = im.DiffIDs[i]
			}
		}
	}
	diffs = map[string]bool{}
	covered := map[string]bool{}
	for _, im := range live.Images {
		// IDs come from the live droplet and go into a shell command there:
		// take only what an image ID looks like.
		if !imageIDRE.MatchString(im.ID) {
			continue
		}
		adds := false
		for _, ch := range chainIDs(im.DiffIDs) {
			if d, ok := want[ch]; ok && !covered[ch] {
				covered[ch], adds = true, true
				diffs[d] = true
			}
		}
		if adds {
			ids = append(ids, im.ID)
		}
	}
	return ids, diffs
}

// relayResult is what the live droplet gave the candidate.
type relayResult struct {
	Path         string            // RelayVPC, RelayFleet or ""
	DropletBytes int64             // bytes that went droplet to droplet
	LinkBytes    int64             // fleet ↔ live SSH traffic
	Spooled      map[string]string // diffID → file: layers relayed through fleet
	Cand         *engineLayers     // the candidate's layers after the hop
	IDs          []string          // live image IDs the candidate got
}

// relayLayers gives the candidate what the live droplet holds of the
// layers it lacks: droplet to droplet when they share a VPC, else (or when
// the hop fails) through fleet. Afterwards the candidate is asked again,
// so what the build must ship is right whatever the hop did. Only ctx's
// end and the re-asking are errors; the rest falls back.
func (d *Deployer) relayLayers(ctx context.Context, c *remote.Client, cand *cloud.Droplet, live *Member, images []*localImage, have *engineLayers, dir string, out outputs) (rr relayResult, err error) {
	rr.Cand = have
	if live == nil || live.ID == cand.ID || live.PublicIPv4 == "" || len(have.missing(images)) == 0 {
		return rr, nil
	}
	d.step("asking the live droplet %s which layers it has", live.Name)
	lc, err := d.Remote.Dial(ctx, &live.Droplet, 10*time.Second)
	if err != nil {
		if ctx.Err() != nil {
			return rr, ctx.Err()
		}
		d.warn("connecting to the live droplet %s: %v; shipping every layer from the build", live.Name, err)
		return rr, nil
	}
	defer func() { rr.LinkBytes = traffic(lc); lc.Close() }()
	o, err := lc.Output(ctx, layersCmd)
	if err != nil {
		if ctx.Err() != nil {
			return rr, ctx.Err()
		}
		d.warn("listing the layers of %s: %v; shipping every layer from the build", live.Name, err)
		return rr, nil
	}
	le, err := parseLayers(o)
	if err != nil {
		d.warn("%v; shipping every layer from the build", err)
		return rr, nil
	}
	ids, diffs := pickByChain(images, have, le)
	if len(ids) == 0 {
		return rr, nil
	}
	if why := vpcReason(&live.Droplet, cand); why != "" {
		d.warn("%s: relaying %d layers from %s through this machine", why, len(diffs), live.Name)
	} else {
		d.step("relaying %d layers from the live droplet %s droplet to droplet", len(diffs), live.Name)
		n, herr := d.relayOverVPC(ctx, c, cand, lc, &live.Droplet, ids, out)
		if ctx.Err() != nil {
			return rr, ctx.Err()
		}
		if herr == nil {
			rr.Path, rr.DropletBytes = RelayVPC, n
		} else {
			var he *hopError
			if errors.As(herr, &he) && he.Connect {
				d.warn("the hop from %s to %s over the private network failed: %v; if the message is about a host key, something may be impersonating %s; "+
					"a firewall must allow TCP 22 between the droplets' private IPs; relaying through this machine", live.Name, cand.Name, herr, cand.Name)
			} else {
				d.warn("relaying from %s to %s droplet to droplet: %v; relaying through this machine", live.Name, cand.Name, herr)
			}
		}
		rr.IDs = ids
		// Whatever the hop did, the candidate says what it still lacks.
		h, err := c.Output(ctx, layersCmd)
		if err != nil {
			return rr, fmt.Errorf("listing the candidate's image layers: %w", err)
		}
		if rr.Cand, err = parseLayers(h); err != nil {
			return rr, err
		}
		if ids, diffs = pickByChain(images, rr.Cand, le); len(ids) == 0 {
			return rr, nil
		}
	}
	rr.Spooled = d.saveFromLive(ctx, lc, live.Name, ids, diffs, dir, out)
	if len(rr.Spooled) > 0 && rr.Path == "" {
		rr.Path = RelayFleet
	}
	if ctx.Err() != nil {
		return rr, ctx.Err()
	}
	return rr, nil
}

// saveFromLive fetches the layers diffs of the live images ids through
// fleet, spooled into dir (diffID → file). Any failure only means the
// build ships them instead.
func (d *Deployer) saveFromLive(ctx context.Context, lc *remote.Client, liveName string, ids []string, want map[string]bool, dir string, out outputs) map[string]string {
	d.step("relaying %d layers from the live droplet %s through this machine", len(want), liveName)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := lc.Run(ctx, sh(append([]string{"docker", "save"}, ids...)...), nil, pw, out.stderr)
		pw.CloseWithError(err)
		done <- err
	}()
	sc, rerr := readSave(bufio.NewReaderSize(pr, 1<<20), dir, want)
	io.Copy(io.Discard, pr)
	if err := errors.Join(<-done, rerr); err != nil {
		d.warn("docker save on %s: %v; shipping those layers from the build", liveName, err)
		if sc != nil {
			for _, f := range sc.Layers {
				os.Remove(f)
			}
		}
		return map[string]string{}
	}
	return sc.Layers
}
