package cli

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
)

// planEnv is a project directory and an in-process API server whose
// traffic is checked against DigitalOcean's OpenAPI description.
type planEnv struct {
	dir, home string
	srv       *localcloud.Server
	url       string
	env       map[string]string
}

func newPlanEnv(t *testing.T) *planEnv {
	t.Helper()
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	// Droplets answer SSH: the ups the plans are compared with pass the
	// readiness gate.
	sshd, err := localcloud.NewMemorySSH()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localcloud.NewServer(localcloud.Options{Token: "plan", BootDelay: 50 * time.Millisecond, ActionDelay: 50 * time.Millisecond, SSH: sshd})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		sshd.Close()
		if vs := v.Violations(); len(vs) > 0 {
			t.Errorf("OpenAPI contract violations:\n%s", strings.Join(vs, "\n"))
		}
	})
	e := &planEnv{dir: t.TempDir(), home: t.TempDir(), srv: srv, url: hs.URL}
	if err := copyMissing("testdata/project", e.dir); err != nil {
		t.Fatal(err)
	}
	if err := deployKey(filepath.Join(e.dir, "keys")); err != nil {
		t.Fatal(err)
	}
	e.env = map[string]string{
		"FLEET_API_URL": hs.URL, "DIGITALOCEAN_TOKEN": "plan", "HOME": e.home, "FLEET_HOME": filepath.Join(e.home, "fleet"),
		"FLEET_POLL_INTERVAL": "20ms", "FLEET_RETRY_WAIT_MIN": "20ms",
		"FLEET_SSH_PORT": strconv.Itoa(sshd.Port),
	}
	return e
}

// fleet runs one command in-process, as Main does, and returns stdout.
func (e *planEnv) fleet(t *testing.T, args ...string) string {
	t.Helper()
	ios, out, errOut := TestStreams()
	f := &Factory{IOStreams: ios, Version: "test", Getenv: func(k string) string { return e.env[k] }}
	cmd := NewCmdRoot(f)
	cmd.SetArgs(append(args, "-f", filepath.Join(e.dir, "droplets.yaml")))
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("fleet %v: %v\n%s%s", args, err, out, errOut)
	}
	return out.String()
}

// mutations are the requests after the first skip that could change
// something.
func (e *planEnv) mutations(skip int) []localcloud.Request {
	var out []localcloud.Request
	for _, r := range e.srv.Stats().Requests[skip:] {
		if r.Method != "GET" && r.Method != "HEAD" {
			out = append(out, r)
		}
	}
	return out
}

func (e *planEnv) requests() int { return len(e.srv.Stats().Requests) }

