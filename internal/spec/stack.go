package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/inputfile"
)

// Stack is the compose stack a deploy runs on the droplet. Without it a
// deploy is provision-only.
type Stack struct {
	Dir     string   // stack directory, relative to the repository root (slash-separated)
	Compose []string // compose files in Dir, merged in this order
	Build   string   // "remote": docker compose build on the droplet; "local": build here, ship the layers
	Secrets Secrets
	Health  Health
	// Env holds non-secret settings for compose's interpolation (site name,
	// ACME server, smarthost), passed to `docker compose config`.
	Env []EnvVar
	// Data is how the stack's data moves between droplets; nil = it has none.
	Data *Data
	// AfterPromote runs on the new live droplet once it holds the reserved
	// IP (a first certificate needs the address); "" = nothing.
	AfterPromote string
}

// EnvVar is one stack.env entry, in file order.
type EnvVar struct{ Name, Value string }

// Data is the stack's data contract. fleet knows nothing of the
// application: each field is a shell command run on the droplet in the
// release directory, with COMPOSE_PROJECT_NAME and COMPOSE_FILE set so a
// bare `docker compose exec -T ...` reaches the stack.
type Data struct {
	Service  string // the compose service that holds the data (its image runs Verify)
	Backup   string // writes an archive of the live data to stdout
	Restore  string // reads an archive on stdin and replaces the data; exit 3 = this release cannot read it
	Freeze   string // makes the site read-only; returns once in-flight writes are done
	Unfreeze string // makes it writable again
	Writes   string // prints the number of writes since $FLEET_SINCE (unix seconds); "" = unknown
	Verify   string // run in a fresh container of Service's image, no volumes or network: checks an archive on stdin
	// FreezeBudget bounds the freeze window of promote and rollback: a
	// switch that would overrun it is aborted before the IP moves.
	FreezeBudget time.Duration
	// State prints the id of the data the droplet holds (what it restored
	// last), or "none"; "" = the stack has no incremental sync. Backup then
	// gets FLEET_BASE=<the receiving droplet's id> and may send only what
	// changed since; its restore exits 4 when the base is not what it holds.
	State string
	// Hold and Forward (opt-in, together) replace refusing writes during
	// the freeze: Hold freezes like Freeze but makes writes wait (up to
	// $FLEET_HOLD_MS); Forward, run once the droplet taking the IP is
	// writable, sends what was held and all later requests to
	// $FLEET_FORWARD_TO (its private ip:443); exit 4 = cannot. Unfreeze
	// also ends both. "" = refuse writes during the freeze, as Freeze does.
	Hold    string
	Forward string
}

// DefaultFreezeBudget and MaxFreezeBudget bound stack.data.freeze_budget.
const (
	DefaultFreezeBudget = 5 * time.Second
	MaxFreezeBudget     = 10 * time.Minute
)

// Secrets says where secret values come from. Values never enter git,
// user_data, process arguments, image layers or logs.
type Secrets struct {
	File string // a dotenv file (resolved against Spec.Dir) that git must not track; "" = environment only
	At   string // where the spec sets File, "droplets.yaml:17:19", for errors about it
}

// SecretEnvPrefix names the environment variables secrets may come from
// (FLEET_SECRET_<NAME>), for CI.
const SecretEnvPrefix = "FLEET_SECRET_"

// Health is the gate a candidate must pass before promote.
type Health struct {
	Host    string        // Host header of the HTTP checks (the site's name)
	Paths   []string      // paths that must answer 2xx through the droplet's public address
	Timeout time.Duration // how long the stack may take to become healthy
}

// Build modes.
const (
	BuildRemote = "remote"
	BuildLocal  = "local"
)

// DefaultHealthTimeout bounds the health gate when the spec does not.
const DefaultHealthTimeout = 5 * time.Minute

var (
	hostnameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	httpPathRE = regexp.MustCompile(`^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*$`)
)

