package stack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// What fleet reads of the compose files. The files are merged for real on
// the droplet (docker compose config); this reads just enough, with the
// same rules (later files override earlier ones key by key; relative paths
// in every file resolve against the first file's directory, the project
// directory), to know before anything is created which build contexts to
// ship, which secrets to deliver and which images the services use.

// secretNameRE is what a secret name may be: it becomes a file name on the
// droplet (/etc/fleet/<project>/secrets/<name>) and an environment variable
// suffix (FLEET_SECRET_<NAME>).
var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

type service struct {
	build     bool
	context   pos // build context as written
	dockerfil pos // build.dockerfile as written ("" = default)
	extra     map[string]pos
	image     string
}

type secret struct {
	def     pos // where it is defined
	content bool
}

// pos is a value and where it was written.
type pos struct {
	file  string
	line  int
	value string
}

func (p pos) at() string { return p.file + ":" + strconv.Itoa(p.line) }

type composeModel struct {
	services map[string]*service
	secrets  map[string]*secret
	uses     []pos // secrets the services use, by name
	files    []ref // other files the compose files reference
}

// ref is a file a compose file references; it must be shipped.
type ref struct {
	pos
	what string // like services.app.env_file
}

// parse reads the compose files in root and fills in b's Compose,
// Contexts, Secrets and Images.
func (b *Bundle) parse(root *os.Root, files []string) error {
	m := &composeModel{services: map[string]*service{}, secrets: map[string]*secret{}}
	for _, f := range files {
		rel, err := cleanRel(f)
		if err != nil {
			return fmt.Errorf("compose file %s: %v", f, err)
		}
		data, err := root.ReadFile(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("compose file %s does not exist in %s %s", rel, b.stackDir, b.where())
			}
			return fmt.Errorf("compose file %s %s: %v", path.Join(b.stackDir, rel), b.where(), err)
		}
		name := path.Join(b.stackDir, rel)
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return yamlError(name, err)
		}
		if err := m.add(name, &doc); err != nil {
			return err
		}
		b.Compose = append(b.Compose, rel)
	}
	return b.resolve(root, m)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError reports a YAML syntax error as file:line: message.
func yamlError(name string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}

func errAt(file string, n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", file, n.Line, fmt.Sprintf(format, args...))
}

// add merges one compose file into m.
func (m *composeModel) add(file string, doc *yaml.Node) error {
	if doc.Kind == 0 {
		return nil // empty file
	}
	top := deref(doc)
	if top.Kind == yaml.DocumentNode {
		if len(top.Content) == 0 {
			return nil
		}
		top = deref(top.Content[0])
	}
	if isNull(top) {
		return nil
	}
	if top.Kind != yaml.MappingNode {
		return errAt(file, top, "a compose file is a mapping (services:, secrets:, ...), not %s", kind(top))
	}
	for _, kv := range entries(top) {
		k, v := kv[0].Value, kv[1]
		switch k {
		case "services":
			if err := m.addServices(file, v); err != nil {
				return err
			}
		case "secrets":
			if err := m.addSecrets(file, v); err != nil {
				return err
			}
		case "configs":
			if err := m.addConfigs(file, v); err != nil {
				return err
			}
		case "include":
			return errAt(file, kv[0], "include: is not supported by fleet: list every compose file in stack.compose instead")
		}
	}
	return nil
}

