package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/spf13/cobra"
)

// jsonContract is what each command prints with --json: a new value of
// its type (jsonout.go), or nil for the commands whose stdout is a
// droplet's stream (ssh, logs, exec), where --json only shapes errors.
// A command added to the root without an entry here fails
// TestEveryCommandHasJSON.
var jsonContract = map[string]func() any{
	"validate":     func() any { return new(validateJSON) },
	"up":           func() any { return new(upJSON) },
	"promote":      func() any { return new(promoteJSON) },
	"rollback":     func() any { return new(rollbackJSON) },
	"status":       func() any { return new(statusJSON) },
	"history":      func() any { return new(historyJSON) },
	"destroy":      func() any { return new(destroyedJSON) },
	"prune":        func() any { return new(destroyedJSON) },
	"image bake":   func() any { return new(bakeJSON) },
	"image list":   func() any { return new(imageListJSON) },
	"image prune":  func() any { return new(imagePruneJSON) },
	"backup":       func() any { return new(backupJSON) },
	"restore":      func() any { return new(restoreJSON) },
	"version":      func() any { return new(versionJSON) },
	"init":         func() any { return new(initJSON) },
	"local start":  func() any { return new(localJSON) },
	"local status": func() any { return new(localJSON) },
	"local stop":   func() any { return new(localStopJSON) },
	"local serve":  func() any { return new(localServeJSON) },
	"ssh":          nil,
	"logs":         nil,
	"exec":         nil,
}

// jsonVariants are results a flag gives a command instead of its own:
// key "up --plan" is `fleet up --plan`, described under its own heading.
// TestEveryCommandHasJSON checks that the command has the flag.
var jsonVariants = map[string]func() any{
	"up --plan": func() any { return new(planJSON) },
}

// jsonObjects are the objects docs/json.md describes once, under a
// heading of that name, and the commands' results reuse.
var jsonObjects = map[string]reflect.Type{
	"droplet":        reflect.TypeFor[dropletJSON](),
	"phase":          reflect.TypeFor[phaseJSON](),
	"transfer":       reflect.TypeFor[transferJSON](),
	"held":           reflect.TypeFor[deploy.Held](),
	"manifest":       reflect.TypeFor[manifestJSON](),
	"file sum":       reflect.TypeFor[fileSumJSON](),
	"image":          reflect.TypeFor[imageJSON](),
	"history entry":  reflect.TypeFor[historyEntryJSON](),
	"error":          reflect.TypeFor[ErrorDetail](),
	"spec problems":  reflect.TypeFor[specErrorsJSON](),
	"spec problem":   reflect.TypeFor[specErrorJSON](),
	"region":         reflect.TypeFor[regionErrorJSON](),
	"region check":   reflect.TypeFor[regionCheckJSON](),
	"lock":           reflect.TypeFor[lockErrorJSON](),
	"lock holder":    reflect.TypeFor[holderJSON](),
	"api":            reflect.TypeFor[apiErrorJSON](),
	"rate_limit":     reflect.TypeFor[rateLimitJSON](),
	"timeout":        reflect.TypeFor[timeoutErrorJSON](),
	"action":         reflect.TypeFor[actionErrorJSON](),
	"writes_at_risk": reflect.TypeFor[writesAtRiskJSON](),
	"cloud_init":     reflect.TypeFor[cloudInitErrorJSON](),
	"host_key":       reflect.TypeFor[hostKeyErrorJSON](),
	"ssh_auth":       reflect.TypeFor[sshAuthErrorJSON](),
	"remote":         reflect.TypeFor[remoteExitJSON](),
	"move":           reflect.TypeFor[moveErrorJSON](),
	"checksum":       reflect.TypeFor[checksumErrorJSON](),
	"freeze_budget":  reflect.TypeFor[freezeBudgetJSON](),
	"window phase":   reflect.TypeFor[windowJSON](),
	// fleet init
	"init file": reflect.TypeFor[initFileJSON](),
	// fleet up --plan
	"plan create":      reflect.TypeFor[planCreateJSON](),
	"plan image":       reflect.TypeFor[planImageJSON](),
	"plan droplet":     reflect.TypeFor[planDropletJSON](),
	"plan reserved IP": reflect.TypeFor[planReservedIPJSON](),
	"plan stack":       reflect.TypeFor[planStackJSON](),
	"plan API call":    reflect.TypeFor[planCallJSON](),
	"plan cost":        reflect.TypeFor[planCostJSON](),
	"plan cost line":   reflect.TypeFor[planCostLineJSON](),
}

