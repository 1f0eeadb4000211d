package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	yaml4 "go.yaml.in/yaml/v4"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/cloudinit"
	"github.com/fleetdeploy/fleet/internal/inputfile"
)

// Defaults and limits of droplets.yaml.
const (
	DefaultProvider   = ProviderDigitalOcean
	DefaultReservedIP = "auto"
	DefaultKeep       = 2
	MaxKeep           = 20
	MaxProjectLen     = 20
	MaxTagLen         = 255 // DigitalOcean's limit
	MaxTimeout        = time.Hour

	ProviderDigitalOcean = "digitalocean"
	ProviderLocal        = "local"

	// SampleVersion is the version Load renders the cloud-init template
	// with, to check that it executes and fits in MaxUserData: as long as
	// a version may be, so a template that grows with the version fits
	// every release.
	SampleVersion = "v0.0.0-sample.longest.version.32"

	// Caps on the files the spec reads or names.
	MaxSpecSize        = 256 << 10 // droplets.yaml
	MaxKeyFileSize     = 16 << 10  // a public key file (an RSA-16384 key is 3 KiB)
	MaxSecretsFileSize = 1 << 20   // stack.secrets.file

	// maxErrors is how many problems Load reports; the rest are counted.
	maxErrors = 100
)

var (
	projectRE     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	slugRE        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	tagRE         = regexp.MustCompile(`^[A-Za-z0-9_:-]+$`)
	digitsRE      = regexp.MustCompile(`^[0-9]+$`)
	fingerprintRE = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){15}$`)
	hexColonRE    = regexp.MustCompile(`^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{0,2})+$`)
	yamlErrRE     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	uuidRE        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Load reads the spec at path, decodes it strictly (unknown keys, duplicate
// keys and values of the wrong kind are errors), applies defaults and
// validates it, including rendering the cloud-init template once the way
// `fleet up` will (SampleVersion; with a stack, .Stack and a host key).
// On failure it returns nil and an *Errors holding every problem found
// (up to 100, then a count), in file order, each at its position in path.
//
// path and every file the spec names must be regular files (a FIFO or a
// device is an error, never read) within the caps above.
func Load(path string) (*Spec, error) {
	l := &loader{file: path, dir: filepath.Dir(path)}
	return l.result(l.load())
}

// loadData is Load of a spec whose contents are data (for the fuzzer).
func loadData(path string, data []byte) (*Spec, error) {
	l := &loader{file: path, dir: filepath.Dir(path)}
	return l.result(l.decode(data))
}

func (l *loader) result(s *Spec) (*Spec, error) {
	if len(l.errs) == 0 {
		return s, nil
	}
	l.errs.sort()
	if n := len(l.errs); n > maxErrors {
		next := l.errs[maxErrors]
		l.errs = append(l.errs[:maxErrors], Error{File: l.file, Line: next.Line, Col: next.Col, Msg: fmt.Sprintf("%d more problems from here on, not shown", n-maxErrors), Omitted: n - maxErrors})
	}
	return nil, &l.errs
}

type loader struct {
	file string
	dir  string
	errs Errors
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	l.errs = append(l.errs, Error{File: l.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) load() *Spec {
	data, err := inputfile.Read(l.file, MaxSpecSize)
	if err != nil {
		var ie *inputfile.Error
		msg := "cannot read the spec: " + reason(err)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			msg = "spec file does not exist"
			if abs, err := filepath.Abs(l.file); err == nil && abs != l.file {
				msg += " (looked for " + abs + ")"
			}
		case errors.As(err, &ie) && ie.Mode.IsDir():
			msg = "is a directory; name the spec file"
		case errors.As(err, &ie):
			msg = ie.Reason()
		}
		l.errs = append(l.errs, Error{File: l.file, Msg: msg})
		return nil
	}
	return l.decode(data)
}

// reason is err without the path an *fs.PathError repeats.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (l *loader) decode(data []byte) *Spec {
	root := l.parse(data)
	if root == nil {
		return nil
	}
	s := &Spec{
		Path:       l.file,
		Dir:        l.dir,
		Provider:   DefaultProvider,
		ReservedIP: DefaultReservedIP,
		Keep:       DefaultKeep,
		Timeouts:   DefaultTimeouts,
	}
	f := l.mapping("", root, "project", "provider", "droplet", "reserved_ip", "keep", "timeouts", "stack", "health")
	if f == nil {
		return s
	}
	if n, ok := f.required("project", "a slug like blog"); ok {
		s.Project = l.project(n)
	}
	if n, ok := f.optional("provider"); ok {
		s.Provider = l.provider(n)
	}
	if n, ok := f.optional("reserved_ip"); ok {
		s.ReservedIP = l.reservedIP(n)
	}
	if n, ok := f.optional("keep"); ok {
		s.Keep = l.keep(n)
	}
	if n, ok := f.optional("timeouts"); ok {
		s.Timeouts = l.timeouts(n)
	}
	if n, ok := f.optional("stack"); ok {
		s.Stack = l.stack(n)
	}
	l.topHealth(s, f)
	if n, ok := f.required("droplet", "a mapping with region, size, image, ssh_keys and cloud_init"); ok {
		s.Droplet = l.droplet(n, s.Project, s.Stack != nil)
	}
	return s
}

// parse decodes data into a single YAML document and returns its root node,
// or nil after recording why it could not.
func (l *loader) parse(data []byte) *yaml.Node {
	if e := l.checkText(data); e != nil {
		l.errs = append(l.errs, *e)
		return nil
	}
	const empty = "spec is empty; it needs at least project and droplet"
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			l.errs = append(l.errs, Error{File: l.file, Line: 1, Msg: empty})
		} else {
			l.yamlError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		l.errorf(&next, "a second YAML document; a spec is a single document (remove the '---')")
		return nil
	case err != io.EOF:
		l.yamlError(data, err)
		return nil
	}
	if len(doc.Content) != 1 {
		l.errs = append(l.errs, Error{File: l.file, Line: 1, Msg: empty})
		return nil
	}
	return doc.Content[0]
}

// checkText finds what yaml.v3's reader refuses without saying where:
// text that is not UTF-8, and control characters. YAML allows tab, LF, CR,
// NEL and the printable rest of Unicode.
func (l *loader) checkText(data []byte) *Error {
	if bytes.HasPrefix(data, []byte("\xff\xfe")) || bytes.HasPrefix(data, []byte("\xfe\xff")) {
		return &Error{File: l.file, Line: 1, Col: 1, Msg: "invalid YAML: the spec is UTF-16; save it as UTF-8"}
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return &Error{File: l.file, Line: line, Col: col, Msg: "invalid YAML: invalid UTF-8 (the spec must be UTF-8 text)"}
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r' || r == 0x85 || r == 0xFEFF:
		case r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) || r == 0xFFFE || r == 0xFFFF:
			return &Error{File: l.file, Line: line, Col: col, Msg: fmt.Sprintf("invalid YAML: control character %U (only tab, newline and carriage return are allowed)", r)}
		}
		i += size
		col++
	}
	return nil
}

// yamlError records a syntax error. yaml.v3 gives no column, no line on
// line 1, and a line off by one for some parser errors; go.yaml.in/yaml/v4
// (the same parser, maintained) reports exact marks, so it is asked where.
func (l *loader) yamlError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := Error{File: l.file, Line: 1}
	if m := yamlErrRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if le := locate(data); le != nil && le.Mark.Line > 0 {
		e.Line, e.Col, msg = le.Mark.Line, le.Mark.Column, le.Message
	}
	e.Msg = "invalid YAML: " + clipMsg(msg)
	l.errs = append(l.errs, e)
}

// locate decodes data with yaml v4, every document, and returns its first
// load error, if any.
func locate(data []byte) (le *yaml4.LoadError) {
	defer func() {
		if recover() != nil { // its errors are for positions only
			le = nil
		}
	}()
	dec := yaml4.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml4.Node
		err := dec.Decode(&n)
		if err == nil {
			continue
		}
		errors.As(err, &le)
		return le
	}
}

// fields is a decoded mapping: its known keys, first occurrence each.
type fields struct {
	l      *loader
	path   string // "" for the top level, else e.g. "droplet"
	node   *yaml.Node
	keys   map[string]*yaml.Node
	values map[string]*yaml.Node
}

// mapping checks that n is a mapping whose keys are all in known, each once,
// and returns them; it returns nil (after recording why) if n is no mapping.
func (l *loader) mapping(path string, n *yaml.Node, known ...string) *fields {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "%sexpected a mapping of %s, got %s", prefix(path), strings.Join(known, ", "), describe(n))
		return nil
	}
	f := &fields{l: l, path: path, node: n, keys: map[string]*yaml.Node{}, values: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.errorf(k, "%skeys must be plain names, got %s", prefix(path), describe(k))
			continue
		}
		name := k.Value
		if first, dup := f.keys[name]; dup {
			l.errorf(k, "%s: duplicate key; it is already set at line %d", join(path, clip(name)), first.Line)
			continue
		}
		if !slices.Contains(known, name) {
			msg := fmt.Sprintf("%s: unknown key", join(path, clip(name)))
			if name == "<<" {
				msg = fmt.Sprintf("%smerge keys (<<) are not supported", prefix(path))
			} else if s := suggest(name, known); s != "" && len(name) <= maxQuoted {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			l.errorf(k, "%s (allowed: %s)", msg, strings.Join(known, ", "))
			continue
		}
		f.keys[name] = k
		f.values[name] = deref(v)
	}
	return f
}

// required returns the value of key, recording an error at the mapping if
// it is missing; what describes the value wanted.
func (f *fields) required(key, what string) (*yaml.Node, bool) {
	n, ok := f.values[key]
	if !ok {
		f.l.errorf(f.node, "%smissing required key %q (%s)", prefix(f.path), key, what)
	}
	return n, ok
}

func (f *fields) optional(key string) (*yaml.Node, bool) {
	n, ok := f.values[key]
	return n, ok
}

func (l *loader) droplet(n *yaml.Node, project string, stack bool) Droplet {
	var d Droplet
	f := l.mapping("droplet", n, "region", "size", "image", "base_image", "ssh_keys", "tags", "cloud_init",
		"monitoring", "ipv6", "backups", "vpc_uuid")
	if f == nil {
		return d
	}
	if n, ok := f.required("region", "a DigitalOcean region slug like nyc3"); ok {
		d.Region = l.slug("droplet.region", n, "nyc3")
	}
	if n, ok := f.required("size", "a DigitalOcean size slug like s-1vcpu-1gb"); ok {
		d.Size = l.slug("droplet.size", n, "s-1vcpu-1gb")
	}
	if n, ok := f.required("image", imageWant); ok {
		d.Image = l.image(n)
	}
	switch n, ok := f.optional("base_image"); {
	case ok:
		d.BaseImage = l.slug("droplet.base_image", n, DefaultBaseImage)
	case d.Image == ImageBake:
		d.BaseImage = DefaultBaseImage
	default:
		d.BaseImage = d.Image
	}
	if n, ok := f.required("ssh_keys", "a list of public key files or MD5 fingerprints"); ok {
		d.SSHKeys = l.sshKeys(n)
	}
	if n, ok := f.optional("tags"); ok {
		d.Tags = l.tags(n)
	}
	if n, ok := f.required("cloud_init", "the path of a cloud-init template like cloud-init/droplet.yaml"); ok {
		d.CloudInit = l.cloudInit(n, project, stack)
	}
	for _, o := range []struct {
		key string
		dst **bool
	}{{"monitoring", &d.Monitoring}, {"ipv6", &d.IPv6}, {"backups", &d.Backups}} {
		if n, ok := f.optional(o.key); ok {
			*o.dst = l.boolean("droplet."+o.key, n)
		}
	}
	if n, ok := f.optional("vpc_uuid"); ok {
		d.VPCUUID = l.vpcUUID(n)
	}
	return d
}

// boolean is a YAML true or false; anything else (yes, "true", 1) is an
// error, since yaml.v3 reads only those two as booleans.
func (l *loader) boolean(path string, n *yaml.Node) *bool {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		l.errorf(n, "%s: expected true or false, got %s", path, describe(n))
		return nil
	}
	return &b
}

// vpcUUID is droplet.vpc_uuid: a VPC's ID as DigitalOcean gives it
// (`doctl vpcs list`), lowercase hex in the 8-4-4-4-12 form.
func (l *loader) vpcUUID(n *yaml.Node) string {
	const want = "a VPC's UUID like 760e09ef-dc84-11e8-981e-3cfdfeaae000 (doctl vpcs list)"
	v := l.str("droplet.vpc_uuid", n, want)
	if v != "" && !uuidRE.MatchString(v) {
		l.errorf(n, "droplet.vpc_uuid: %s is not a UUID (expected %s)", quote(v), want)
		return ""
	}
	return strings.ToLower(v)
}

// str returns the text of a scalar, recording an error (and returning "")
// if n is not a scalar or is empty; want describes the value wanted.
func (l *loader) str(path string, n *yaml.Node, want string) string {
	switch {
	case n.Kind != yaml.ScalarNode:
		l.errorf(n, "%s: expected %s, got %s", path, want, describe(n))
	case n.Tag == "!!null" || n.Value == "":
		l.errorf(n, "%s: is empty; expected %s", path, want)
	default:
		return n.Value
	}
	return ""
}

func (l *loader) project(n *yaml.Node) string {
	v := l.str("project", n, "a slug like blog")
	switch {
	case v == "":
	case len(v) > MaxProjectLen:
		l.errorf(n, "project: %s is %d characters; at most %d are allowed (droplet names are <project>-<version>-<suffix> and must fit a 63-character hostname)", quote(v), len(v), MaxProjectLen)
	case !projectRE.MatchString(v):
		l.errorf(n, "project: %s is not a valid project name (allowed: a-z 0-9 -, starting with a letter, e.g. blog)", quote(v))
	case strings.HasSuffix(v, "-"):
		l.errorf(n, "project: %s must not end with '-'", quote(v))
	default:
		return v
	}
	return ""
}

func (l *loader) provider(n *yaml.Node) string {
	want := fmt.Sprintf("%s or %s", ProviderDigitalOcean, ProviderLocal)
	v := l.str("provider", n, want)
	if v != "" && v != ProviderDigitalOcean && v != ProviderLocal {
		l.errorf(n, "provider: %s is not a provider fleet knows (allowed: %s)", quote(v), want)
	}
	return v
}

func (l *loader) slug(path string, n *yaml.Node, example string) string {
	want := "a DigitalOcean slug like " + example
	v := l.str(path, n, want)
	if v != "" && !slugRE.MatchString(v) {
		l.errorf(n, "%s: %s is not a DigitalOcean slug (allowed: a-z 0-9 -, starting with a letter or digit, e.g. %s)", path, quote(v), example)
	}
	return v
}

const imageWant = "a DigitalOcean image slug like debian-13-x64, bake, or the name of a snapshot"

// image is droplet.image: a slug, bake, or a snapshot's name. Names are
// free text on DigitalOcean; fleet takes printable ones without leading
// or trailing blanks, and not all digits (an ID changes with every bake).
func (l *loader) image(n *yaml.Node) string {
	v := l.str("droplet.image", n, imageWant)
	switch {
	case v == "" || v == ImageBake || slugRE.MatchString(v) && !digitsRE.MatchString(v):
	case len(v) > MaxImageNameLen:
		l.errorf(n, "droplet.image: the name is %d characters; DigitalOcean allows at most %d", len(v), MaxImageNameLen)
	case digitsRE.MatchString(v):
		l.errorf(n, "droplet.image: %s is an image ID; name the snapshot instead (an ID changes with every bake), or use bake", quote(v))
	case strings.TrimSpace(v) != v:
		l.errorf(n, "droplet.image: %s begins or ends with a blank", quote(v))
	case strings.HasPrefix(v, "-"):
		l.errorf(n, "droplet.image: %s is not a DigitalOcean slug or snapshot name (it begins with '-')", quote(v))
	}
	return v
}

func (l *loader) reservedIP(n *yaml.Node) string {
	const want = `"auto" or an IPv4 address like 203.0.113.10`
	v := l.str("reserved_ip", n, want)
	if v == "" || v == "auto" {
		return v
	}
	ip, err := netip.ParseAddr(v)
	if err != nil || !ip.Is4() || ip.IsUnspecified() {
		l.errorf(n, "reserved_ip: %s is not an IPv4 address (allowed: %s)", quote(v), want)
	}
	return v
}

func (l *loader) keep(n *yaml.Node) int {
	want := fmt.Sprintf("a whole number from 0 to %d (default %d)", MaxKeep, DefaultKeep)
	var k int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&k) != nil {
		l.errorf(n, "keep: expected %s, got %s", want, describe(n))
		return DefaultKeep
	}
	if k < 0 || k > MaxKeep {
		l.errorf(n, "keep: %d is out of range (allowed: %s)", k, want)
	}
	return k
}

func (l *loader) timeouts(n *yaml.Node) Timeouts {
	t := DefaultTimeouts
	f := l.mapping("timeouts", n, "create", "active", "assign", "ssh", "snapshot")
	if f == nil {
		return t
	}
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{{"create", &t.Create}, {"active", &t.Active}, {"assign", &t.Assign}, {"ssh", &t.SSH}, {"snapshot", &t.Snapshot}} {
		if n, ok := f.optional(d.key); ok {
			*d.dst = l.duration("timeouts."+d.key, n)
		}
	}
	return t
}

func (l *loader) duration(path string, n *yaml.Node) time.Duration {
	const want = `a duration like "90s" or "5m"`
	v := l.str(path, n, want)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil && n.Tag == "!!int":
		l.errorf(n, "%s: %s has no unit; write %s or %s", path, clip(v), quote(v+"s"), quote(v+"m"))
	case err != nil:
		l.errorf(n, "%s: %s is not %s", path, quote(v), want)
	case d <= 0 || d > MaxTimeout:
		l.errorf(n, "%s: %s is out of range (allowed: more than 0, at most 1h)", path, clip(v))
	}
	return d
}

func (l *loader) tags(n *yaml.Node) []string {
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "droplet.tags: expected a list of tags like [web], got %s", describe(n))
		return nil
	}
	var tags []string
	seen := map[string]int{}
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("droplet.tags[%d]", i)
		v := l.str(path, item, "a tag like web")
		switch {
		case v == "":
			continue
		case len(v) > MaxTagLen:
			l.errorf(item, "%s: tag is %d characters; DigitalOcean allows at most %d", path, len(v), MaxTagLen)
		case !tagRE.MatchString(v):
			l.errorf(item, "%s: %s has characters DigitalOcean does not allow in tags (allowed: A-Z a-z 0-9 _ : -)", path, quote(v))
		case strings.HasPrefix(strings.ToLower(v), "fleet"):
			l.errorf(item, "%s: %s is reserved: tags beginning with \"fleet\" are the ones fleet sets itself", path, quote(v))
		default:
			if j, dup := seen[v]; dup {
				l.errorf(item, "%s: %s is already listed as droplet.tags[%d]", path, quote(v), j)
				continue
			}
			seen[v] = i
			tags = append(tags, v)
		}
	}
	return tags
}

func (l *loader) sshKeys(n *yaml.Node) []SSHKey {
	const hint = "list a public key file like ~/.ssh/id_ed25519.pub or an MD5 fingerprint (ssh-keygen -l -E md5 -f KEY.pub)"
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "droplet.ssh_keys: expected a list, got %s; %s", describe(n), hint)
		return nil
	}
	if len(n.Content) == 0 {
		l.errorf(n, "droplet.ssh_keys: at least one key is required; %s", hint)
		return nil
	}
	var keys []SSHKey
	seen := map[string]int{}
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("droplet.ssh_keys[%d]", i)
		v := l.str(path, item, "a public key file or an MD5 fingerprint")
		if v == "" {
			continue
		}
		k, err := l.sshKey(v)
		if err != nil {
			l.errorf(item, "%s: %v", path, err)
			continue
		}
		if j, dup := seen[k.Fingerprint]; dup {
			l.errorf(item, "%s: same key as droplet.ssh_keys[%d] (%s)", path, j, k.Fingerprint)
			continue
		}
		seen[k.Fingerprint] = i
		keys = append(keys, k)
	}
	return keys
}

func (l *loader) sshKey(v string) (SSHKey, error) {
	switch {
	case fingerprintRE.MatchString(v):
		return SSHKey{Fingerprint: strings.ToLower(v)}, nil
	case strings.HasPrefix(v, "SHA256:"):
		return SSHKey{}, fmt.Errorf("%s is a SHA256 fingerprint; DigitalOcean identifies keys by MD5 fingerprint (ssh-keygen -l -E md5 -f KEY.pub prints it)", quote(v))
	case hexColonRE.MatchString(v):
		return SSHKey{}, fmt.Errorf("%s is not an MD5 fingerprint (allowed: 16 pairs of hex digits separated by ':', like 3b:16:bf:...)", quote(v))
	}
	file, err := l.resolveHome(v)
	if err != nil {
		return SSHKey{}, err
	}
	data, err := inputfile.Read(file, MaxKeyFileSize)
	var ie *inputfile.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return SSHKey{}, fmt.Errorf("public key file %s does not exist (looked for %s); put your public key there, or list its MD5 fingerprint", quote(v), clip(file))
	case errors.As(err, &ie) && ie.Mode.IsDir():
		return SSHKey{}, fmt.Errorf("%s: is a directory; name a public key file", clip(v))
	case errors.As(err, &ie):
		return SSHKey{}, fmt.Errorf("%s: %s", clip(v), ie.Reason())
	case err != nil:
		return SSHKey{}, fmt.Errorf("cannot read public key file %s: %s", quote(v), reason(err))
	}
	pk, comment, _, rest, err := ssh.ParseAuthorizedKey(data)
	switch {
	case err != nil && bytes.Contains(data, []byte("PRIVATE KEY")):
		return SSHKey{}, fmt.Errorf("%s is a private key; list the public key (the .pub file) instead", quote(v))
	case err != nil:
		return SSHKey{}, fmt.Errorf("%s holds no public key in authorized_keys format (like \"ssh-ed25519 AAAA... you@host\")", quote(v))
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(rest); err == nil {
		return SSHKey{}, fmt.Errorf("%s holds more than one public key; list one file per key", quote(v))
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	name := comment
	if comment != "" {
		line += " " + comment
	} else {
		name = filepath.Base(file)
	}
	return SSHKey{
		Fingerprint: ssh.FingerprintLegacyMD5(pk),
		File:        file,
		PublicKey:   line,
		Name:        name,
	}, nil
}

// resolveHome expands a leading ~ and resolves p against the spec's directory.
func (l *loader) resolveHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot expand ~ in %s: %v", quote(p), err)
		}
		return filepath.Join(home, p[1:]), nil
	}
	return l.resolve(p), nil
}

func (l *loader) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

// cloudInit checks the template by rendering it as `fleet up` would:
// with the longest version, and for a stack with .Stack set and a host key
// injected (it adds some 600 bytes).
func (l *loader) cloudInit(n *yaml.Node, project string, stack bool) string {
	const path = "droplet.cloud_init"
	v := l.str(path, n, "the path of a cloud-init template like cloud-init/droplet.yaml")
	if v == "" {
		return ""
	}
	file := l.resolve(v)
	err := inputfile.Check(file, cloudinit.MaxTemplateSize)
	var ie *inputfile.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		l.errorf(n, "%s: template %s does not exist (looked for %s)", path, quote(v), clip(file))
		return file
	case errors.As(err, &ie) && ie.Mode.IsDir():
		l.errorf(n, "%s: %s is a directory; name the template file", path, quote(v))
		return file
	case errors.As(err, &ie):
		l.errorf(n, "%s: %s: %s", path, clip(v), ie.Reason())
		return file
	case err != nil:
		l.errorf(n, "%s: %s: %s", path, clip(v), reason(err))
		return file
	}
	if project == "" {
		project = "project" // invalid, reported elsewhere; still check the template
	}
	data := cloudinit.Data{
		Project:     project,
		Version:     SampleVersion,
		DropletName: DropletName(project, SampleVersion, "sample"),
		DeployID:    "sample",
		Stack:       stack,
	}
	// Every up injects a host key (its readiness gate logs in).
	if data.HostKey, err = cloudinit.NewHostKey(); err != nil {
		l.errorf(n, "%s: %v", path, err)
		return file
	}
	as := "version " + SampleVersion + ", with its host key"
	if stack {
		as += " and the stack"
	}
	_, err = cloudinit.Render(file, data)
	var tooLarge *cloudinit.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		l.errorf(n, "%s: %s renders to more than %d bytes of user_data (64 KiB, DigitalOcean's limit), rendered as fleet up would (%s)", path, quote(v), cloudinit.MaxUserData, as)
	case err != nil:
		l.errorf(n, "%s: %v", path, err) // cloudinit bounds its messages
	}
	return file
}

// deref follows YAML aliases (*name) to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names what n is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return quote(n.Value)
	}
	return "something else"
}

func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the known key closest to name, if it is a likely typo.
func suggest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, name) || strings.ReplaceAll(k, "_", "-") == name {
			return k
		}
		if d := distance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
