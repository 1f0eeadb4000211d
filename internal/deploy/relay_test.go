package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/remote"
	"github.com/fleetdeploy/fleet/internal/remote/remotetest"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// relayLineRE is the line the candidate's authorized_keys gets.
var relayLineRE = regexp.MustCompile(`^restrict,from="([0-9.]+)",expiry-time="(\d{14})Z",command="(/[^"]+/fleet-relay-([0-9a-f]{16})/load)" (ssh-ed25519 [A-Za-z0-9+/=]+) fleet-relay:([0-9a-f]{16})$`)

// runScript runs `sh -c script sh args...` with HOME=home, as a droplet's
// shell would.
func runScript(t *testing.T, home, script string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestRelayAuthorizeAndRevokeScripts(t *testing.T) {
	const other1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperator operator@laptop"
	const other2 = `from="10.0.0.9" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBackup backup`
	const stale = `restrict,command="/run/fleet-relay-0000000000000000/load" ssh-ed25519 AAAAstale fleet-relay:0000000000000000`
	const mention = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIUser a fleet-relay:tag in the middle"
	key, err := newRelayKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		before *string // nil: no authorized_keys
		mode   os.FileMode
		want   []string // the other lines, in order, after revoke
	}{
		{"others and a stale line", ptr(other1 + "\n" + stale + "\n" + other2 + "\n" + mention + "\n"), 0o600, []string{other1, other2, mention}},
		{"no trailing newline", ptr(other1 + "\n" + other2), 0o640, []string{other1, other2}},
		{"empty", ptr(""), 0o600, nil},
		{"none", nil, 0o600, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home, base := t.TempDir(), t.TempDir()
			ak := filepath.Join(home, ".ssh", "authorized_keys")
			if tc.before != nil {
				os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
				if err := os.WriteFile(ak, []byte(*tc.before), tc.mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(ak, tc.mode)
			}
			staleDir := filepath.Join(base, "fleet-relay-0000000000000000")
			os.Mkdir(staleDir, 0o700)
			otherDir := filepath.Join(base, "keep-me")
			os.Mkdir(otherDir, 0o700)

			if out, err := runScript(t, home, relayAuthorizeScript, base, key.token, "10.110.0.2", key.authorized, relayLoadScript(), "1800"); err != nil {
				t.Fatalf("authorize: %v\n%s", err, out)
			}
			b, _ := os.ReadFile(ak)
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			last := lines[len(lines)-1]
			m := relayLineRE.FindStringSubmatch(last)
			if m == nil {
				t.Fatalf("the last line is not the hop's:\n%s", b)
			}
			dir := filepath.Join(base, "fleet-relay-"+key.token)
			if m[1] != "10.110.0.2" || m[3] != dir+"/load" || m[4] != key.token || m[5] != key.authorized || m[6] != key.token {
				t.Errorf("line %q", last)
			}
			exp, err := time.Parse("20060102150405", m[2])
			if err != nil || time.Until(exp) < 29*time.Minute || time.Until(exp) > 31*time.Minute {
				t.Errorf("expiry-time %s is not in 30 minutes: %v", m[2], err)
			}
			if got := lines[:len(lines)-1]; !slices.Equal(nonEmpty(got), tc.want) {
				t.Errorf("other lines after authorize:\n%q\nwant\n%q", got, tc.want)
			}
			checkMode(t, ak, tc.mode)
			checkMode(t, dir, 0o700)
			checkMode(t, dir+"/load", 0o700)
			if l, _ := os.ReadFile(dir + "/load"); string(l) != relayLoadScript() {
				t.Errorf("load script %q", l)
			}
			if _, err := os.Stat(staleDir); err == nil {
				t.Error("a stale hop's dir survived authorize")
			}

			if out, err := runScript(t, home, relayRevokeScript, base); err != nil {
				t.Fatalf("revoke: %v\n%s", err, out)
			}
			b, _ = os.ReadFile(ak)
			if got := nonEmpty(strings.Split(string(b), "\n")); !slices.Equal(got, tc.want) {
				t.Errorf("after revoke:\n%q\nwant\n%q", got, tc.want)
			}
			checkMode(t, ak, tc.mode)
			if _, err := os.Stat(dir); err == nil {
				t.Error("the hop's dir survived revoke")
			}
			if _, err := os.Stat(otherDir); err != nil {
				t.Error("revoke removed a dir not its own")
			}
			if m, _ := filepath.Glob(filepath.Join(home, ".ssh", "*new*")); len(m) > 0 {
				t.Errorf("temp files left: %v", m)
			}
			// Revoking again (the re-run after a kill) is a no-op.
			if out, err := runScript(t, home, relayRevokeScript, base); err != nil {
				t.Fatalf("second revoke: %v\n%s", err, out)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func nonEmpty(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func checkMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
	}
}

// TestRelayPipeline runs both ends of the hop under bash, with docker and
// ssh stubbed: live's save goes through the stub ssh into the candidate's
// load wrapper; both report the same sum and count, and ssh's status is
// the pipeline's.
func TestRelayPipeline(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	payload := bytes.Repeat([]byte("layer bytes "), 100000)
	sum := sha256.Sum256(payload)
	for _, tc := range []struct {
		name    string
		sshCode int // the stub ssh exits with it before reading (0: runs the load)
		want    int
	}{
		{"through", 0, 0},
		{"ssh fails", 255, 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, tmp := t.TempDir(), t.TempDir()
			load := filepath.Join(tmp, "load")
			os.WriteFile(load, []byte(relayLoadScript()), 0o700)
			os.WriteFile(filepath.Join(tmp, "payload"), payload, 0o600)
			os.WriteFile(filepath.Join(bin, "docker"), []byte(`#!/bin/sh
case "$1" in
save) cat "`+tmp+`/payload" ;;
load) cat >"`+tmp+`/loaded"; echo "Loaded image ID: sha256:x" ;;
esac
`), 0o755)
			ssh := "#!/bin/sh\nprintf '%s\\n' \"$@\" >\"" + tmp + "/argv\"\n"
			if tc.sshCode != 0 {
				ssh += "echo 'Host key verification failed.' >&2; exit " + fmt.Sprint(tc.sshCode) + "\n"
			} else {
				ssh += "exec \"" + load + "\"\n"
			}
			os.WriteFile(filepath.Join(bin, "ssh"), []byte(ssh), 0o755)

			cmd := exec.Command("sh", "-c", relaySendScript([]string{"sha256:" + strings.Repeat("a", 64)}, relaySSHArgs("/run/fleet-relay-x", "root", "10.110.0.3", "ssh-ed25519")))
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + tmp}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var xe *exec.ExitError
			if errors.As(err, &xe) {
				code = xe.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.want {
				t.Fatalf("exit %d, want %d\n%s", code, tc.want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("the relay wrote %q to stdout, for fleet", stdout.String())
			}
			rc := &relayCatcher{}
			rc.Write(stderr.Bytes())
			s, n, ok := parseCounted(rc.out)
			if tc.sshCode != 0 {
				if !strings.Contains(stderr.String(), "Host key verification failed.") {
					t.Errorf("ssh's message lost: %q", stderr.String())
				}
				return
			}
			if !ok || s != hex.EncodeToString(sum[:]) || n != int64(len(payload)) {
				t.Errorf("sent %q, want %x %d", rc.out, sum, len(payload))
			}
			if rc.in != rc.out {
				t.Errorf("received %q, sent %q", rc.in, rc.out)
			}
			if got, _ := os.ReadFile(filepath.Join(tmp, "loaded")); !bytes.Equal(got, payload) {
				t.Errorf("docker load read %d bytes, want %d", len(got), len(payload))
			}
			if left, _ := filepath.Glob("/tmp/fleet-relay.*"); len(left) > 0 {
				t.Logf("note: /tmp/fleet-relay.* present (maybe another run): %v", left)
			}
		})
	}
}

// hopDroplet is a droplet of the relay tests: a remotetest server whose
// hop commands run for real under sh, with the droplet's paths under its
// SFTP root and HOME in a temp dir.
type hopDroplet struct {
	t    *testing.T
	srv  *remotetest.Server
	home string
	dr   cloud.Droplet

	mu      sync.Mutex
	layers  []string // layersCmd's answers, in turn (the last repeats)
	asked   int
	save    []byte // what `docker save` prints
	relay   func(ctx context.Context, x *remotetest.Exec) remotetest.Result
	onRelay func() // called when the relay arrives, before relay
	calls   []string
}

// mapped is a droplet path under the server's root.
func (h *hopDroplet) mapped(p string) string { return filepath.Join(h.srv.Root, p) }

func (h *hopDroplet) handle(ctx context.Context, x *remotetest.Exec) remotetest.Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	run := func(args []string) remotetest.Result {
		a := slices.Clone(args)
		for i := 4; i < len(a) && i < 6; i++ {
			if strings.HasPrefix(a[i], "/") {
				a[i] = h.mapped(a[i])
			}
		}
		out, err := runScript(h.t, h.home, a[2], a[4:]...)
		if err != nil {
			fmt.Fprintf(x.Stderr, "%s: %v\n", out, err)
			return remotetest.Result{Code: 1}
		}
		return remotetest.Result{}
	}
	switch {
	case x.Line == layersCmd:
		h.calls = append(h.calls, "layers")
		i := min(h.asked, len(h.layers)-1)
		h.asked++
		fmt.Fprint(x.Stdout, h.layers[i])
		return remotetest.Result{}
	case len(x.Calls) == 1 && len(x.Calls[0].Args) > 4 && x.Calls[0].Args[0] == "sh" && x.Calls[0].Args[1] == "-c":
		name := map[string]string{relayAuthorizeScript: "authorize", relayRevokeScript: "revoke", relayStageScript: "stage"}[x.Calls[0].Args[2]]
		if name == "" {
			break
		}
		h.calls = append(h.calls, name)
		return run(x.Calls[0].Args)
	case len(x.Calls) >= 1 && slices.Equal(x.Calls[0].Args[:min(2, len(x.Calls[0].Args))], []string{"rm", "-rf"}):
		h.calls = append(h.calls, "rm")
		os.RemoveAll(h.mapped(x.Calls[0].Args[2]))
		return remotetest.Result{}
	case len(x.Calls) == 1 && len(x.Calls[0].Args) == 3 && x.Calls[0].Args[0] == "bash" && strings.Contains(x.Calls[0].Args[2], "docker save"):
		h.calls = append(h.calls, "relay")
		if h.onRelay != nil {
			h.onRelay()
		}
		relay := h.relay
		h.mu.Unlock()
		defer h.mu.Lock()
		return relay(ctx, x)
	case len(x.Calls) == 1 && slices.Equal(x.Calls[0].Args[:min(2, len(x.Calls[0].Args))], []string{"docker", "save"}):
		h.calls = append(h.calls, "save")
		x.Stdout.Write(h.save)
		return remotetest.Result{}
	case strings.HasPrefix(x.Line, "docker image rm "):
		h.calls = append(h.calls, "image-rm")
		return remotetest.Result{}
	}
	h.calls = append(h.calls, "?"+x.Line)
	return remotetest.Result{Code: 127}
}

func (h *hopDroplet) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

// layersLine is layersCmd's line for an image.
func layersLine(id string, diffs []string) string {
	js, _ := json.Marshal(diffs)
	return id + " " + string(js) + "\n"
}

func TestRelayLayers(t *testing.T) {
	base := synthLayer(t, "base", "debian")
	deps := synthLayer(t, "deps", "python and flask")
	appOld := synthLayer(t, "app.py", "print('v1')")
	appNew := synthLayer(t, "app.py", "print('v2')")
	otherDeps := synthLayer(t, "deps", "other deps")
	liveImg := newSynthImage(t, "hello-web:latest", base, deps, appOld)
	strangerImg := newSynthImage(t, "stranger:latest", base, otherDeps, deps) // deps on another parent
	build := &localImage{Ref: "hello-web:latest", ID: digest([]byte("build")), DiffIDs: newSynthImage(t, "x", base, deps, appNew).diffIDs()}
	liveID, strangerID := digest(liveImg.config), digest(strangerImg.config)
	candID := digest([]byte("cand-base"))
	candBefore := layersLine(candID, []string{digest(base)})
	candAfter := candBefore + layersLine(liveID, liveImg.diffIDs())
	okRelay := func(n int) func(context.Context, *remotetest.Exec) remotetest.Result {
		return func(_ context.Context, x *remotetest.Exec) remotetest.Result {
			s := strings.Repeat("ab", 32)
			fmt.Fprintf(x.Stderr, "Loaded image ID: %s\n%s%s %d\n%s%s %d\n", liveID, relayInMarker, s, n, relayOutMarker, s, n)
			return remotetest.Result{}
		}
	}

	for _, tc := range []struct {
		name        string
		liveVPC     string
		livePriv    string
		relay       func(context.Context, *remotetest.Exec) remotetest.Result
		candAnswers []string
		cancel      bool // Ctrl-C once the relay runs
		wantPath    string
		wantBytes   int64
		wantSpooled int
		wantWarn    string
		wantErr     bool
		wantLive    []string
		wantCand    []string
	}{
		{name: "vpc", liveVPC: "vpc-1", livePriv: "10.110.0.2", relay: okRelay(4096), candAnswers: []string{candAfter},
			wantPath: RelayVPC, wantBytes: 4096,
			wantLive: []string{"layers", "stage", "relay", "rm"}, wantCand: []string{"authorize", "revoke", "layers"}},
		{name: "hop fails with 255", liveVPC: "vpc-1", livePriv: "10.110.0.2", candAnswers: []string{candBefore},
			relay: func(_ context.Context, x *remotetest.Exec) remotetest.Result {
				fmt.Fprintf(x.Stderr, "Host key verification failed.\n%s%s 0\n", relayOutMarker, strings.Repeat("e3", 32))
				return remotetest.Result{Code: 255}
			},
			wantPath: RelayFleet, wantSpooled: 1, wantWarn: "host key",
			wantLive: []string{"layers", "stage", "relay", "rm", "save"}, wantCand: []string{"authorize", "revoke", "layers"}},
		{name: "sums differ", liveVPC: "vpc-1", livePriv: "10.110.0.2", candAnswers: []string{candBefore},
			relay: func(_ context.Context, x *remotetest.Exec) remotetest.Result {
				fmt.Fprintf(x.Stderr, "%s%s 10\n%s%s 10\n", relayInMarker, strings.Repeat("ab", 32), relayOutMarker, strings.Repeat("cd", 32))
				return remotetest.Result{}
			},
			wantPath: RelayFleet, wantSpooled: 1, wantWarn: "checksum mismatch",
			wantLive: []string{"layers", "stage", "relay", "rm", "save"}, wantCand: []string{"authorize", "revoke", "layers"}},
		{name: "different VPC", liveVPC: "vpc-2", livePriv: "10.110.0.2", candAnswers: []string{candBefore},
			wantPath: RelayFleet, wantSpooled: 1, wantWarn: "different VPCs",
			wantLive: []string{"layers", "save"}, wantCand: nil},
		{name: "no private IP", liveVPC: "vpc-1", livePriv: "", candAnswers: []string{candBefore},
			wantPath: RelayFleet, wantSpooled: 1, wantWarn: "no private IPv4",
			wantLive: []string{"layers", "save"}, wantCand: nil},
		{name: "ctrl-c during the relay", liveVPC: "vpc-1", livePriv: "10.110.0.2", candAnswers: []string{candBefore}, cancel: true,
			relay:    remotetest.Reply{Hang: true}.Handle,
			wantErr:  true,
			wantLive: []string{"layers", "stage", "relay", "rm"}, wantCand: []string{"authorize", "revoke"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := remote.KnownHosts{Dir: t.TempDir()}
			dialer := &remote.Dialer{KnownHosts: kh}
			mk := func(id int, name, pub, priv, vpc string) *hopDroplet {
				h := &hopDroplet{t: t, home: t.TempDir()}
				h.srv = remotetest.NewServer(t, remotetest.Options{Exec: h.handle})
				os.Mkdir(h.mapped("/run"), 0o755) // a tmpfs on droplets
				h.dr = cloud.Droplet{ID: id, Name: name, PublicIPv4: h.srv.Addr, PrivateIPv4: priv, VPCUUID: vpc, Region: "fra1"}
				if err := kh.Pin(name, h.srv.Addr, h.srv.HostKey); err != nil {
					t.Fatal(err)
				}
				dialer.KeyFiles = append(dialer.KeyFiles, h.srv.ClientKeyFile)
				return h
			}
			live := mk(1, "hello-v1-0-0-aaa", "", tc.livePriv, tc.liveVPC)
			cand := mk(2, "hello-v1-1-0-bbb", "", "10.110.0.3", "vpc-1")
			// The stranger comes first: it holds deps' diffID, but on another parent.
			live.layers = []string{layersLine(strangerID, strangerImg.diffIDs()) + layersLine(liveID, liveImg.diffIDs())}
			live.save = synthSave(t, true, liveImg)
			live.relay = tc.relay
			cand.layers = tc.candAnswers

			// The key and known_hosts as live held them when the relay ran.
			var keyMode os.FileMode
			var keyPEM, knownHosts, akAtRelay []byte
			var relayArgv, saveArgv []string
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			live.onRelay = func() {
				dirs, _ := filepath.Glob(live.mapped("/run/fleet-relay-*"))
				if len(dirs) != 1 {
					t.Errorf("live's hop dirs: %v", dirs)
					return
				}
				checkMode(t, dirs[0], 0o700)
				if fi, err := os.Stat(filepath.Join(dirs[0], "key")); err == nil {
					keyMode = fi.Mode().Perm()
				}
				keyPEM, _ = os.ReadFile(filepath.Join(dirs[0], "key"))
				knownHosts, _ = os.ReadFile(filepath.Join(dirs[0], "known_hosts"))
				akAtRelay, _ = os.ReadFile(filepath.Join(cand.home, ".ssh", "authorized_keys"))
				if tc.cancel {
					cancel()
				}
			}
			wrapRelay := live.relay
			if wrapRelay != nil {
				live.relay = func(ctx context.Context, x *remotetest.Exec) remotetest.Result {
					inner, err := remotetest.Parse(x.Calls[0].Args[2])
					if err != nil {
						t.Errorf("the relay script does not parse: %v", err)
					}
					for _, c := range inner {
						if len(c.Args) > 0 && c.Args[0] == "ssh" {
							relayArgv = c.Args
						}
						if len(c.Args) > 1 && c.Args[0] == "docker" && c.Args[1] == "save" {
							saveArgv = c.Args
						}
					}
					return wrapRelay(ctx, x)
				}
			}

			var warn bytes.Buffer
			d := &Deployer{
				Spec:     &spec.Spec{Project: "hello", Stack: &spec.Stack{Build: "local"}},
				Remote:   &Remote{Dialer: dialer, Log: &bytes.Buffer{}},
				Warnings: &warn,
			}
			c, err := d.Remote.Dial(context.Background(), &cand.dr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			have, _ := parseLayers([]byte(candBefore))
			var logBuf bytes.Buffer
			out := outputs{remote.NewRedactor(&logBuf, nil), remote.NewRedactor(&logBuf, nil)}
			rr, err := d.relayLayers(ctx, c, &cand.dr, &Member{Droplet: live.dr}, []*localImage{build}, have, t.TempDir(), out)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, context.Canceled) {
				t.Errorf("err %v, want context.Canceled", err)
			}
			if rr.Path != tc.wantPath || rr.DropletBytes != tc.wantBytes || len(rr.Spooled) != tc.wantSpooled {
				t.Errorf("path %q, droplet bytes %d, spooled %d; want %q, %d, %d", rr.Path, rr.DropletBytes, len(rr.Spooled), tc.wantPath, tc.wantBytes, tc.wantSpooled)
			}
			// What fleet exchanged with live: the save's archive on the fleet
			// path, only control traffic on the hop.
			if rr.Path == RelayFleet && rr.LinkBytes < int64(len(live.save)) || rr.Path == RelayVPC && (rr.LinkBytes <= 0 || rr.LinkBytes >= 64<<10) {
				t.Errorf("link bytes with live %d (archive %d bytes, path %q)", rr.LinkBytes, len(live.save), rr.Path)
			}
			if _, ok := rr.Spooled[digest(deps)]; tc.wantSpooled > 0 && !ok {
				t.Errorf("spooled %v, want the deps layer", rr.Spooled)
			}
			if tc.wantWarn == "" && warn.Len() > 0 || !strings.Contains(warn.String(), tc.wantWarn) {
				t.Errorf("warnings %q, want %q", warn.String(), tc.wantWarn)
			}
			if got := live.log(); !slices.Equal(got, tc.wantLive) {
				t.Errorf("live ran %q, want %q", got, tc.wantLive)
			}
			if got := cand.log(); !slices.Equal(got, tc.wantCand) {
				t.Errorf("candidate ran %q, want %q", got, tc.wantCand)
			}
			// Revoked on both, whatever happened.
			if dirs, _ := filepath.Glob(live.mapped("/run/fleet-relay-*")); len(dirs) > 0 {
				t.Errorf("live keeps %v", dirs)
			}
			if dirs, _ := filepath.Glob(cand.mapped("/run/fleet-relay-*")); len(dirs) > 0 {
				t.Errorf("the candidate keeps %v", dirs)
			}
			if ak, _ := os.ReadFile(filepath.Join(cand.home, ".ssh", "authorized_keys")); strings.Contains(string(ak), "fleet-relay") {
				t.Errorf("the candidate's authorized_keys keeps the hop: %q", ak)
			}
			if tc.wantCand == nil {
				return // no hop
			}

			m := relayLineRE.FindStringSubmatch(strings.TrimSpace(string(akAtRelay)))
			if m == nil {
				t.Fatalf("authorized_keys during the relay: %q", akAtRelay)
			}
			if want := []string{"docker", "save", liveID}; !slices.Equal(saveArgv, want) {
				t.Errorf("live saves %q, want %q (by chain: not the stranger)", saveArgv, want)
			}
			if m[1] != tc.livePriv || !strings.HasSuffix(m[3], "/run/fleet-relay-"+m[4]+"/load") {
				t.Errorf("line %q: want from=%q and the load wrapper", m[0], tc.livePriv)
			}
			if keyMode != 0o600 {
				t.Errorf("key mode %o, want 600", keyMode)
			}
			signer, err := ssh.ParsePrivateKey(keyPEM)
			if err != nil {
				t.Fatalf("live's key: %v", err)
			}
			if got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))); got != m[5] {
				t.Errorf("live's key is %s, the candidate authorizes %s", got, m[5])
			}
			if want := "10.110.0.3 " + string(ssh.MarshalAuthorizedKey(cand.srv.HostKey)); string(knownHosts) != want {
				t.Errorf("known_hosts %q, want exactly %q", knownHosts, want)
			}
			if relayArgv == nil {
				t.Fatal("no ssh in the relay")
			}
			argv := strings.Join(relayArgv, " ")
			for _, want := range []string{"-o StrictHostKeyChecking=yes", "-o UserKnownHostsFile=/run/fleet-relay-" + m[4] + "/known_hosts",
				"-i /run/fleet-relay-" + m[4] + "/key", "-o IdentitiesOnly=yes", "-o BatchMode=yes", "-F /dev/null", "-o HostKeyAlgorithms=ssh-ed25519"} {
				if !strings.Contains(argv, want) {
					t.Errorf("ssh argv %q lacks %q", argv, want)
				}
			}
			for _, bad := range []string{"accept-new", "StrictHostKeyChecking=no", "StrictHostKeyChecking=off"} {
				if strings.Contains(argv, bad) {
					t.Errorf("ssh argv %q has %q", argv, bad)
				}
			}
			if relayArgv[len(relayArgv)-1] != "root@10.110.0.3" {
				t.Errorf("ssh target %q", relayArgv[len(relayArgv)-1])
			}
		})
	}
}