// runnable lists the command paths ("up", "image bake") of the tree.
func runnable(c *cobra.Command) []string {
	var out []string
	for _, sub := range c.Commands() {
		if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		if sub.Runnable() {
			out = append(out, commandName(sub))
		}
		out = append(out, runnable(sub)...)
	}
	return out
}

// Every command takes --json and has a contract; the contract names no
// command that is gone.
func TestEveryCommandHasJSON(t *testing.T) {
	ios, _, _ := TestStreams()
	root := NewCmdRoot(&Factory{IOStreams: ios, Getenv: func(string) string { return "" }})
	cmds := runnable(root)
	if len(cmds) < 15 {
		t.Fatalf("found only %v", cmds)
	}
	for _, name := range cmds {
		c, _, err := root.Find(strings.Fields(name))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ParseFlags([]string{"--json"}); err != nil {
			t.Errorf("fleet %s --json: %v", name, err)
		}
		if _, ok := jsonContract[name]; !ok {
			t.Errorf("fleet %s: no entry in jsonContract (add its type to jsonout.go and docs/json.md)", name)
		}
	}
	for name := range jsonContract {
		if !slices.Contains(cmds, name) {
			t.Errorf("jsonContract names %q, which is not a command", name)
		}
	}
	for key := range jsonVariants {
		var words, flags []string
		for _, w := range strings.Fields(key) {
			if strings.HasPrefix(w, "--") {
				flags = append(flags, strings.TrimPrefix(w, "--"))
			} else {
				words = append(words, w)
			}
		}
		name := strings.Join(words, " ")
		if !slices.Contains(cmds, name) || len(flags) == 0 {
			t.Errorf("jsonVariants names %q: want a command and its flag", key)
			continue
		}
		c, _, err := root.Find(words)
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range flags {
			if c.Flags().Lookup(fl) == nil {
				t.Errorf("jsonVariants names %q, but fleet %s has no --%s", key, name, fl)
			}
		}
	}
}

// docs/json.md describes every command's result and every object, field
// by field: a field added to a type without its line in the docs fails.
func TestJSONDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	covered := map[reflect.Type]bool{}
	check := func(heading string, typ reflect.Type) {
		sec, ok := docSection(doc, heading)
		if !ok {
			t.Errorf("docs/json.md: no section %q", heading)
			return
		}
		covered[typ] = true
		for _, f := range jsonFields(typ) {
			if !strings.Contains(sec, "`"+f+"`") {
				t.Errorf("docs/json.md, section %q: field `%s` is not described", heading, f)
			}
		}
	}
	for name, mk := range jsonContract {
		if mk == nil {
			if _, ok := docSection(doc, "`fleet "+name+"`"); !ok {
				t.Errorf("docs/json.md: no section for `fleet %s`", name)
			}
			continue
		}
		check("`fleet "+name+"`", reflect.TypeOf(mk()).Elem())
	}
	for key, mk := range jsonVariants {
		check("`fleet "+key+"`", reflect.TypeOf(mk()).Elem())
	}
	for heading, typ := range jsonObjects {
		check("The "+heading+" object", typ)
	}
	// Every struct a result holds is described somewhere.
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		if !covered[typ] {
			t.Errorf("%v: no section of docs/json.md describes it (add it to jsonObjects)", typ)
		}
		for i := range typ.NumField() {
			walk(typ.Field(i).Type)
		}
	}
	for _, mk := range jsonContract {
		if mk != nil {
			walk(reflect.TypeOf(mk()))
		}
	}
	for _, mk := range jsonVariants {
		walk(reflect.TypeOf(mk()))
	}
	walk(reflect.TypeFor[ErrorJSON]().Field(0).Type)
	for code, name := range exitCodeNames {
		if !strings.Contains(doc, fmt.Sprintf("| `%s` | %d |", name, code)) {
			t.Errorf("docs/json.md: exit code %d (%s) is not in the table", code, name)
		}
	}
}