func (m *composeModel) addServices(file string, n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "services: expected a mapping of service names, got %s", kind(n))
	}
	for _, kv := range entries(n) {
		name, sn := kv[0].Value, kv[1]
		where := "services." + name
		s := m.services[name]
		if s == nil {
			s = &service{extra: map[string]pos{}}
			m.services[name] = s
		}
		if isNull(sn) {
			continue
		}
		if sn.Kind != yaml.MappingNode {
			return errAt(file, sn, "%s: expected a mapping, got %s", where, kind(sn))
		}
		for _, kv := range entries(sn) {
			k, v := kv[0].Value, kv[1]
			reset := v.Tag == "!reset"
			switch k {
			case "build":
				if reset || isNull(v) {
					*s = service{extra: map[string]pos{}, image: s.image}
					continue
				}
				if err := s.addBuild(file, where+".build", v); err != nil {
					return err
				}
			case "image":
				if reset || isNull(v) {
					s.image = ""
					continue
				}
				if v.Kind != yaml.ScalarNode {
					return errAt(file, v, "%s.image: expected an image name, got %s", where, kind(v))
				}
				s.image = v.Value
			case "env_file":
				refs, err := envFiles(file, where+".env_file", v)
				if err != nil {
					return err
				}
				m.files = append(m.files, refs...)
			case "secrets":
				uses, err := secretUses(file, where+".secrets", v)
				if err != nil {
					return err
				}
				m.uses = append(m.uses, uses...)
			case "extends":
				if v.Kind == yaml.MappingNode {
					if f := get(v, "file"); f != nil {
						return errAt(file, f, "%s.extends.file is not supported by fleet: list every compose file in stack.compose instead", where)
					}
				}
			}
		}
	}
	return nil
}

func (s *service) addBuild(file, where string, v *yaml.Node) error {
	s.build = true
	if s.context.value == "" {
		s.context = pos{file, v.Line, "."}
	}
	switch v.Kind {
	case yaml.ScalarNode:
		s.context = pos{file, v.Line, v.Value}
		return nil
	case yaml.MappingNode:
	default:
		return errAt(file, v, "%s: expected a context path or a mapping, got %s", where, kind(v))
	}
	for _, kv := range entries(v) {
		k, x := kv[0].Value, kv[1]
		switch k {
		case "context", "dockerfile":
			if x.Kind != yaml.ScalarNode {
				return errAt(file, x, "%s.%s: expected a path, got %s", where, k, kind(x))
			}
			p := pos{file, x.Line, x.Value}
			if k == "context" {
				if isNull(x) {
					p.value = "."
				}
				s.context = p
			} else {
				s.dockerfil = p
			}
		case "additional_contexts":
			switch x.Kind {
			case yaml.MappingNode:
				for _, kv := range entries(x) {
					s.extra[kv[0].Value] = pos{file, kv[1].Line, kv[1].Value}
				}
			case yaml.SequenceNode:
				for _, e := range x.Content {
					name, val, _ := strings.Cut(deref(e).Value, "=")
					s.extra[name] = pos{file, e.Line, val}
				}
			default:
				return errAt(file, x, "%s.additional_contexts: expected a mapping, got %s", where, kind(x))
			}
		}
	}
	return nil
}

func envFiles(file, where string, v *yaml.Node) ([]ref, error) {
	switch {
	case isNull(v):
		return nil, nil
	case v.Kind == yaml.ScalarNode:
		return []ref{{pos{file, v.Line, v.Value}, where}}, nil
	case v.Kind != yaml.SequenceNode:
		return nil, errAt(file, v, "%s: expected a path or a list, got %s", where, kind(v))
	}
	var refs []ref
	for _, e := range v.Content {
		e = deref(e)
		switch e.Kind {
		case yaml.ScalarNode:
			refs = append(refs, ref{pos{file, e.Line, e.Value}, where})
		case yaml.MappingNode:
			p := get(e, "path")
			if p == nil {
				return nil, errAt(file, e, "%s: an entry needs a path", where)
			}
			if r := get(e, "required"); r != nil && (r.Value == "false" || r.Value == "False" || r.Value == "no") {
				continue // compose skips it when it is missing
			}
			refs = append(refs, ref{pos{file, p.Line, p.Value}, where})
		default:
			return nil, errAt(file, e, "%s: expected a path, got %s", where, kind(e))
		}
	}
	return refs, nil
}

