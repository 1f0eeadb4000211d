package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/oauth2"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"fleet": func() { os.Exit(Main()) },
	})
}

// TestScripts runs the CLI end to end (testdata/script/*.txtar) against an
// in-process API server whose every exchange is checked against
// DigitalOcean's OpenAPI description.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// Every script starts in a valid project, unless its archive
			// brings its own files.
			if err := copyMissing("testdata/project", env.WorkDir); err != nil {
				return err
			}
			// The deploy key's private half, made per script (never in git):
			// fleet up logs in to every droplet it makes.
			if err := deployKey(filepath.Join(env.WorkDir, "keys")); err != nil {
				return err
			}
			env.Setenv("HOME", env.WorkDir)
			// Short waits keep the suite fast; the product default is 1s.
			env.Setenv("FLEET_POLL_INTERVAL", "50ms")
			env.Setenv("FLEET_RETRY_WAIT_MIN", "100ms")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"localapi": cmdLocalAPI,
		},
	})
}

var apis sync.Map // *testscript.TestScript → *scriptAPI

type scriptAPI struct {
	srv   *localcloud.Server
	http  *httptest.Server
	check *contract.Validator
	token string
	mark  int // requests before the last `localapi mark`
}

// cmdLocalAPI drives the in-process API server:
//
//	localapi start [-boot-delay D] [-action-delay D] [-rate-limit N] [-rate-window D]
//	               [-burst-limit N] [-burst-window D] [-faults SPEC]
//	localapi fault SPEC        add faults
//	localapi clear-faults      remove them all
//	localapi reserve REGION    reserve an IP in REGION (printed on stdout)
//	localapi droplets N        the server holds exactly N droplets (any project)
//	localapi reserved-ips N    the server holds exactly N reserved IPs
//	localapi answered STATUS N[+] METHOD|* PATH
//	                           exactly (or at least) N requests to PATH (a prefix) got STATUS
//	localapi contract          no contract violations so far (also checked at the end)
//	localapi mark              start counting requests for `mutations` here
//	localapi mutations N       exactly N requests other than GET since the mark
//	localapi keys PREFIX N     exactly N account SSH keys are named PREFIX...
//	localapi waitkey PREFIX    wait (up to 20 s) until a key named PREFIX... exists
//	localapi waitreq METHOD PATH
//	                           wait (up to 20 s) until a request to PATH (a prefix) was answered
//	localapi snapshot NAME REGION
//	                           a droplet snapshot named NAME (current: the bake
//	                           of $WORK's template on debian-13-x64) in REGION
//	localapi delkeys PREFIX    delete the keys named PREFIX...
func cmdLocalAPI(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("localapi does not support !")
	}
	if len(args) == 0 {
		ts.Fatalf("usage: localapi start|fault|droplets|contract")
	}
	if args[0] == "start" {
		startAPI(ts, args[1:])
		return
	}
	v, ok := apis.Load(ts)
	if !ok {
		ts.Fatalf("localapi start first")
	}
	api := v.(*scriptAPI)
	switch args[0] {
	case "fault":
		faults, err := localcloud.ParseFaults(strings.Join(args[1:], " "))
		ts.Check(err)
		for _, f := range faults {
			api.srv.AddFault(f)
		}
	case "droplets":
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		if got := api.count(ts, "droplets"); got != want {
			ts.Fatalf("server holds %d droplets, want %d", got, want)
		}
	case "clear-faults":
		api.srv.ClearFaults()
	case "reserve":
		if len(args) != 2 {
			ts.Fatalf("usage: localapi reserve REGION")
		}
		req, _ := http.NewRequest("POST", api.http.URL+"/v2/reserved_ips", strings.NewReader(`{"region":"`+args[1]+`"}`))
		req.Header.Set("Authorization", "Bearer "+api.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		ts.Check(err)
		var body struct {
			ReservedIP struct {
				IP string `json:"ip"`
			} `json:"reserved_ip"`
		}
		ts.Check(json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			ts.Fatalf("POST /v2/reserved_ips: %s", resp.Status)
		}
		fmt.Fprintln(ts.Stdout(), body.ReservedIP.IP)
	case "reserved-ips":
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		if got := api.count(ts, "reserved_ips"); got != want {
			ts.Fatalf("server holds %d reserved IPs, want %d", got, want)
		}
	case "answered":
		if len(args) != 5 {
			ts.Fatalf("usage: localapi answered STATUS N METHOD PATH")
		}
		status, err := strconv.Atoi(args[1])
		ts.Check(err)
		n, atLeast := strings.CutSuffix(args[2], "+")
		want, err := strconv.Atoi(n)
		ts.Check(err)
		got := 0
		st := api.srv.Stats()
		if st.Dropped > 0 {
			ts.Fatalf("the server's request log dropped %d requests: counts would be wrong", st.Dropped)
		}
		for _, r := range st.Requests {
			if r.Status == status && (args[3] == "*" || r.Method == args[3]) && strings.HasPrefix(r.Path, args[4]) {
				got++
			}
		}
		if got != want && !(atLeast && got >= want) {
			ts.Fatalf("%d requests %s %s answered %d, want %s", got, args[3], args[4], status, args[2])
		}
	case "contract":
		api.assertContract(ts)
	case "mark":
		api.mark = len(api.srv.Stats().Requests)
	case "mutations":
		if len(args) != 2 {
			ts.Fatalf("usage: localapi mutations N")
		}
		want, err := strconv.Atoi(args[1])
		ts.Check(err)
		st := api.srv.Stats()
		if st.Dropped > 0 || api.mark > len(st.Requests) {
			ts.Fatalf("the server's request log dropped %d requests: counts would be wrong", st.Dropped)
		}
		var got []string
		for _, r := range st.Requests[api.mark:] {
			if r.Method != http.MethodGet {
				got = append(got, r.Method+" "+r.Path)
			}
		}
		if len(got) != want {
			ts.Fatalf("%d requests other than GET since the mark, want %d: %q", len(got), want, got)
		}
	case "keys":
		if len(args) != 3 {
			ts.Fatalf("usage: localapi keys PREFIX N")
		}
		want, err := strconv.Atoi(args[2])
		ts.Check(err)
		if got := api.countKeys(ts, args[1]); got != want {
			ts.Fatalf("%d keys named %s..., want %d", got, args[1], want)
		}
	case "delkeys":
		if len(args) != 2 {
			ts.Fatalf("usage: localapi delkeys PREFIX")
		}
		for _, id := range api.keyIDs(ts, args[1]) {
			req, _ := http.NewRequest("DELETE", fmt.Sprintf("%s/v2/account/keys/%d", api.http.URL, id), nil)
			req.Header.Set("Authorization", "Bearer "+api.token)
			resp, err := http.DefaultClient.Do(req)
			ts.Check(err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				ts.Fatalf("DELETE key %d: %s", id, resp.Status)
			}
		}
	case "waitkey":
		if len(args) != 2 {
			ts.Fatalf("usage: localapi waitkey PREFIX")
		}
		scriptWait(ts, "a key named "+args[1]+"...", func() bool { return api.countKeys(ts, args[1]) > 0 })
	case "waitreq":
		if len(args) != 3 {
			ts.Fatalf("usage: localapi waitreq METHOD PATH")
		}
		scriptWait(ts, args[1]+" "+args[2]+" answered", func() bool { return api.srv.Stats().Count(args[1], args[2]) > 0 })
	case "snapshot":
		if len(args) != 3 {
			ts.Fatalf("usage: localapi snapshot NAME|current REGION")
		}
		name := args[1]
		if name == "current" {
			tmpl, err := os.ReadFile(ts.MkAbs("cloud-init/droplet.yaml"))
			ts.Check(err)
			name = deploy.SnapshotName("hello", deploy.TemplateHash(tmpl, "debian-13-x64"))
		}
		api.snapshot(ts, name, args[2])
	default:
		ts.Fatalf("localapi: unknown subcommand %q", args[0])
	}
}