// docSection is the text under the heading that contains title, up to
// the next heading of the same or a higher level.
func docSection(doc, title string) (string, bool) {
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		level := len(l) - len(strings.TrimLeft(l, "#"))
		if level == 0 || !strings.Contains(l, title) {
			continue
		}
		var sec []string
		for _, m := range lines[i+1:] {
			if n := len(m) - len(strings.TrimLeft(m, "#")); n > 0 && n <= level && strings.HasPrefix(m, strings.Repeat("#", n)+" ") {
				break
			}
			sec = append(sec, m)
		}
		return strings.Join(sec, "\n"), true
	}
	return "", false
}

// jsonFields are the JSON names of typ's fields.
func jsonFields(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// decodeStrict decodes one document into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON document")
	}
	return nil
}

// jsonRun is one in-process fleet against an API.
type jsonRun struct {
	env map[string]string
}

func (r *jsonRun) fleet(args ...string) (stdout, stderr string, code int) {
	ios, out, errOut := TestStreams()
	f := &Factory{IOStreams: ios, Version: "v1.2.3-test", Getenv: func(k string) string { return r.env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, f, args)
	return out.String(), errOut.String(), code
}

// volatile values of a real run, each replaced by a placeholder after
// its form was checked: droplet name suffixes (random per up), times
// (must be RFC 3339 UTC), durations (must be numbers; 0 stays 0).
var (
	nameSuffix = regexp.MustCompile(`\b(hello-v[0-9]+-[0-9]+-[0-9]+)-([0-9a-f]{6})\b`)
	utcTime    = regexp.MustCompile(`"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"`)
	anyTime    = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`)
	seconds    = regexp.MustCompile(`"(seconds|\w+_seconds)": (-?[0-9][0-9.e+-]*)`)
)

type normalizer struct{ suffixes map[string]string }

// A lock holder's host and PID are this machine's and process's, and
// its message says how long ago it took the lock.
var (
	lockPID = regexp.MustCompile(`"pid": ` + strconv.Itoa(os.Getpid()) + `\b|pid ` + strconv.Itoa(os.Getpid()) + `\b`)
	lockAge = regexp.MustCompile(`since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s ago, renewed \d+s ago\)`)
)

func (n *normalizer) normalize(t *testing.T, s string) string {
	if host, err := os.Hostname(); err == nil && host != "" {
		s = strings.ReplaceAll(s, `"host": "`+host+`"`, `"host": "<host>"`)
		s = strings.ReplaceAll(s, " on "+host+")", " on <host>)")
	}
	s = lockPID.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, `"`) {
			return `"pid": "<pid>"`
		}
		return "pid <pid>"
	})
	s = lockAge.ReplaceAllString(s, "since <time> (<age>)")
	s = nameSuffix.ReplaceAllStringFunc(s, func(m string) string {
		sub := nameSuffix.FindStringSubmatch(m)
		tok, ok := n.suffixes[sub[2]]
		if !ok {
			tok = fmt.Sprintf("<suffix%d>", len(n.suffixes)+1)
			n.suffixes[sub[2]] = tok
		}
		return sub[1] + "-" + tok
	})
	s = utcTime.ReplaceAllString(s, `"<time>"`)
	if m := anyTime.FindString(s); m != "" {
		t.Errorf("a time that is not RFC 3339 UTC: %s in\n%s", m, s)
	}
	return seconds.ReplaceAllStringFunc(s, func(m string) string {
		sub := seconds.FindStringSubmatch(m)
		if sub[2] == "0" {
			return m
		}
		var f float64
		if _, err := fmt.Sscan(sub[2], &f); err != nil || f < 0 {
			t.Errorf("%s: not a duration in seconds", m)
		}
		return `"` + sub[1] + `": "<seconds>"`
	})
}

// jsonGoldenDir is testdata/json, absolute: TestJSONLifecycle runs in
// a project directory of its own.
var jsonGoldenDir, _ = filepath.Abs(filepath.Join("testdata", "json"))

// golden compares got with testdata/json/name.golden (-update rewrites it).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join(jsonGoldenDir, name+".golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s changed (go test -run %s -update):\n%s\nwant:\n%s", path, t.Name(), got, want)
	}
}