func secretUses(file, where string, v *yaml.Node) ([]pos, error) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, errAt(file, v, "%s: expected a list of secret names, got %s", where, kind(v))
	}
	var uses []pos
	for _, e := range v.Content {
		e = deref(e)
		switch e.Kind {
		case yaml.ScalarNode:
			uses = append(uses, pos{file, e.Line, e.Value})
		case yaml.MappingNode:
			src := get(e, "source")
			if src == nil {
				return nil, errAt(file, e, "%s: an entry needs a source", where)
			}
			uses = append(uses, pos{file, src.Line, src.Value})
		default:
			return nil, errAt(file, e, "%s: expected a secret name, got %s", where, kind(e))
		}
	}
	return uses, nil
}

func (m *composeModel) addSecrets(file string, n *yaml.Node) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return errAt(file, n, "secrets: expected a mapping of secret names, got %s", kind(n))
	}
	for _, kv := range entries(n) {
		name, v := kv[0].Value, kv[1]
		if !secretNameRE.MatchString(name) {
			return errAt(file, kv[0], "secrets: %q is not a secret name fleet can deliver (letters, digits, '_', '.' and '-', starting with a letter or digit)", name)
		}
		s := m.secrets[name]
		if s == nil {
			s = &secret{}
			m.secrets[name] = s
		}
		s.def = pos{file, kv[0].Line, name}
		if isNull(v) {
			continue
		}
		if v.Kind != yaml.MappingNode {
			return errAt(file, v, "secrets.%s: expected a mapping (file: or environment:), got %s", name, kind(v))
		}
		for _, kv := range entries(v) {
			switch kv[0].Value {
			case "file", "environment":
				s.content = true
			case "external":
				if kv[1].Value == "true" {
					s.content = false
				}
			}
		}
	}
	return nil
}

func (m *composeModel) addConfigs(file string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for _, kv := range entries(n) {
		if v := kv[1]; v.Kind == yaml.MappingNode {
			if f := get(v, "file"); f != nil && f.Kind == yaml.ScalarNode {
				m.files = append(m.files, ref{pos{file, f.Line, f.Value}, "configs." + kv[0].Value + ".file"})
			}
		}
	}
	return nil
}

// resolve turns the merged model into b's Contexts, Secrets and Images,
// checking what the droplet would trip over.
func (b *Bundle) resolve(root *os.Root, m *composeModel) error {
	project := path.Dir(b.Compose[0]) // relative paths resolve against it, in every file

	names := make([]string, 0, len(m.services))
	for name := range m.services {
		names = append(names, name)
	}
	slices.Sort(names)
	contexts := map[string]bool{}
	images := map[string]bool{}
	for _, name := range names {
		s := m.services[name]
		if s.image != "" {
			images[s.image] = true
		}
		if !s.build {
			continue
		}
		where := "services." + name + ".build"
		c := s.context
		if remote(c.value) {
			continue
		}
		dir, err := b.localDir(root, project, c, where+".context")
		if err != nil {
			return err
		}
		contexts[dir] = true
		if df := s.dockerfil; df.value != "" {
			if strings.Contains(df.value, "$") || path.IsAbs(df.value) {
				return fmt.Errorf("%s: %s.dockerfile: %q must be a literal path inside the build context", df.at(), where, df.value)
			}
			if !under(dir, path.Join(dir, df.value)) {
				return fmt.Errorf("%s: %s.dockerfile: %s is outside the build context %s; fleet ships only build contexts", df.at(), where, df.value, c.value)
			}
		}
		extra := make([]string, 0, len(s.extra))
		for k := range s.extra {
			extra = append(extra, k)
		}
		slices.Sort(extra)
		for _, k := range extra {
			p := s.extra[k]
			if remote(p.value) || strings.HasPrefix(p.value, "service:") || strings.HasPrefix(p.value, "target:") {
				continue
			}
			dir, err := b.localDir(root, project, p, where+".additional_contexts."+k)
			if err != nil {
				return err
			}
			contexts[dir] = true
		}
	}
	b.Contexts = sortedKeys(contexts)
	b.Images = sortedKeys(images)

	for _, u := range m.uses {
		if _, ok := m.secrets[u.value]; !ok {
			return fmt.Errorf("%s: secret %q is not defined in the top-level secrets: of the compose files", u.at(), u.value)
		}
	}
	for name, s := range m.secrets {
		if s.content {
			b.Secrets = append(b.Secrets, name)
		}
	}
	slices.Sort(b.Secrets)

	for _, r := range m.files {
		if strings.Contains(r.value, "$") {
			return fmt.Errorf("%s: %s: %q: fleet needs a literal path here, to ship the file", r.at(), r.what, r.value)
		}
		if path.IsAbs(r.value) {
			return fmt.Errorf("%s: %s: %s is an absolute path; fleet ships only the stack's compose files and build contexts", r.at(), r.what, r.value)
		}
		p := path.Join(project, r.value)
		if !b.shipped(p) {
			return fmt.Errorf("%s: %s: %s is not shipped to the droplet: fleet ships only the compose files and the build contexts (%s); move it into a build context", r.at(), r.what, r.value, strings.Join(b.Contexts, ", "))
		}
	}
	return nil
}