func (l *loader) stack(n *yaml.Node) *Stack {
	st := &Stack{Build: BuildRemote, Health: Health{Timeout: DefaultHealthTimeout}}
	f := l.mapping("stack", n, "dir", "compose", "build", "secrets", "health", "env", "data", "after_promote")
	if f == nil {
		return st
	}
	if n, ok := f.required("dir", "the stack's directory in the repository, like stacks/hello"); ok {
		st.Dir = l.relPath("stack.dir", n)
	}
	if n, ok := f.optional("compose"); ok {
		st.Compose = l.composeFiles(n)
	} else {
		st.Compose = []string{"compose.yaml"}
	}
	if n, ok := f.optional("build"); ok {
		switch v := l.str("stack.build", n, "remote or local"); v {
		case "", BuildRemote, BuildLocal:
			if v != "" {
				st.Build = v
			}
		default:
			l.errorf(n, "stack.build: %s is not a build mode (allowed: remote, local)", quote(v))
		}
	}
	if n, ok := f.optional("secrets"); ok {
		if sf := l.mapping("stack.secrets", n, "file"); sf != nil {
			if n, ok := sf.optional("file"); ok {
				if p := l.relPath("stack.secrets.file", n); p != "" {
					st.Secrets.File = l.resolve(p)
					st.Secrets.At = fmt.Sprintf("%s:%d:%d", l.file, n.Line, n.Column)
					l.secretsFile(n, p, st.Secrets.File)
				}
			}
		}
	}
	if n, ok := f.optional("health"); ok {
		st.Health = l.health("stack.health", n)
	}
	if n, ok := f.optional("env"); ok {
		st.Env = l.env(n)
	}
	if n, ok := f.optional("data"); ok {
		st.Data = l.data(n)
	}
	if n, ok := f.optional("after_promote"); ok {
		st.AfterPromote = l.command("stack.after_promote", n)
	}
	return st
}

var (
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
)

func (l *loader) env(n *yaml.Node) []EnvVar {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "stack.env: expected a mapping of NAME: value, got %s", describe(n))
		return nil
	}
	var out []EnvVar
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		name := k.Value
		switch {
		case k.Kind != yaml.ScalarNode || !envNameRE.MatchString(name):
			l.errorf(k, "stack.env: %s is not a variable name (letters, digits and _, not starting with a digit)", quote(name))
			continue
		case strings.HasPrefix(strings.ToUpper(name), "FLEET_"):
			l.errorf(k, "stack.env.%s: FLEET_ variables are fleet's own (FLEET_VERSION, FLEET_PROJECT, FLEET_SECRETS_DIR)", clip(name))
			continue
		case seen[name] > 0:
			l.errorf(k, "stack.env.%s: duplicate key; it is already set at line %d", clip(name), seen[name])
			continue
		case v.Kind != yaml.ScalarNode:
			l.errorf(v, "stack.env.%s: expected a string, got %s", clip(name), describe(v))
			continue
		case strings.ContainsAny(v.Value, "\n\x00"):
			l.errorf(v, "stack.env.%s: must be one line", clip(name))
			continue
		}
		seen[name] = k.Line
		val := v.Value
		if v.Tag == "!!null" {
			val = ""
		}
		out = append(out, EnvVar{Name: name, Value: val})
	}
	return out
}

func (l *loader) data(n *yaml.Node) *Data {
	d := &Data{FreezeBudget: DefaultFreezeBudget}
	f := l.mapping("stack.data", n, "service", "backup", "restore", "freeze", "unfreeze", "writes", "verify", "freeze_budget", "state", "hold", "forward")
	if f == nil {
		return d
	}
	if n, ok := f.required("service", "the compose service that holds the data, like app"); ok {
		d.Service = l.str("stack.data.service", n, "a compose service name")
		if d.Service != "" && !serviceNameRE.MatchString(d.Service) {
			l.errorf(n, "stack.data.service: %s is not a compose service name (a-z 0-9 _ . -)", quote(d.Service))
		}
	}
	if n, ok := f.required("backup", "a command that writes an archive to stdout"); ok {
		d.Backup = l.command("stack.data.backup", n)
	}
	if n, ok := f.required("restore", "a command that reads an archive on stdin"); ok {
		d.Restore = l.command("stack.data.restore", n)
	}
	fr, hasFr := f.optional("freeze")
	un, hasUn := f.optional("unfreeze")
	if hasFr {
		d.Freeze = l.command("stack.data.freeze", fr)
	}
	if hasUn {
		d.Unfreeze = l.command("stack.data.unfreeze", un)
	}
	switch {
	case hasFr && !hasUn:
		l.errorf(fr, "stack.data: freeze needs unfreeze too (or a frozen site would stay read-only)")
	case hasUn && !hasFr:
		l.errorf(un, "stack.data: unfreeze needs freeze too")
	case !hasFr && !hasUn:
		l.errorf(n, "stack.data: freeze and unfreeze are required: promote freezes writes on the live droplet for its final backup, or writes made during the copy would be lost")
	}
	if n, ok := f.optional("writes"); ok {
		d.Writes = l.command("stack.data.writes", n)
	}
	if n, ok := f.optional("verify"); ok {
		d.Verify = l.command("stack.data.verify", n)
	}
	if n, ok := f.optional("freeze_budget"); ok {
		d.FreezeBudget = l.freezeBudget(n)
	}
	if n, ok := f.optional("state"); ok {
		d.State = l.command("stack.data.state", n)
	}
	ho, hasHo := f.optional("hold")
	fw, hasFw := f.optional("forward")
	if hasHo {
		d.Hold = l.command("stack.data.hold", ho)
	}
	if hasFw {
		d.Forward = l.command("stack.data.forward", fw)
	}
	switch {
	case hasHo && !hasFw:
		l.errorf(ho, "stack.data: hold needs forward too (held writes are answered by the droplet taking over)")
	case hasFw && !hasHo:
		l.errorf(fw, "stack.data: forward needs hold too (writes must wait, not be refused, until forwarding starts)")
	}
	return d
}

