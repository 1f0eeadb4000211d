package spec

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Fingerprints of testdata/keys/*.pub, as `ssh-keygen -l -E md5` prints them.
const (
	testFP      = "bd:c9:83:f7:47:63:ab:b7:00:a3:0e:d8:9d:c9:63:1a" // test.pub, comment fleet-test@example
	noCommentFP = "49:0c:69:23:e9:07:03:a8:fa:9d:d5:15:5f:c6:dc:1a" // nocomment.pub
)

const testTemplate = "#cloud-config\nwrite_files:\n  - path: /etc/fleet/release\n    content: |\n      {{.Project}} {{.Version}} {{.DropletName}} {{.DeployID}}\n"

// baseSpec is valid; cases change one line at a time so positions stay put.
const baseSpec = `project: blog
provider: digitalocean
droplet:
  region: nyc3
  size: s-1vcpu-1gb
  image: debian-13-x64
  ssh_keys:
    - keys/test.pub
  tags: [web, prod]
  cloud_init: cloud-init/droplet.yaml
reserved_ip: auto
keep: 2
timeouts:
  create: 90s
  active: 5m
  assign: 2m
`

// setup makes a spec directory holding files (spec droplets.yaml, the test
// keys under keys/, a cloud-init template) and changes into it.
func setup(t *testing.T, spec string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"droplets.yaml":           spec,
		"cloud-init/droplet.yaml": testTemplate,
	}
	for _, name := range []string{"test.pub", "nocomment.pub", "two.pub"} {
		b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		all["keys/"+name] = string(b)
	}
	for k, v := range files {
		all[k] = v
	}
	for name, content := range all {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
}

// errLines returns err's single errors as "line:col: message".
func errLines(t *testing.T, err error) []Error {
	t.Helper()
	if err == nil {
		return nil
	}
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want *spec.Errors: %v", err, err)
	}
	return *errs
}

func TestLoadValid(t *testing.T) {
	setup(t, baseSpec, nil)
	s, err := Load("droplets.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Path != "droplets.yaml" || s.Dir != "." {
		t.Errorf("Path, Dir = %q, %q", s.Path, s.Dir)
	}
	if s.Project != "blog" || s.Provider != "digitalocean" || s.ReservedIP != "auto" || s.Keep != 2 {
		t.Errorf("spec = %+v", s)
	}
	d := s.Droplet
	if d.Region != "nyc3" || d.Size != "s-1vcpu-1gb" || d.Image != "debian-13-x64" || d.BaseImage != "debian-13-x64" {
		t.Errorf("droplet = %+v", d)
	}
	if fmt.Sprint(d.Tags) != "[web prod]" {
		t.Errorf("tags = %q", d.Tags)
	}
	if d.CloudInit != filepath.Join("cloud-init", "droplet.yaml") {
		t.Errorf("cloud_init = %q", d.CloudInit)
	}
	if want := (Timeouts{Create: 90 * time.Second, Active: 5 * time.Minute, Assign: 2 * time.Minute, SSH: 10 * time.Minute, Snapshot: 30 * time.Minute}); s.Timeouts != want {
		t.Errorf("timeouts = %+v, want %+v", s.Timeouts, want)
	}
	if len(d.SSHKeys) != 1 {
		t.Fatalf("ssh keys = %+v", d.SSHKeys)
	}
	k := d.SSHKeys[0]
	pub, _ := os.ReadFile(filepath.Join("keys", "test.pub"))
	if k.Fingerprint != testFP || k.Name != "fleet-test@example" || k.File != filepath.Join("keys", "test.pub") ||
		k.PublicKey != strings.TrimSpace(string(pub)) {
		t.Errorf("ssh key = %+v", k)
	}
}

func TestLoadDefaults(t *testing.T) {
	setup(t, `project: blog
droplet:
  region: nyc3
  size: s-1vcpu-1gb
  image: debian-13-x64
  ssh_keys: [`+testFP+`]
  cloud_init: cloud-init/droplet.yaml
`, nil)
	s, err := Load("droplets.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Provider != DefaultProvider || s.ReservedIP != "auto" || s.Keep != DefaultKeep || s.Timeouts != DefaultTimeouts || s.Droplet.Tags != nil {
		t.Errorf("defaults not applied: %+v", s)
	}
	if want := (SSHKey{Fingerprint: testFP}); s.Droplet.SSHKeys[0] != want {
		t.Errorf("ssh key = %+v, want %+v", s.Droplet.SSHKeys[0], want)
	}
}

func TestLoadValues(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new string // replace old with new in baseSpec
		check    func(*Spec) bool
	}{
		{"local provider", "provider: digitalocean", "provider: local", func(s *Spec) bool { return s.Provider == "local" }},
		{"literal reserved ip", "reserved_ip: auto", "reserved_ip: 127.0.0.5", func(s *Spec) bool { return s.ReservedIP == "127.0.0.5" }},
		{"keep 0", "keep: 2", "keep: 0", func(s *Spec) bool { return s.Keep == 0 }},
		{"keep 20", "keep: 2", "keep: 20", func(s *Spec) bool { return s.Keep == 20 }},
		{"timeout 1h", "create: 90s", "create: 1h", func(s *Spec) bool { return s.Timeouts.Create == time.Hour }},
		{"some timeouts", "  active: 5m\n  assign: 2m\n", "", func(s *Spec) bool {
			return s.Timeouts.Create == 90*time.Second && s.Timeouts.Active == DefaultTimeouts.Active && s.Timeouts.Assign == DefaultTimeouts.Assign
		}},
		{"project with digits and dashes", "project: blog", "project: my-blog-2", func(s *Spec) bool { return s.Project == "my-blog-2" }},
		{"project 20 chars", "project: blog", "project: abcdefghijklmnopqrst", func(s *Spec) bool { return s.Project == "abcdefghijklmnopqrst" }},
		{"tags allowed chars", "tags: [web, prod]", "tags: [Web_1, 'env:prod', a-b]", func(s *Spec) bool { return fmt.Sprint(s.Droplet.Tags) == "[Web_1 env:prod a-b]" }},
		{"tag that is a yaml bool", "tags: [web, prod]", "tags: [true]", func(s *Spec) bool { return fmt.Sprint(s.Droplet.Tags) == "[true]" }},
		{"no tags", "  tags: [web, prod]\n", "", func(s *Spec) bool { return s.Droplet.Tags == nil }},
		{"uppercase fingerprint", "- keys/test.pub", "- " + strings.ToUpper(testFP), func(s *Spec) bool { return s.Droplet.SSHKeys[0].Fingerprint == testFP }},
		{"key without comment", "- keys/test.pub", "- keys/nocomment.pub", func(s *Spec) bool {
			k := s.Droplet.SSHKeys[0]
			return k.Fingerprint == noCommentFP && k.Name == "nocomment.pub" && strings.Count(k.PublicKey, " ") == 1
		}},
		{"two keys", "- keys/test.pub", "- keys/test.pub\n    - " + noCommentFP, func(s *Spec) bool { return len(s.Droplet.SSHKeys) == 2 }},
		{"image bake, default base", "image: debian-13-x64", "image: bake", func(s *Spec) bool {
			return s.Droplet.Image == ImageBake && s.Droplet.BaseImage == DefaultBaseImage
		}},
		{"image bake with a base", "image: debian-13-x64", "image: bake\n  base_image: ubuntu-24-04-x64", func(s *Spec) bool {
			return s.Droplet.Image == ImageBake && s.Droplet.BaseImage == "ubuntu-24-04-x64"
		}},
		{"image a slug is its own base", "image: debian-13-x64", "image: ubuntu-24-04-x64", func(s *Spec) bool { return s.Droplet.BaseImage == "ubuntu-24-04-x64" }},
		{"image a snapshot name", "image: debian-13-x64", "image: 'Blog base (2026-01-02)'", func(s *Spec) bool { return s.Droplet.Image == "Blog base (2026-01-02)" }},
		{"image a bake's name", "image: debian-13-x64", "image: fleet-blog-0123456789ab", func(s *Spec) bool { return s.Droplet.Image == "fleet-blog-0123456789ab" }},
		{"droplet options unset", "keep: 2", "keep: 2", func(s *Spec) bool {
			d := s.Droplet
			return d.Monitoring == nil && d.IPv6 == nil && d.Backups == nil && d.VPCUUID == ""
		}},
		{"droplet options", "cloud_init: cloud-init/droplet.yaml", "cloud_init: cloud-init/droplet.yaml\n  monitoring: false\n  ipv6: true\n  backups: false\n  vpc_uuid: 760E09EF-dc84-11e8-981e-3cfdfeaae000", func(s *Spec) bool {
			d := s.Droplet
			return d.Monitoring != nil && !*d.Monitoring && d.IPv6 != nil && *d.IPv6 && d.Backups != nil && !*d.Backups &&
				d.VPCUUID == "760e09ef-dc84-11e8-981e-3cfdfeaae000"
		}},
		{"snapshot timeout", "  assign: 2m\n", "  assign: 2m\n  snapshot: 45m\n", func(s *Spec) bool { return s.Timeouts.Snapshot == 45*time.Minute }},
		{"aliases", "  region: nyc3\n  size: s-1vcpu-1gb\n  image: debian-13-x64\n  ssh_keys:\n    - keys/test.pub\n  tags: [web, prod]",
			"  region: &r nyc3\n  size: s-1vcpu-1gb\n  image: debian-13-x64\n  ssh_keys: &k\n    - keys/test.pub\n  tags: [*r]", func(s *Spec) bool {
				return fmt.Sprint(s.Droplet.Tags) == "[nyc3]" && len(s.Droplet.SSHKeys) == 1
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t, mustReplace(t, baseSpec, tc.old, tc.new), nil)
			s, err := Load("droplets.yaml")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(s) {
				t.Errorf("unexpected spec: %+v", s)
			}
		})
	}
}

func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%q not in spec", old)
	}
	return strings.Replace(s, old, new, 1)
}

func TestLoadErrors(t *testing.T) {
	big := "#cloud-config\n# " + strings.Repeat("x", 70000) + "\n"
	for _, tc := range []struct {
		name     string
		old, new string            // replace old with new in baseSpec
		files    map[string]string // extra files in the spec's directory
		want     []string          // "line:col: substring of message", in order
	}{
		// project
		{name: "project missing", old: "project: blog\n", new: "", want: []string{`1:1: missing required key "project"`}},
		{name: "project empty", old: "project: blog", new: "project:", want: []string{`1:9: project: is empty`}},
		{name: "project uppercase", old: "project: blog", new: "project: Blog", want: []string{`1:10: project: "Blog" is not a valid project name (allowed: a-z 0-9 -, starting with a letter`}},
		{name: "project starts with digit", old: "project: blog", new: "project: 1blog", want: []string{`1:10: project: "1blog" is not a valid`}},
		{name: "project trailing dash", old: "project: blog", new: "project: blog-", want: []string{`1:10: project: "blog-" must not end with '-'`}},
		{name: "project too long", old: "project: blog", new: "project: abcdefghijklmnopqrstu", want: []string{`1:10: project: "abcdefghijklmnopqrstu" is 21 characters; at most 20`}},
		{name: "project a list", old: "project: blog", new: "project: [blog]", want: []string{`1:10: project: expected a slug like blog, got a list`}},
		// provider
		{name: "provider unknown", old: "provider: digitalocean", new: "provider: aws", want: []string{`2:11: provider: "aws" is not a provider fleet knows (allowed: digitalocean or local)`}},
		// droplet
		{name: "droplet missing", old: "droplet:", new: "other:", want: []string{`1:1: missing required key "droplet"`, `3:1: other: unknown key`}},
		{name: "droplet null", old: "droplet:\n  region: nyc3\n  size: s-1vcpu-1gb\n  image: debian-13-x64\n  ssh_keys:\n    - keys/test.pub\n  tags: [web, prod]\n  cloud_init: cloud-init/droplet.yaml\n", new: "droplet:\n", want: []string{`3:9: droplet: expected a mapping of region, size, image, base_image, ssh_keys, tags, cloud_init, monitoring, ipv6, backups, vpc_uuid, got nothing`}},
		{name: "region missing", old: "  region: nyc3\n", new: "", want: []string{`4:3: droplet: missing required key "region" (a DigitalOcean region slug like nyc3)`}},
		{name: "size missing", old: "  size: s-1vcpu-1gb\n", new: "", want: []string{`4:3: droplet: missing required key "size"`}},
		{name: "image missing", old: "  image: debian-13-x64\n", new: "", want: []string{`4:3: droplet: missing required key "image"`}},
		{name: "ssh_keys missing", old: "  ssh_keys:\n    - keys/test.pub\n", new: "", want: []string{`4:3: droplet: missing required key "ssh_keys"`}},
		{name: "cloud_init missing", old: "  cloud_init: cloud-init/droplet.yaml\n", new: "", want: []string{`4:3: droplet: missing required key "cloud_init"`}},
		{name: "region not a slug", old: "region: nyc3", new: "region: NYC 3", want: []string{`4:11: droplet.region: "NYC 3" is not a DigitalOcean slug (allowed: a-z 0-9 -`}},
		{name: "size not a slug", old: "size: s-1vcpu-1gb", new: "size: s_1vcpu", want: []string{`5:9: droplet.size: "s_1vcpu" is not a DigitalOcean slug`}},
		{name: "image not a slug", old: "image: debian-13-x64", new: "image: -debian", want: []string{`6:10: droplet.image: "-debian" is not a DigitalOcean slug`}},
		{name: "image a mapping", old: "image: debian-13-x64", new: "image: {slug: debian}", want: []string{`6:10: droplet.image: expected a DigitalOcean image slug like debian-13-x64, bake, or the name of a snapshot, got a mapping`}},
		{name: "image an ID", old: "image: debian-13-x64", new: "image: 123456", want: []string{`6:10: droplet.image: "123456" is an image ID; name the snapshot instead`}},
		{name: "image name with blanks around", old: "image: debian-13-x64", new: "image: ' my snapshot'", want: []string{`6:10: droplet.image: " my snapshot" begins or ends with a blank`}},
		{name: "image name too long", old: "image: debian-13-x64", new: "image: A" + strings.Repeat("b", 255), want: []string{`6:10: droplet.image: the name is 256 characters; DigitalOcean allows at most 255`}},
		{name: "base_image not a slug", old: "image: debian-13-x64", new: "image: bake\n  base_image: My Image", want: []string{`7:15: droplet.base_image: "My Image" is not a DigitalOcean slug`}},
		{name: "alias to the same value", old: "region: nyc3", new: "region: &r nyc3\n  image: *r", want: []string{`7:3: droplet.image: duplicate key; it is already set at line 5`}},
		// tags
		{name: "tag with dot", old: "tags: [web, prod]", new: "tags: [web, v1.2]", want: []string{`9:15: droplet.tags[1]: "v1.2" has characters DigitalOcean does not allow in tags (allowed: A-Z a-z 0-9 _ : -)`}},
		{name: "tag reserved", old: "tags: [web, prod]", new: "tags: [fleet:blog, Fleet-x]", want: []string{`9:10: droplet.tags[0]: "fleet:blog" is reserved`, `9:22: droplet.tags[1]: "Fleet-x" is reserved`}},
		{name: "tag too long", old: "tags: [web, prod]", new: "tags: [" + strings.Repeat("a", 256) + "]", want: []string{`9:10: droplet.tags[0]: tag is 256 characters; DigitalOcean allows at most 255`}},
		{name: "tag empty", old: "tags: [web, prod]", new: "tags: [web, '']", want: []string{`9:15: droplet.tags[1]: is empty`}},
		{name: "tag duplicate", old: "tags: [web, prod]", new: "tags: [web, web]", want: []string{`9:15: droplet.tags[1]: "web" is already listed as droplet.tags[0]`}},
		{name: "tags a string", old: "tags: [web, prod]", new: "tags: web", want: []string{`9:9: droplet.tags: expected a list of tags like [web], got "web"`}},
		// ssh_keys
		{name: "ssh_keys empty", old: "ssh_keys:\n    - keys/test.pub", new: "ssh_keys: []", want: []string{`7:13: droplet.ssh_keys: at least one key is required`}},
		{name: "ssh_keys null", old: "ssh_keys:\n    - keys/test.pub", new: "ssh_keys:", want: []string{`7:12: droplet.ssh_keys: expected a list, got nothing`}},
		{name: "ssh key file missing", old: "- keys/test.pub", new: "- keys/nope.pub", want: []string{`8:7: droplet.ssh_keys[0]: public key file "keys/nope.pub" does not exist (looked for keys/nope.pub)`}},
		{name: "ssh key file private", old: "- keys/test.pub", new: "- keys/id", files: map[string]string{"keys/id": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"}, want: []string{`8:7: droplet.ssh_keys[0]: "keys/id" is a private key; list the public key (the .pub file) instead`}},
		{name: "ssh key file garbage", old: "- keys/test.pub", new: "- keys/bad.pub", files: map[string]string{"keys/bad.pub": "not a key\n"}, want: []string{`8:7: droplet.ssh_keys[0]: "keys/bad.pub" holds no public key`}},
		{name: "ssh key file two keys", old: "- keys/test.pub", new: "- keys/two.pub", want: []string{`8:7: droplet.ssh_keys[0]: "keys/two.pub" holds more than one public key`}},
		{name: "ssh key file a directory", old: "- keys/test.pub", new: "- keys", want: []string{`8:7: droplet.ssh_keys[0]: keys: is a directory; name a public key file`}},
		{name: "fingerprint too short", old: "- keys/test.pub", new: "- aa:bb:cc", want: []string{`8:7: droplet.ssh_keys[0]: "aa:bb:cc" is not an MD5 fingerprint (allowed: 16 pairs of hex digits`}},
		{name: "fingerprint sha256", old: "- keys/test.pub", new: "- SHA256:abc", want: []string{`8:7: droplet.ssh_keys[0]: "SHA256:abc" is a SHA256 fingerprint; DigitalOcean identifies keys by MD5`}},
		{name: "same key twice", old: "- keys/test.pub", new: "- keys/test.pub\n    - " + testFP, want: []string{`9:7: droplet.ssh_keys[1]: same key as droplet.ssh_keys[0] (` + testFP + `)`}},
		// cloud_init
		{name: "cloud_init missing file", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/nope.yaml", want: []string{`10:15: droplet.cloud_init: template "cloud-init/nope.yaml" does not exist`}},
		{name: "cloud_init a directory", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init", want: []string{`10:15: droplet.cloud_init: "cloud-init" is a directory`}},
		{name: "cloud_init too big", files: map[string]string{"cloud-init/droplet.yaml": big}, want: []string{`10:15: droplet.cloud_init: "cloud-init/droplet.yaml" renders to more than 65536 bytes of user_data (64 KiB, DigitalOcean's limit), rendered as fleet up would (version v0.0.0-sample.longest.version.32, with its host key)`}},
		{name: "cloud_init parse error", files: map[string]string{"cloud-init/droplet.yaml": "#cloud-config\n{{.Project\n"}, want: []string{`10:15: droplet.cloud_init: template: cloud-init/droplet.yaml:3: unclosed action started at cloud-init/droplet.yaml:2`}},
		{name: "cloud_init unknown field", files: map[string]string{"cloud-init/droplet.yaml": "#cloud-config\n# {{.Nope}}\n"}, want: []string{`10:15: droplet.cloud_init: template: cloud-init/droplet.yaml:2:4: executing`, "can't evaluate field Nope"}},
		{name: "cloud_init no header", files: map[string]string{"cloud-init/droplet.yaml": "runcmd: []\n"}, want: []string{`10:15: droplet.cloud_init: cloud-init/droplet.yaml: rendered user_data must start with a "#cloud-config" line`}},
		// droplet options
		{name: "monitoring yes", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  monitoring: yes", want: []string{`11:15: droplet.monitoring: expected true or false, got "yes"`}},
		{name: "ipv6 a string", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  ipv6: 'true'", want: []string{`11:9: droplet.ipv6: expected true or false, got "true"`}},
		{name: "backups empty", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  backups:", want: []string{`11:11: droplet.backups: expected true or false, got nothing`}},
		{name: "backups a list", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  backups: [true]", want: []string{`11:12: droplet.backups: expected true or false, got a list`}},
		{name: "vpc_uuid not a uuid", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  vpc_uuid: default-nyc3", want: []string{`11:13: droplet.vpc_uuid: "default-nyc3" is not a UUID (expected a VPC's UUID like`}},
		{name: "vpc_uuid braces", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  vpc_uuid: '{760e09ef-dc84-11e8-981e-3cfdfeaae000}'", want: []string{`11:13: droplet.vpc_uuid: "{760e09ef-dc84-11e8-981e-3cfdfeaae000}" is not a UUID`}},
		{name: "vpc_uuid empty", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  vpc_uuid: ''", want: []string{`11:13: droplet.vpc_uuid: is empty; expected a VPC's UUID`}},
		{name: "vpc_uuid too long", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  vpc_uuid: " + strings.Repeat("a", 5000), want: []string{`11:13: droplet.vpc_uuid: "aaaa`, "(5000 bytes) is not a UUID"}},
		{name: "monitoring typo", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: cloud-init/droplet.yaml\n  monitring: true", want: []string{`11:3: droplet.monitring: unknown key; did you mean "monitoring"?`}},
		// reserved_ip
		{name: "reserved_ip bad", old: "reserved_ip: auto", new: "reserved_ip: 1.2.3", want: []string{`11:14: reserved_ip: "1.2.3" is not an IPv4 address (allowed: "auto" or an IPv4 address`}},
		{name: "reserved_ip ipv6", old: "reserved_ip: auto", new: "reserved_ip: '::1'", want: []string{`11:14: reserved_ip: "::1" is not an IPv4 address`}},
		{name: "reserved_ip unspecified", old: "reserved_ip: auto", new: "reserved_ip: 0.0.0.0", want: []string{`11:14: reserved_ip: "0.0.0.0" is not an IPv4 address`}},
		// keep
		{name: "keep negative", old: "keep: 2", new: "keep: -1", want: []string{`12:7: keep: -1 is out of range (allowed: a whole number from 0 to 20 (default 2))`}},
		{name: "keep too big", old: "keep: 2", new: "keep: 21", want: []string{`12:7: keep: 21 is out of range`}},
		{name: "keep not a number", old: "keep: 2", new: "keep: two", want: []string{`12:7: keep: expected a whole number from 0 to 20 (default 2), got "two"`}},
		{name: "keep a float", old: "keep: 2", new: "keep: 2.5", want: []string{`12:7: keep: expected a whole number`}},
		// timeouts
		{name: "timeout no unit", old: "create: 90s", new: "create: 90", want: []string{`14:11: timeouts.create: 90 has no unit; write "90s" or "90m"`}},
		{name: "timeout not a duration", old: "create: 90s", new: "create: soon", want: []string{`14:11: timeouts.create: "soon" is not a duration like "90s" or "5m"`}},
		{name: "timeout zero", old: "active: 5m", new: "active: 0s", want: []string{`15:11: timeouts.active: 0s is out of range (allowed: more than 0, at most 1h)`}},
		{name: "timeout over an hour", old: "assign: 2m", new: "assign: 61m", want: []string{`16:11: timeouts.assign: 61m is out of range`}},
		{name: "timeouts unknown key", old: "assign: 2m", new: "boot: 2m", want: []string{`16:3: timeouts.boot: unknown key (allowed: create, active, assign, ssh, snapshot)`}},
		{name: "timeouts a list", old: "timeouts:\n  create: 90s\n  active: 5m\n  assign: 2m\n", new: "timeouts: [5m]\n", want: []string{`13:11: timeouts: expected a mapping of create, active, assign, ssh, snapshot, got a list`}},
		// strictness
		{name: "unknown top-level key", old: "keep: 2", new: "kep: 2", want: []string{`12:1: kep: unknown key; did you mean "keep"? (allowed: project, provider, droplet, reserved_ip, keep, timeouts, stack, health)`}},
		{name: "unknown droplet key", old: "region: nyc3", new: "region: nyc3\n  regoin: nyc1", want: []string{`5:3: droplet.regoin: unknown key; did you mean "region"?`}},
		{name: "dashed key", old: "cloud_init:", new: "cloud-init:", want: []string{`4:3: droplet: missing required key "cloud_init"`, `10:3: droplet.cloud-init: unknown key; did you mean "cloud_init"?`}},
		{name: "duplicate key", old: "keep: 2", new: "keep: 2\nkeep: 3", want: []string{`13:1: keep: duplicate key; it is already set at line 12`}},
		{name: "duplicate nested key", old: "size: s-1vcpu-1gb", new: "size: s-1vcpu-1gb\n  size: s-2vcpu-2gb", want: []string{`6:3: droplet.size: duplicate key; it is already set at line 5`}},
		{name: "merge key", old: "keep: 2", new: "<<: {keep: 2}", want: []string{`12:1: merge keys (<<) are not supported`}},
		{name: "stack not a mapping", old: "keep: 2", new: "keep: 2\nstack: compose.yaml", want: []string{`13:8: stack: expected a mapping of dir, compose, build, secrets, health, env, data, after_promote, got "compose.yaml"`}},
		{name: "data mistakes", old: "keep: 2", new: "keep: 2\nstack:\n  dir: stacks/blog\n  env: {FLEET_X: a, 1BAD: b, OK: [1]}\n  data:\n    service: App\n    backup: \"\"\n    freeze: a\n    restor: b", want: []string{
			`15:9: stack.env.FLEET_X: FLEET_ variables are fleet's own (FLEET_VERSION, FLEET_PROJECT, FLEET_SECRETS_DIR)`,
			`15:21: stack.env: "1BAD" is not a variable name (letters, digits and _, not starting with a digit)`,
			`15:34: stack.env.OK: expected a string, got a list`,
			`17:5: stack.data: missing required key "restore" (a command that reads an archive on stdin)`,
			`17:14: stack.data.service: "App" is not a compose service name (a-z 0-9 _ . -)`,
			`18:13: stack.data.backup: is empty; expected a shell command`,
			`19:13: stack.data: freeze needs unfreeze too (or a frozen site would stay read-only)`,
			`20:5: stack.data.restor: unknown key; did you mean "restore"?`,
		}},
		{name: "freeze_budget zero", old: "keep: 2", new: dataSpec("0s"), want: []string{`21:20: stack.data.freeze_budget: 0s is out of range (allowed: more than 0, at most 10m; default 5s)`}},
		{name: "freeze_budget negative", old: "keep: 2", new: dataSpec("-1s"), want: []string{`21:20: stack.data.freeze_budget: -1s is out of range`}},
		{name: "freeze_budget too long", old: "keep: 2", new: dataSpec("11m"), want: []string{`21:20: stack.data.freeze_budget: 11m is out of range`}},
		{name: "freeze_budget no unit", old: "keep: 2", new: dataSpec("5"), want: []string{`21:20: stack.data.freeze_budget: 5 has no unit; write "5s"`}},
		{name: "freeze_budget not a duration", old: "keep: 2", new: dataSpec("soon"), want: []string{`21:20: stack.data.freeze_budget: "soon" is not a duration like "5s"`}},
		{name: "freeze_budget a list", old: "keep: 2", new: dataSpec("[5s]"), want: []string{`21:20: stack.data.freeze_budget: expected a duration like "5s", got a list`}},
		{name: "freeze_budget huge", old: "keep: 2", new: dataSpec(strings.Repeat("9", 5000) + "h"), want: []string{`21:20: stack.data.freeze_budget: "999`, "is not a duration"}},
		{name: "hold without forward", old: "keep: 2", new: "keep: 2\nstack:\n  dir: stacks/blog\n  data:\n    service: app\n    backup: b\n    restore: r\n    freeze: f\n    unfreeze: u\n    hold: h", want: []string{
			`21:11: stack.data: hold needs forward too (held writes are answered by the droplet taking over)`,
		}},
		{name: "forward without hold", old: "keep: 2", new: "keep: 2\nstack:\n  dir: stacks/blog\n  data:\n    service: app\n    backup: b\n    restore: r\n    freeze: f\n    unfreeze: u\n    forward: \"\"", want: []string{
			`21:14: stack.data.forward: is empty; expected a shell command`,
			`21:14: stack.data: forward needs hold too (writes must wait, not be refused, until forwarding starts)`,
		}},
		{name: "stack without dir", old: "keep: 2", new: "keep: 2\nstack:\n  build: remote", want: []string{`14:3: stack: missing required key "dir" (the stack's directory in the repository, like stacks/hello)`}},
		{name: "stack mistakes", old: "keep: 2", new: "keep: 2\nstack:\n  dir: ../elsewhere\n  compose: [a.yaml, a.yaml]\n  build: docker\n  secrets: {file: /etc/secrets.env}\n  health: {host: Bad_Host, paths: [healthz], timeout: 0s}", want: []string{
			`14:8: stack.dir: "../elsewhere" must be a relative path inside the repository (no leading / or ..)`,
			`15:21: stack.compose[1]: "a.yaml" is listed twice`,
			`16:10: stack.build: "docker" is not a build mode (allowed: remote, local)`,
			`17:19: stack.secrets.file: "/etc/secrets.env" must be a relative path inside the repository (no leading / or ..)`,
			`18:18: stack.health.host: "Bad_Host" is not a host name (letters, digits, - and dots)`,
			`18:36: stack.health.paths[0]: "healthz" must start with / and hold no spaces`,
			`18:55: stack.health.timeout: 0s is out of range (allowed: more than 0, at most 1h)`,
		}},
		{name: "second document", old: "keep: 2", new: "keep: 2\n---\nproject: x", want: []string{`13:1: a second YAML document`}},
		// Syntax errors are where the parser stopped (the unclosed '[' on
		// line 12 is found wanting at the ':' on line 13).
		{name: "syntax error", old: "keep: 2", new: "keep: a: b", want: []string{`12:8: invalid YAML: mapping values are not allowed in this context`}},
		{name: "unclosed flow", old: "keep: 2", new: "keep: [2", want: []string{`13:9: invalid YAML: did not find expected ',' or ']'`}},
		{name: "tab indentation", old: "  size:", new: "\tsize:", want: []string{`5:1: invalid YAML: found a tab character that violates indentation`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec
			if tc.old != "" {
				spec = mustReplace(t, spec, tc.old, tc.new)
			}
			setup(t, spec, tc.files)
			s, err := Load("droplets.yaml")
			if err == nil {
				t.Fatalf("Load succeeded: %+v", s)
			}
			if s != nil {
				t.Errorf("Load returned a spec with its error")
			}
			checkErrors(t, err, tc.want)
		})
	}
}

// checkErrors checks that err holds one error per want, in order; each want
// is "line:col" optionally followed by ": " and a substring of the message
// (a want without a position is another substring of the previous error).
func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	got := errLines(t, err)
	i := -1
	for _, w := range want {
		var line, col int
		if n, _ := fmt.Sscanf(w, "%d:%d", &line, &col); n != 2 {
			if i < 0 || !strings.Contains(got[i].Msg, w) {
				t.Errorf("error %d: %q does not contain %q", i, got[i].Msg, w)
			}
			continue
		}
		i++
		if i >= len(got) {
			t.Errorf("missing error %s", w)
			continue
		}
		g := got[i]
		if g.File != "droplets.yaml" {
			t.Errorf("error %d: file %q, want droplets.yaml", i, g.File)
		}
		pos := fmt.Sprintf("%d:%d", line, col)
		msg := ""
		if _, rest, ok := strings.Cut(w, pos+": "); ok {
			msg = rest
		}
		if fmt.Sprintf("%d:%d", g.Line, g.Col) != pos || !strings.Contains(g.Msg, msg) {
			t.Errorf("error %d = %d:%d: %s\nwant %s", i, g.Line, g.Col, g.Msg, w)
		}
	}
	if n := i + 1; len(got) != n {
		t.Errorf("got %d errors, want %d:\n%v", len(got), n, err)
	}
}

func TestLoadCollectsAllErrors(t *testing.T) {
	setup(t, `project: Blog
droplet:
  region: nyc3
  size: s-1vcpu-1gb
  image: debian-13-x64
  ssh_keys: [keys/test.pub]
  tags: [web, v1.2]
  cloud_init: cloud-init/droplet.yaml
keep: 30
`, nil)
	_, err := Load("droplets.yaml")
	want := `droplets.yaml:1:10: project: "Blog" is not a valid project name (allowed: a-z 0-9 -, starting with a letter, e.g. blog)
droplets.yaml:7:15: droplet.tags[1]: "v1.2" has characters DigitalOcean does not allow in tags (allowed: A-Z a-z 0-9 _ : -)
droplets.yaml:9:7: keep: 30 is out of range (allowed: a whole number from 0 to 20 (default 2))`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	if got := errLines(t, err); len(got) != 3 {
		t.Errorf("got %d errors, want 3", len(got))
	}
	var one Error
	if !errors.As(err, &one) || one.Line != 1 {
		t.Errorf("errors.As(Error) = %+v", one)
	}
}

func TestLoadErrorsInFileOrder(t *testing.T) {
	// keep is checked before droplet, and timeouts before both; the
	// report still reads top to bottom.
	setup(t, `timeouts: {create: 0s}
droplet:
  region: NYC3
  size: s-1vcpu-1gb
  image: debian-13-x64
  ssh_keys: [keys/test.pub]
  cloud_init: cloud-init/droplet.yaml
project: blog
keep: -1
`, nil)
	_, err := Load("droplets.yaml")
	checkErrors(t, err, []string{"1:20: timeouts.create", "3:11: droplet.region", "9:7: keep"})
}

func TestLoadFile(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          string
	}{
		{"empty", "", "droplets.yaml:1: spec is empty; it needs at least project and droplet"},
		{"only a comment", "# nothing\n", "droplets.yaml:1: spec is empty"},
		{"a list", "- project\n", "droplets.yaml:1:1: expected a mapping of project, provider, droplet, reserved_ip, keep, timeouts, stack, health, got a list"},
		{"a scalar", "blog\n", `droplets.yaml:1:1: expected a mapping of project`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setup(t, tc.content, nil)
			_, err := Load("droplets.yaml")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v, want prefix %q", err, tc.want)
			}
			if n := len(errLines(t, err)); n != 1 {
				t.Errorf("%d errors, want 1", n)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nope.yaml")
	_, err := Load(path)
	got := errLines(t, err)
	if len(got) != 1 || got[0].File != path || got[0].Line != 0 {
		t.Fatalf("errors = %+v", got)
	}
	if want := path + ": spec file does not exist"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}

	t.Chdir(dir)
	_, err = Load("droplets.yaml")
	if want := "droplets.yaml: spec file does not exist (looked for " + filepath.Join(dir, "droplets.yaml") + ")"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

// Paths in the spec resolve against its directory, not the working directory.
func TestLoadRelativeToSpecDir(t *testing.T) {
	setup(t, baseSpec, nil)
	dir, _ := os.Getwd()
	t.Chdir(t.TempDir())
	s, err := Load(filepath.Join(dir, "droplets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Dir != dir || s.Droplet.CloudInit != filepath.Join(dir, "cloud-init", "droplet.yaml") || s.Droplet.SSHKeys[0].File != filepath.Join(dir, "keys", "test.pub") {
		t.Errorf("paths not resolved against %s: %+v", dir, s)
	}
}

func TestLoadHomeKey(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join("testdata", "keys", "test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	setup(t, mustReplace(t, baseSpec, "- keys/test.pub", "- ~/.ssh/id_ed25519.pub"), nil)
	s, err := Load("droplets.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if k := s.Droplet.SSHKeys[0]; k.Fingerprint != testFP || k.File != filepath.Join(home, ".ssh", "id_ed25519.pub") {
		t.Errorf("ssh key = %+v", k)
	}
}

// The repository's example droplets.yaml and cloud-init template load as
// they are, given a public key where the example points.
func TestRepoExample(t *testing.T) {
	repo := filepath.Join("..", "..")
	example, err := os.ReadFile(filepath.Join(repo, "droplets.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(repo, "cloud-init", "droplet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	setup(t, string(example), map[string]string{
		"cloud-init/droplet.yaml": string(tmpl),
		"keys/deploy.pub":         strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " operator@example\n",
	})
	s, err := Load("droplets.yaml")
	if err != nil {
		t.Fatalf("repo droplets.yaml:\n%v", err)
	}
	if s.Project != "hello" || s.Provider != "digitalocean" || s.Droplet.Image != "debian-13-x64" ||
		s.Droplet.SSHKeys[0].Fingerprint != ssh.FingerprintLegacyMD5(sshPub) || s.Droplet.SSHKeys[0].Name != "operator@example" {
		t.Errorf("spec = %+v", s)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Col: 7, Msg: "bad"}, "a.yaml:3:7: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
	errs := &Errors{{File: "a", Line: 1, Col: 1, Msg: "x"}, {File: "a", Line: 2, Col: 1, Msg: "y"}}
	if got := errs.Error(); got != "a:1:1: x\na:2:1: y" {
		t.Errorf("Errors = %q", got)
	}
}

func TestLoadStack(t *testing.T) {
	tests := []struct {
		name, stack string
		want        Stack
	}{
		{"defaults", "stack:\n  dir: stacks/hello\n", Stack{Dir: "stacks/hello", Compose: []string{"compose.yaml"}, Build: BuildRemote, Health: Health{Timeout: DefaultHealthTimeout}}},
		{"everything", "stack:\n  dir: ./stacks/blog/\n  compose: [docker-compose-common.yaml, docker-compose-production.yaml]\n  build: local\n  secrets: {file: .env.production}\n  health: {host: Blog.Example.com, paths: [/healthz, /], timeout: 90s}\n",
			Stack{Dir: "stacks/blog", Compose: []string{"docker-compose-common.yaml", "docker-compose-production.yaml"}, Build: BuildLocal,
				Secrets: Secrets{File: ".env.production", At: "droplets.yaml:21:19"}, Health: Health{Host: "blog.example.com", Paths: []string{"/healthz", "/"}, Timeout: 90 * time.Second}}},
		{"data", "stack:\n  dir: stacks/blog\n  env: {SITE_DOMAIN: blog.example.com, EMPTY: }\n  data:\n    service: app\n    backup: docker compose exec -T utility fleet-data backup\n    restore: x restore\n    freeze: ' x freeze '\n    unfreeze: x unfreeze\n    writes: x writes\n    verify: blog-verify\n    state: x state\n    hold: x hold\n    forward: x forward\n  after_promote: x ensure\n",
			Stack{Dir: "stacks/blog", Compose: []string{"compose.yaml"}, Build: BuildRemote, Health: Health{Timeout: DefaultHealthTimeout},
				Env:          []EnvVar{{"SITE_DOMAIN", "blog.example.com"}, {"EMPTY", ""}},
				Data:         &Data{Service: "app", Backup: "docker compose exec -T utility fleet-data backup", Restore: "x restore", Freeze: "x freeze", Unfreeze: "x unfreeze", Writes: "x writes", Verify: "blog-verify", State: "x state", Hold: "x hold", Forward: "x forward", FreezeBudget: DefaultFreezeBudget},
				AfterPromote: "x ensure"}},
		{"freeze budget", "stack:\n  dir: stacks/blog\n  data:\n    service: app\n    backup: b\n    restore: r\n    freeze: f\n    unfreeze: u\n    freeze_budget: 1500ms\n",
			Stack{Dir: "stacks/blog", Compose: []string{"compose.yaml"}, Build: BuildRemote, Health: Health{Timeout: DefaultHealthTimeout},
				Data: &Data{Service: "app", Backup: "b", Restore: "r", Freeze: "f", Unfreeze: "u", FreezeBudget: 1500 * time.Millisecond}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, baseSpec+tt.stack, nil)
			s, err := Load("droplets.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*s.Stack, tt.want) {
				t.Fatalf("stack = %+v\nwant    %+v", *s.Stack, tt.want)
			}
		})
	}
}

// dataSpec is a stack with a data contract whose freeze_budget is budget
// (line 21, column 20).
func dataSpec(budget string) string {
	return "keep: 2\nstack:\n  dir: stacks/blog\n  data:\n    service: app\n    backup: b\n    restore: r\n    freeze: f\n    unfreeze: u\n    freeze_budget: " + budget
}