// localDir resolves a local build context against the project directory
// and checks that it is a directory of the stack.
func (b *Bundle) localDir(root *os.Root, project string, c pos, where string) (string, error) {
	v := c.value
	if strings.Contains(v, "$") {
		return "", fmt.Errorf("%s: %s: %q: fleet needs a literal path (no variables) to know what to ship", c.at(), where, v)
	}
	if path.IsAbs(v) {
		return "", fmt.Errorf("%s: %s: %s is an absolute path; build contexts must lie inside the stack dir %s", c.at(), where, v, b.stackDir)
	}
	dir := path.Join(project, v)
	if dir == ".." || strings.HasPrefix(dir, "../") {
		return "", fmt.Errorf("%s: %s: %s is outside the stack dir %s", c.at(), where, v, b.stackDir)
	}
	fi, err := root.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%s: %s: %s does not exist in %s %s", c.at(), where, v, b.stackDir, b.where())
	case err != nil:
		return "", fmt.Errorf("%s: %s: %v", c.at(), where, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%s: %s: %s is not a directory (a build context must be a real directory, not a symlink)", c.at(), where, v)
	}
	// No symlinks above it either: the tar holds the tree as it is.
	for d := path.Dir(dir); d != "."; d = path.Dir(d) {
		if fi, err := root.Lstat(d); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%s: %s: %s lies under a symlink (%s)", c.at(), where, v, d)
		}
	}
	return dir, nil
}

// shipped says whether the file p (relative to Root) is in the tar.
func (b *Bundle) shipped(p string) bool {
	if slices.Contains(b.Compose, p) {
		return true
	}
	for _, c := range b.Contexts {
		if under(c, p) {
			return true
		}
	}
	return false
}

// under says whether the clean relative path p is dir or lies under it.
func under(dir, p string) bool {
	if dir == "." {
		return p != ".." && !strings.HasPrefix(p, "../")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// remote says whether a build context is a URL (a git repository or a
// tarball) rather than a directory.
func remote(v string) bool {
	return strings.Contains(v, "://") || strings.HasPrefix(v, "git@") || strings.HasPrefix(v, "github.com/")
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// entries are a mapping's key/value pairs with aliases resolved and merge
// keys (<<) applied: explicit keys win over merged ones, earlier merged
// mappings over later ones.
func entries(n *yaml.Node) [][2]*yaml.Node {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var merged, own [][2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" || k.Value == "<<" && k.Style == 0 {
			v = deref(v)
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, s := range srcs {
				merged = append(merged, entries(s)...)
			}
			continue
		}
		own = append(own, [2]*yaml.Node{k, deref(v)})
	}
	seen := map[string]bool{}
	var out [][2]*yaml.Node
	for _, kv := range own {
		seen[kv[0].Value] = true
		out = append(out, kv)
	}
	for _, kv := range merged {
		if !seen[kv[0].Value] {
			seen[kv[0].Value] = true
			out = append(out, kv)
		}
	}
	return out
}

func get(n *yaml.Node, key string) *yaml.Node {
	for _, kv := range entries(n) {
		if kv[0].Value == key {
			return kv[1]
		}
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}