func startAPI(ts *testscript.TestScript, args []string) {
	fs := flag.NewFlagSet("localapi start", flag.ContinueOnError)
	boot := fs.Duration("boot-delay", 100*time.Millisecond, "")
	action := fs.Duration("action-delay", 100*time.Millisecond, "")
	rate := fs.Int("rate-limit", 0, "")
	window := fs.Duration("rate-window", time.Hour, "")
	burst := fs.Int("burst-limit", 0, "")
	burstWindow := fs.Duration("burst-window", time.Minute, "")
	faultSpec := fs.String("faults", "", "")
	ts.Check(fs.Parse(args))
	faults, err := localcloud.ParseFaults(*faultSpec)
	ts.Check(err)
	v, err := contract.LoadDefault()
	ts.Check(err)
	token := "test-token-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// Droplets answer SSH (fleet up's readiness gate) on their address.
	sshd, err := localcloud.NewMemorySSH()
	ts.Check(err)
	srv, err := localcloud.NewServer(localcloud.Options{
		Token: token, BootDelay: *boot, ActionDelay: *action,
		RateLimit: *rate, RateWindow: *window, BurstLimit: *burst, BurstWindow: *burstWindow, Faults: faults,
		SSH: sshd,
	})
	ts.Check(err)
	ts.Setenv("FLEET_SSH_PORT", strconv.Itoa(sshd.Port))
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	api := &scriptAPI{srv: srv, http: hs, check: v, token: token}
	apis.Store(ts, api)
	ts.Setenv("FLEET_API_URL", hs.URL)
	ts.Setenv("DIGITALOCEAN_TOKEN", token)
	ts.Defer(func() {
		api.assertContract(ts)
		hs.Close()
		srv.Close()
		sshd.Close()
		apis.Delete(ts)
	})
}