// TestJSONLifecycle runs every command fleet can run without SSH against
// the in-process memory API (its traffic checked against DigitalOcean's
// OpenAPI file), decodes each --json output into its type with no
// unknown fields, and pins it in testdata/json/.
func TestJSONLifecycle(t *testing.T) {
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	const token = "json-test-token"
	// Droplets answer SSH: every up passes the readiness gate.
	sshd, err := localcloud.NewMemorySSH()
	if err != nil {
		t.Fatal(err)
	}
	defer sshd.Close()
	srv, err := localcloud.NewServer(localcloud.Options{Token: token, BootDelay: 50 * time.Millisecond, ActionDelay: 50 * time.Millisecond, SSH: sshd})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	defer hs.Close()

	dir := t.TempDir()
	if err := copyMissing(filepath.Join("testdata", "project"), dir); err != nil {
		t.Fatal(err)
	}
	if err := deployKey(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	r := &jsonRun{env: map[string]string{
		"HOME": dir, "FLEET_HOME": filepath.Join(dir, "fleet-home"), "USER": "ci",
		"FLEET_API_URL": hs.URL, "DIGITALOCEAN_TOKEN": token,
		"FLEET_POLL_INTERVAL": "20ms", "FLEET_RETRY_WAIT_MIN": "50ms",
		"FLEET_SSH_PORT": strconv.Itoa(sshd.Port),
	}}
	n := &normalizer{suffixes: map[string]string{}}
	var candidate string
	steps := []struct {
		golden string
		args   []string
		code   int
	}{
		{"version", []string{"version"}, 0},
		{"validate", []string{"validate"}, 0},
		{"status-empty", []string{"status"}, 0},
		{"error-promote-nothing", []string{"promote"}, ExitRefused},
		{"up", []string{"up", "v1.0.0"}, 0},
		{"promote-first", []string{"promote"}, 0},
		{"up-second", []string{"up", "v1.1.0"}, 0},
		{"promote", []string{"promote"}, 0},
		{"rollback", []string{"rollback"}, 0},
		{"rollback-again", []string{"rollback"}, 0},
		{"up-third", []string{"up", "v1.2.0"}, 0},
		{"status", []string{"status"}, 0},
		{"rollback-candidate", []string{"rollback"}, 0},
		{"up-fourth", []string{"up", "v1.3.0"}, 0},
		{"destroy", []string{"destroy", "--yes", "CANDIDATE"}, 0},
		{"prune", []string{"prune", "--yes", "--keep", "0"}, 0},
		{"image-list", []string{"image", "list"}, 0},
		{"image-prune", []string{"image", "prune", "--yes"}, 0},
		{"error-history", []string{"history"}, ExitConfig},
		{"error-backup", []string{"backup"}, ExitConfig},
		{"local-status", []string{"local", "status"}, 0},
		{"local-stop", []string{"local", "stop"}, 0},
		{"error-usage", []string{"up"}, ExitUsage},
		{"error-lock", []string{"up", "v2.0.0"}, ExitRefused}, // another fleet holds the lock
	}
	for _, st := range steps {
		args := slices.Clone(st.args)
		for i, a := range args {
			if a == "CANDIDATE" {
				args[i] = candidate
			}
		}
		if st.golden == "error-lock" {
			other := holdLock(t, hs.URL, token)
			defer other.Release()
		}
		out, errOut, code := r.fleet(append(args, "--json")...)
		if code != st.code {
			t.Fatalf("fleet %s --json: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, st.code, out, errOut)
		}
		var into any
		if code == 0 {
			name := strings.Join(args[:1], " ")
			if args[0] == "image" || args[0] == "local" {
				name = strings.Join(args[:2], " ")
			}
			into = jsonContract[name]()
		} else {
			into = new(ErrorJSON)
		}
		if err := decodeStrict([]byte(out), into); err != nil {
			t.Fatalf("fleet %s --json: %v\n%s", strings.Join(args, " "), err, out)
		}
		if up, ok := into.(*upJSON); ok {
			candidate = up.Droplet.Name
		}
		golden(t, st.golden, n.normalize(t, out))
	}
}

// `fleet init --ci github --json`, run for real in a temp directory: once
// in the project directory (what was written), then again from elsewhere
// with --dir the absolute path (everything kept; that path, which
// differs per run, pinned as <tmp>).
func TestInitJSON(t *testing.T) {
	tmp := t.TempDir()
	proj := filepath.Join(tmp, "blog")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &jsonRun{env: map[string]string{"HOME": tmp}}
	for _, tt := range []struct {
		golden, cwd string
		args        []string
		action      string
	}{
		{"init", proj, nil, "created"},
		{"init-again", tmp, []string{"--dir", proj}, "kept"},
	} {
		t.Chdir(tt.cwd)
		args := append([]string{"init", "--ci", "github", "--fleet-version", "v1.2.3", "--json"}, tt.args...)
		out, errOut, code := r.fleet(args...)
		if code != 0 || errOut != "" {
			t.Fatalf("fleet %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
		}
		var got initJSON
		if err := decodeStrict([]byte(out), &got); err != nil {
			t.Fatalf("%s: %v\n%s", tt.golden, err, out)
		}
		// What it says is what is on disk.
		if got.Project != "blog" || len(got.Files) != 5 {
			t.Errorf("%s: project %q, %d files", tt.golden, got.Project, len(got.Files))
		}
		for _, f := range got.Files {
			if _, err := os.Stat(filepath.Join(proj, filepath.FromSlash(f.Path))); err != nil || f.Action != tt.action {
				t.Errorf("%s: %s %s: %v", tt.golden, f.Action, f.Path, err)
			}
		}
		enc, err := json.Marshal(tmp)
		if err != nil {
			t.Fatal(err)
		}
		norm := strings.ReplaceAll(out, strings.Trim(string(enc), `"`), "<tmp>")
		if tt.golden == "init-again" && !strings.Contains(norm, `"dir": "<tmp>/blog"`) {
			t.Errorf("--dir %s not reported as given:\n%s", proj, out)
		}
		golden(t, tt.golden, norm)
	}
}

// The parts of the results a memory droplet never produces (stack data,
// bakes, shipped layers) and the data commands, from results as deploy
// returns them.
func TestJSONStackResults(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	member := func(id int, name, version string, role deploy.Role, tags ...string) deploy.Member {
		return deploy.Member{Droplet: cloud.Droplet{ID: id, Name: name, Status: "active", PublicIPv4: fmt.Sprintf("192.0.2.%d", id%250), CreatedAt: at, Tags: tags}, Version: version, Role: role}
	}
	live := member(501, "blog-v1-1-0-bbbbbb", "v1.1.0", deploy.RoleLive, deploy.TagPromoted, deploy.TagHealthy)
	prev := member(500, "blog-v1-0-0-aaaaaa", "v1.0.0", deploy.RolePrevious, deploy.TagPromoted, deploy.TagHealthy)
	failed := member(501, "blog-v1-1-0-bbbbbb", "v1.1.0", deploy.RoleFailed, deploy.TagPromoted, deploy.TagHealthy, deploy.TagFailed)
	transfer := &deploy.Transfer{From: prev.Name, To: live.Name, Bytes: 1 << 20, SHA256: strings.Repeat("ab", 32), Duration: 1500 * time.Millisecond}
	manifest := &deploy.Manifest{Format: deploy.ManifestFormat, Project: "blog", Droplet: live.Name, Version: "v1.1.0", Created: at,
		Archive: deploy.FileSum{Bytes: 4096, SHA256: strings.Repeat("cd", 32)}, Stream: deploy.FileSum{Bytes: 1 << 20, SHA256: strings.Repeat("ab", 32)},
		Entries: []deploy.FileSum{{Name: "db.sqlite3", Bytes: 1<<20 - 1024, SHA256: strings.Repeat("ef", 32)}}}
	bake := sampleBake()
	phases := []deploy.Phase{{Name: "creating blog-v1-1-0-bbbbbb", Duration: 2 * time.Second}, {Name: "health gate", Duration: 500 * time.Millisecond}}
	verify := "integrity_check ok"
	window := []deploy.WindowPhase{{Name: "freeze", Duration: 250 * time.Millisecond}, {Name: "sync", Start: 250 * time.Millisecond, Duration: 1500 * time.Millisecond},
		{Name: "health", Start: 1750 * time.Millisecond, Duration: 50 * time.Millisecond}, {Name: "unfreeze", Start: 1800 * time.Millisecond, Duration: 400 * time.Millisecond},
		{Name: "forward", Start: 2200 * time.Millisecond, Duration: 250 * time.Millisecond}, {Name: "move", Start: 2200 * time.Millisecond, Duration: 300 * time.Millisecond}}
	for _, tt := range []struct {
		golden string
		v      any
	}{
		{"stack-up", toUpJSON(&deploy.UpResult{Droplet: member(501, "blog-v1-1-0-bbbbbb", "v1.1.0", deploy.RoleCandidate, deploy.TagHealthy),
			Image: &deploy.ImageRef{Snapshot: &bake.Image, Baked: bake}, Phases: phases, ShippedBytes: 123456789, ReusedLayers: 7, Data: transfer})},
		{"stack-promote", toPromoteJSON(&deploy.PromoteResult{ReservedIP: "203.0.113.7", Live: live, Previous: &prev, Data: transfer,
			Freeze: 2500 * time.Millisecond, FreezeBudget: 5 * time.Second, Window: window, AfterPromoteError: "certbot: rate limited", Phases: phases})},
		{"stack-rollback", toRollbackJSON(&deploy.RollbackResult{ReservedIP: "203.0.113.7", Live: &prev, Failed: &failed, Writes: 3, Data: transfer, Freeze: time.Second,
			FreezeBudget: 5 * time.Second, Window: []deploy.WindowPhase{{Name: "freeze", Duration: 100 * time.Millisecond}, {Name: "writes", Start: 100 * time.Millisecond, Duration: 100 * time.Millisecond},
				{Name: "sync", Start: 200 * time.Millisecond, Duration: 400 * time.Millisecond}, {Name: "unfreeze", Start: 600 * time.Millisecond, Duration: 100 * time.Millisecond},
				{Name: "move", Start: 700 * time.Millisecond, Duration: 300 * time.Millisecond}}})},
		{"stack-backup", func() backupJSON {
			b := toBackupJSON(&deploy.BackupResult{Path: "backups/blog/20261130T110000Z.tar.zst", Manifest: manifest, Duration: 3 * time.Second})
			b.Verified, b.VerifyOutput = true, &verify
			return b
		}()},
		{"stack-backup-verify-archive", backupJSON{Archive: "backups/blog/20261130T110000Z.tar.zst", Verified: true, VerifyOutput: &verify}},
		{"stack-restore", toRestoreJSON(&deploy.RestoreResult{Droplet: live, Manifest: manifest, Transfer: transfer, Frozen: 4 * time.Second})},
	} {
		var buf bytes.Buffer
		if err := printJSON(&buf, tt.v); err != nil {
			t.Fatal(err)
		}
		back := reflect.New(reflect.TypeOf(tt.v)).Interface()
		if err := decodeStrict(buf.Bytes(), back); err != nil {
			t.Fatalf("%s: %v", tt.golden, err)
		}
		if !reflect.DeepEqual(reflect.ValueOf(back).Elem().Interface(), tt.v) {
			t.Errorf("%s: does not survive a round trip:\n%s", tt.golden, buf.String())
		}
		if m := anyTime.FindString(utcTime.ReplaceAllString(buf.String(), "")); m != "" {
			t.Errorf("%s: a time not in RFC 3339 UTC: %s", tt.golden, m)
		}
		golden(t, tt.golden, buf.String())
	}
}

// `fleet local serve --json` prints one document once it listens (and
// the URL answers), then serves until interrupted.
func TestLocalServeJSON(t *testing.T) {
	pr, pw := io.Pipe()
	ios, _, errOut := TestStreams()
	ios.Out = pw
	f := &Factory{IOStreams: ios, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, f, []string{"local", "serve", "--json", "--backend", "memory", "--listen", "127.0.0.1:0", "--token", "t"})
		pw.Close()
	}()
	var got localServeJSON
	dec := json.NewDecoder(pr)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, errOut)
	}
	if got.Backend != "memory" || !strings.HasPrefix(got.URL, "http://127.0.0.1:") {
		t.Errorf("%+v", got)
	}
	resp, err := http.Get(got.URL + "/v2/account")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v2/account without the token: %s", resp.Status)
	}
	cancel()
	go io.Copy(io.Discard, pr) // nothing more is expected; do not block the server
	select {
	case code := <-done:
		if code != ExitOK && code != ExitInterrupted {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of its context ending")
	}
}

// holdLock takes project hello's lock as another fleet would.
func holdLock(t *testing.T, url, token string) *lock.Lock {
	t.Helper()
	c, err := cloud.New(cloud.Config{Token: token, APIURL: url})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lock.Acquire(context.Background(), c, lock.Options{Project: "hello", Who: "alice", Cmd: "promote", Version: "v0.9.0", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