// command is a one-line shell command.
func (l *loader) command(where string, n *yaml.Node) string {
	v := l.str(where, n, "a shell command")
	if strings.ContainsAny(v, "\n\r\x00") {
		l.errorf(n, "%s: must be one line (write a script into the image for anything longer)", where)
		return ""
	}
	return strings.TrimSpace(v)
}

func (l *loader) health(key string, n *yaml.Node) Health {
	h := Health{Timeout: DefaultHealthTimeout}
	f := l.mapping(key, n, "host", "paths", "timeout")
	if f == nil {
		return h
	}
	if n, ok := f.optional("host"); ok {
		v := l.str(key+".host", n, "the site's host name, like blog.example.com")
		if v != "" && !hostnameRE.MatchString(strings.ToLower(v)) {
			l.errorf(n, key+".host: %s is not a host name (letters, digits, - and dots)", quote(v))
		}
		h.Host = strings.ToLower(v)
	}
	if n, ok := f.optional("paths"); ok {
		if n.Kind != yaml.SequenceNode {
			l.errorf(n, key+".paths: expected a list of paths like [/healthz], got %s", describe(n))
		} else {
			seen := map[string]bool{}
			for i, p := range n.Content {
				v := l.str(key+".paths", p, "a path like /healthz")
				switch {
				case v == "":
				case !httpPathRE.MatchString(v):
					l.errorf(p, key+".paths[%d]: %s must start with / and hold no spaces", i, quote(v))
				case seen[v]:
					l.errorf(p, key+".paths[%d]: %s is listed twice", i, quote(v))
				default:
					seen[v] = true
					h.Paths = append(h.Paths, v)
				}
			}
		}
	}
	if n, ok := f.optional("timeout"); ok {
		h.Timeout = l.duration(key+".timeout", n)
	}
	return h
}

func (l *loader) composeFiles(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.errorf(n, "stack.compose: expected a list of compose files like [docker-compose-common.yaml, docker-compose-production.yaml], got %s", describe(n))
		return nil
	}
	var files []string
	seen := map[string]bool{}
	for i, c := range n.Content {
		p := l.relPath("stack.compose["+itoa(i)+"]", c)
		if p == "" {
			continue
		}
		if seen[p] {
			l.errorf(c, "stack.compose[%d]: %s is listed twice", i, quote(p))
			continue
		}
		seen[p] = true
		files = append(files, p)
	}
	return files
}

// relPath is a clean, relative, slash-separated path that stays inside
// its base (no "..", no absolute paths).
func (l *loader) relPath(where string, n *yaml.Node) string {
	v := l.str(where, n, "a relative path")
	if v == "" {
		return ""
	}
	c := path.Clean(v)
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
		l.errorf(n, "%s: %s must be a relative path inside the repository (no leading / or ..)", where, quote(v))
		return ""
	}
	return c
}

// secretsFile checks the secrets file the way stack.LoadSecrets will read
// it; a file that does not exist is fine (the environment may hold every
// secret).
func (l *loader) secretsFile(n *yaml.Node, shown, file string) {
	var ie *inputfile.Error
	switch err := inputfile.Check(file, MaxSecretsFileSize); {
	case err == nil, errors.Is(err, fs.ErrNotExist):
	case errors.As(err, &ie):
		l.errorf(n, "stack.secrets.file: %s: %s", clip(shown), ie.Reason())
	default:
		l.errorf(n, "stack.secrets.file: %s: %s", clip(shown), reason(err))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// freezeBudget is stack.data.freeze_budget: a duration, more than 0 and
// at most MaxFreezeBudget (a longer write outage is not a budget).
func (l *loader) freezeBudget(n *yaml.Node) time.Duration {
	const path = "stack.data.freeze_budget"
	v := l.str(path, n, `a duration like "5s"`)
	if v == "" {
		return DefaultFreezeBudget
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && n.Tag == "!!int":
		l.errorf(n, "%s: %s has no unit; write %s", path, clip(v), quote(v+"s"))
	case err != nil:
		l.errorf(n, "%s: %s is not a duration like \"5s\"", path, quote(v))
	case d <= 0 || d > MaxFreezeBudget:
		l.errorf(n, "%s: %s is out of range (allowed: more than 0, at most 10m; default 5s)", path, clip(v))
	default:
		return d
	}
	return DefaultFreezeBudget
}