func (api *scriptAPI) assertContract(ts *testscript.TestScript) {
	if vs := api.check.Violations(); len(vs) > 0 {
		ts.Fatalf("%d OpenAPI contract violations:\n%s", len(vs), strings.Join(vs, "\n"))
	}
}

// count reads meta.total of GET /v2/<what>.
func (api *scriptAPI) count(ts *testscript.TestScript, what string) int {
	req, _ := http.NewRequest("GET", api.http.URL+"/v2/"+what+"?per_page=200", nil)
	req.Header.Set("Authorization", "Bearer "+api.token)
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	var body struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	ts.Check(json.NewDecoder(resp.Body).Decode(&body))
	if resp.StatusCode != 200 {
		ts.Fatalf("GET /v2/%s: %s", what, resp.Status)
	}
	return body.Meta.Total
}

func (api *scriptAPI) countKeys(ts *testscript.TestScript, prefix string) int {
	return len(api.keyIDs(ts, prefix))
}

// keyIDs lists the account's SSH keys named prefix...
func (api *scriptAPI) keyIDs(ts *testscript.TestScript, prefix string) []int {
	req, _ := http.NewRequest("GET", api.http.URL+"/v2/account/keys?per_page=200", nil)
	req.Header.Set("Authorization", "Bearer "+api.token)
	resp, err := http.DefaultClient.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	var body struct {
		Keys []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		} `json:"ssh_keys"`
	}
	ts.Check(json.NewDecoder(resp.Body).Decode(&body))
	var ids []int
	for _, k := range body.Keys {
		if strings.HasPrefix(k.Name, prefix) {
			ids = append(ids, k.ID)
		}
	}
	return ids
}

// snapshot makes a snapshot the way a bake does, through the API: a
// droplet, its snapshot action, its destruction.
func (api *scriptAPI) snapshot(ts *testscript.TestScript, name, region string) {
	ctx := context.Background()
	c, err := godo.New(oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: api.token})), godo.SetBaseURL(api.http.URL))
	ts.Check(err)
	d, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "snapshot-source", Region: region, Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-13-x64"}, SSHKeys: []godo.DropletCreateSSHKey{}})
	ts.Check(err)
	wait := func(what string, done func() bool) {
		for deadline := time.Now().Add(20 * time.Second); !done(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				ts.Fatalf("%s: not done after 20s", what)
			}
		}
	}
	wait("droplet active", func() bool { g, _, err := c.Droplets.Get(ctx, d.ID); return err == nil && g.Status == "active" })
	a, _, err := c.DropletActions.Snapshot(ctx, d.ID, name)
	ts.Check(err)
	wait("snapshot action", func() bool { g, _, err := c.Actions.Get(ctx, a.ID); return err == nil && g.Status == "completed" })
	_, err = c.Droplets.Delete(ctx, d.ID)
	ts.Check(err)
}

// copyMissing copies the files of src into dst, skipping files dst has.
func copyMissing(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if _, err := os.Stat(target); err == nil {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// scriptWait polls cond for up to 20 s, then fails the script naming what.
func scriptWait(ts *testscript.TestScript, what string, cond func() bool) {
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			ts.Fatalf("still no %s after 20s", what)
		}
	}
}