// stackSpec turns the project into a stack deploy with a data contract:
// a git repository with tag v2.0.0 and its secret in the environment.
func (e *planEnv) stackSpec(t *testing.T) {
	t.Helper()
	write := func(name, body string) {
		p := filepath.Join(e.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stack/compose.yaml", "services:\n  app:\n    build: ./app\n    secrets: [app_token]\nsecrets:\n  app_token:\n    file: ${FLEET_SECRETS_DIR}/app_token\n")
	write("stack/app/Dockerfile", "FROM debian:trixie-slim\n")
	spec, err := os.ReadFile(filepath.Join(e.dir, "droplets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	write("droplets.yaml", string(spec)+`stack:
  dir: stack
  health: {host: hello.test, paths: [/healthz], timeout: 30s}
  data: {service: app, backup: app-backup, restore: app-restore, freeze: app-freeze, unfreeze: app-unfreeze}
`)
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v2"}, {"tag", "v2.0.0"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = e.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	e.env["FLEET_SECRET_APP_TOKEN"] = "s3cret-token-value"
}

// The done-when of issue 11.5: `fleet up --plan` on the local cloud makes
// no mutating API call (the server's stats), takes no lock, pins no key,
// and prints the cost at the sizes' prices.
func TestUpPlanMutatesNothing(t *testing.T) {
	e := newPlanEnv(t)

	// An empty project: one new s-1vcpu-1gb ($6).
	n := e.requests()
	out := e.fleet(t, "up", "v1.0.0", "--plan")
	if m := e.mutations(n); len(m) != 0 {
		t.Fatalf("up --plan sent %d mutating requests: %+v", len(m), m)
	}
	for _, want := range []string{"create    hello-v1-0-0-<id>", "cost: $0.00/month now, $6.00 after up, $6.00 after promote", "POST    /v2/droplets", "#cloud-config"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}

	// A live droplet, made by a real up and promote.
	e.fleet(t, "up", "v1.0.0")
	e.fleet(t, "promote")
	n = e.requests()
	var p planJSON
	if err := json.Unmarshal([]byte(e.fleet(t, "up", "v1.1.0", "--plan", "--json")), &p); err != nil {
		t.Fatal(err)
	}
	if m := e.mutations(n); len(m) != 0 {
		t.Fatalf("up --plan sent %d mutating requests: %+v", len(m), m)
	}
	if p.Cost.MonthlyBefore != 6 || p.Cost.MonthlyAfterUp != 12 || p.Cost.MonthlyAfterPromote != 12 || len(p.Unchanged) != 1 || p.Unchanged[0].Role != "live" || p.ReservedIP == nil || p.ReservedIP.Droplet != p.Unchanged[0].Name {
		t.Errorf("plan with a live droplet: %+v", p)
	}

	// The same live droplet, now with a stack spec (data carried from it).
	e.stackSpec(t)
	pinned, _ := os.ReadDir(filepath.Join(e.home, "fleet", "known_hosts"))
	n = e.requests()
	out = e.fleet(t, "up", "v2.0.0", "--plan", "--json")
	if m := e.mutations(n); len(m) != 0 {
		t.Fatalf("up --plan (stack) sent %d mutating requests: %+v", len(m), m)
	}
	p = planJSON{}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Stack == nil || p.Stack.DataFrom != p.Unchanged[0].Name || strings.Join(p.Stack.Secrets, ",") != "app_token" || p.Cost.MonthlyAfterUp != 12 {
		t.Errorf("stack plan: %+v %+v", p.Stack, p.Cost)
	}
	if strings.Contains(out, "s3cret-token-value") || strings.Contains(out, "PRIVATE KEY") || !strings.Contains(p.UserData, deploy.RedactedHostKey) {
		t.Errorf("user_data not redacted:\n%s", p.UserData)
	}
	// No pin either: known_hosts is only written by a real up (which
	// cached the live droplet's key).
	if ents, _ := os.ReadDir(filepath.Join(e.home, "fleet", "known_hosts")); len(ents) != len(pinned) {
		t.Errorf("up --plan pinned host keys: %v, before %v", ents, pinned)
	}
}

// The calls a plan lists are the ones up then sends: a real up right
// after the plan, request by request (polls collapsed; conditional calls
// may be absent).
func TestUpPlanPredictsCalls(t *testing.T) {
	e := newPlanEnv(t)
	var p planJSON
	if err := json.Unmarshal([]byte(e.fleet(t, "up", "v1.0.0", "--plan", "--json")), &p); err != nil {
		t.Fatal(err)
	}
	n := e.requests()
	e.fleet(t, "up", "v1.0.0")
	var got []string
	for _, r := range e.srv.Stats().Requests[n:] {
		c := r.Method + " " + normPath(r.Path)
		if len(got) == 0 || got[len(got)-1] != c {
			got = append(got, c)
		}
	}
	i := 0
	for _, c := range p.APICalls {
		re := regexp.MustCompile("^" + c.Method + " " + regexp.MustCompile(`\\\{[^}]*\\\}`).ReplaceAllString(regexp.QuoteMeta(c.Path), `[^/?]+`) + "$")
		switch {
		case i < len(got) && re.MatchString(got[i]):
			i++
		case c.When != "":
		default:
			t.Fatalf("planned %s %s (%s), but up sent %q next; all: %q", c.Method, c.Path, c.Why, got[min(i, len(got)-1)], got)
		}
	}
	if i != len(got) {
		t.Fatalf("up sent %q beyond the plan; all: %q", got[i:], got)
	}

	// The droplet up made is the one planned: name, size, region, tags.
	c, err := cloud.New(cloud.Config{Token: "plan", APIURL: e.url})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.ListByTag(t.Context(), deploy.ProjectTag("hello"))
	if err != nil || len(ds) != 1 {
		t.Fatalf("droplets %+v, %v", ds, err)
	}
	d, pc := ds[0], p.Create
	var tags []string
	for _, tag := range d.Tags {
		if !strings.HasPrefix(tag, "fleet-deploy:") && !strings.HasPrefix(tag, deploy.HostKeyPrefix) && tag != deploy.TagHealthy {
			tags = append(tags, tag)
		}
	}
	if !regexp.MustCompile("^"+strings.ReplaceAll(regexp.QuoteMeta(pc.NamePattern), "<id>", "[0-9a-f]{6}")+"$").MatchString(d.Name) ||
		d.Size != pc.Size || d.Region != pc.Region || strings.Join(tags, " ") != strings.Join(pc.Tags, " ") {
		t.Errorf("up made %s (%s, %s, tags %q); the plan said %s (%s, %s, tags %q)", d.Name, d.Size, d.Region, tags, pc.NamePattern, pc.Size, pc.Region, pc.Tags)
	}
}

// normPath keeps what identifies a request: the path and the filters of a
// listing, not its paging.
func normPath(p string) string {
	path, q, ok := strings.Cut(p, "?")
	if !ok {
		return p
	}
	v, _ := url.ParseQuery(q)
	v.Del("page")
	v.Del("per_page")
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

func samplePlan() *deploy.Plan {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	live := deploy.Member{Droplet: cloud.Droplet{ID: 501, Name: "blog-v1-2-0-a1b2c3", Status: "active", Region: "fra1", Size: "s-1vcpu-2gb", CreatedAt: t0}, Version: "v1.2.0", Role: deploy.RoleLive}
	prev := deploy.Member{Droplet: cloud.Droplet{ID: 400, Name: "blog-v1-1-0-d4e5f6", Status: "active", Region: "fra1", Size: "s-1vcpu-1gb", CreatedAt: t0.Add(-time.Hour)}, Version: "v1.1.0", Role: deploy.RolePrevious}
	return &deploy.Plan{
		Project: "blog", Version: "v1.3.0",
		Create: &deploy.PlannedDroplet{Name: "blog-v1-3-0-0f0f0f", DeployID: "0f0f0f", Region: "fra1", Size: "s-1vcpu-2gb",
			Image: deploy.PlannedImage{Bake: &deploy.PlannedBake{Name: "fleet-blog-0123456789ab", Hash: "0123456789ab", Base: "debian-13-x64"}},
			Tags:  []string{"fleet:blog", "fleet-version:v1_3_0", "web"}, SSHKeys: []string{"3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"}},
		Live: &live, Others: []deploy.Member{prev},
		ReservedIP: &cloud.ReservedIP{IP: "203.0.113.7", Region: "fra1", DropletID: 501},
		Stack:      &deploy.PlannedStack{From: "git tag v1.3.0", Compose: []string{"compose.yaml"}, Contexts: 2, Build: "remote", Secrets: []string{"db_password"}, DataFrom: live.Name, Health: []string{"/", "/healthz"}},
		UserData:   "#cloud-config\nhostname: blog-v1-3-0-0f0f0f\nssh_keys:\n  ed25519_private: |\n    " + deploy.RedactedHostKey + "\n",
		Calls: []deploy.APICall{
			{Method: "POST", Path: "/v2/droplets", Why: "create blog-v1-3-0-0f0f0f"},
			{Method: "GET", Path: "/v2/droplets/{id}", Poll: true, Why: "wait until active with a public IPv4"},
			{Method: "POST", Path: "/v2/tags", When: "if the deploy fails", Why: "create tag fleet-failed"},
		},
		Cost: deploy.Cost{
			Lines: []deploy.CostLine{
				{Role: "new", Size: "s-1vcpu-2gb", Monthly: 12, Hourly: 0.01786, AfterUp: true, AfterPromote: true},
				{Droplet: live.Name, Role: "live", Size: "s-1vcpu-2gb", Monthly: 12, Hourly: 0.01786, Now: true, AfterUp: true, AfterPromote: true},
				{Droplet: prev.Name, Role: "previous", Size: "s-1vcpu-1gb", Monthly: 6, Hourly: 0.00893, Now: true, AfterUp: true, AfterPromote: true},
			},
			Before: 18, AfterUp: 30, AfterPromote: 30,
		},
	}
}

// `fleet up --plan --json` is a contract (testdata/json/up-plan.golden).
func TestPlanJSON(t *testing.T) {
	ios, out, _ := TestStreams()
	if err := printJSON(ios.Out, toPlanJSON(samplePlan())); err != nil {
		t.Fatal(err)
	}
	var back planJSON
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&back); err != nil || back.Create == nil || back.Create.NamePattern != "blog-v1-3-0-<id>" || !back.Create.Image.Bake || back.Cost.MonthlyAfterUp != 30 {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	golden(t, "up-plan", out.String())

	var human bytes.Buffer
	if err := printPlan(&human, &back); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"create    blog-v1-3-0-<id>",
		"fleet-blog-0123456789ab, baked first from debian-13-x64",
		"data    restored from live blog-v1-2-0-a1b2c3",
		"reserved IP: 203.0.113.7 (fra1) stays on blog-v1-2-0-a1b2c3",
		"[if the deploy fails]",
		"cost: $18.00/month now, $30.00 after up, $30.00 after promote",
		"    " + deploy.RedactedHostKey,
	} {
		if !strings.Contains(human.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, human.String())
		}
	}
}
