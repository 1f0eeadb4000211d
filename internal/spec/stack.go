package spec

import (
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Stack is the compose stack a deploy runs on the droplet. Without it a
// deploy is provision-only.
type Stack struct {
	Dir     string   // stack directory, relative to the repository root (slash-separated)
	Compose []string // compose files in Dir, merged in this order
	Build   string   // "remote": docker compose build on the droplet; "local": build here, ship the layers
	Secrets Secrets
	Health  Health
}

// Secrets says where secret values come from. Values never enter git,
// user_data, process arguments, image layers or logs.
type Secrets struct {
	File string // a dotenv file (resolved against Spec.Dir) that git must not track; "" = environment only
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
	f := l.mapping("stack", n, "dir", "compose", "build", "secrets", "health")
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
			l.errorf(n, "stack.build: %q is not a build mode (allowed: remote, local)", v)
		}
	}
	if n, ok := f.optional("secrets"); ok {
		if sf := l.mapping("stack.secrets", n, "file"); sf != nil {
			if n, ok := sf.optional("file"); ok {
				if p := l.relPath("stack.secrets.file", n); p != "" {
					st.Secrets.File = l.resolve(p)
				}
			}
		}
	}
	if n, ok := f.optional("health"); ok {
		st.Health = l.health(n)
	}
	return st
}

func (l *loader) health(n *yaml.Node) Health {
	h := Health{Timeout: DefaultHealthTimeout}
	f := l.mapping("stack.health", n, "host", "paths", "timeout")
	if f == nil {
		return h
	}
	if n, ok := f.optional("host"); ok {
		v := l.str("stack.health.host", n, "the site's host name, like blog.example.com")
		if v != "" && !hostnameRE.MatchString(strings.ToLower(v)) {
			l.errorf(n, "stack.health.host: %q is not a host name (letters, digits, - and dots)", v)
		}
		h.Host = strings.ToLower(v)
	}
	if n, ok := f.optional("paths"); ok {
		if n.Kind != yaml.SequenceNode {
			l.errorf(n, "stack.health.paths: expected a list of paths like [/healthz], got %s", describe(n))
		} else {
			for i, p := range n.Content {
				v := l.str("stack.health.paths", p, "a path like /healthz")
				switch {
				case v == "":
				case !httpPathRE.MatchString(v):
					l.errorf(p, "stack.health.paths[%d]: %q must start with / and hold no spaces", i, v)
				case slices.Contains(h.Paths, v):
					l.errorf(p, "stack.health.paths[%d]: %q is listed twice", i, v)
				default:
					h.Paths = append(h.Paths, v)
				}
			}
		}
	}
	if n, ok := f.optional("timeout"); ok {
		h.Timeout = l.duration("stack.health.timeout", n)
	}
	return h
}

func (l *loader) composeFiles(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.errorf(n, "stack.compose: expected a list of compose files like [docker-compose-common.yaml, docker-compose-production.yaml], got %s", describe(n))
		return nil
	}
	var files []string
	for i, c := range n.Content {
		p := l.relPath("stack.compose["+itoa(i)+"]", c)
		if p == "" {
			continue
		}
		if slices.Contains(files, p) {
			l.errorf(c, "stack.compose[%d]: %q is listed twice", i, p)
			continue
		}
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
		l.errorf(n, "%s: %q must be a relative path inside the repository (no leading / or ..)", where, v)
		return ""
	}
	return c
}

func itoa(i int) string { return strconv.Itoa(i) }
