// Package cloudinit renders the cloud-init templates under cloud-init/ into
// the user_data a droplet boots with.
//
// A template is a text/template file whose output must be a cloud-config
// document: its first line is "#cloud-config" and the rest is a YAML mapping.
// Templates see a Data value, e.g. {{.Project}} or {{.Version}}; a field that
// does not exist is an error, never an empty string.
//
// With Data.HostKey set, Render also puts that SSH host key into the
// cloud-config (cloud-init's ssh_keys:), so fleet knows the droplet's host
// key before it first connects.
package cloudinit

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// MaxUserData is the largest user_data DigitalOcean accepts (64 KiB).
const MaxUserData = 64 << 10

// Header is the line every rendered cloud-config must start with.
const Header = "#cloud-config"

// TooLargeError is Render's error when the output exceeds MaxUserData.
type TooLargeError struct {
	Path string // the template
	Size int    // bytes of rendered user_data
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: rendered user_data is %d bytes, over DigitalOcean's limit of %d bytes (64 KiB)", e.Path, e.Size, MaxUserData)
}

// Data is what a template sees. Later versions add fields; templates only
// break if they use a field that is removed.
type Data struct {
	Project     string // the spec's project slug
	Version     string // the release version, as the operator wrote it (e.g. v1.2.0)
	DropletName string // <project>-<name-safe version>-<suffix>
	DeployID    string // unique per `fleet up`; the fleet-deploy:<id> tag
	Stack       bool   // the droplet will run a compose stack (which owns ports 80 and 443)

	// HostKey, if set, is injected by Render as the droplet's only SSH
	// host key (see Render). Templates need not mention it.
	HostKey *HostKey
}

// Render executes the template at templatePath with d and checks the result:
// it must start with a "#cloud-config" line, parse as a YAML mapping and be
// at most MaxUserData bytes (else the error is a *TooLargeError). Every error
// names templatePath.
//
// If d.HostKey is set, Render adds to the rendered mapping ssh_keys: (that
// key's private and public halves), ssh_deletekeys: true and
// ssh_genkeytypes: [ed25519], so cloud-init deletes any host keys of the
// image and installs exactly this one, and ssh_publish_hostkeys: {enabled:
// false}. fleet owns those keys: a template that sets any of them is an
// error. The output is then re-encoded from the YAML node tree (comments
// kept, formatting normalised) and checked again, size included.
func Render(templatePath string, d Data) ([]byte, error) {
	src, err := os.ReadFile(templatePath)
	if err != nil {
		return nil, fmt.Errorf("cloud-init template: %w", err)
	}
	tmpl, err := template.New(templatePath).Option("missingkey=error").Parse(string(src))
	if err != nil {
		// text/template errors already read "template: <name>:<line>: ...".
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, d); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if len(out) > MaxUserData {
		return nil, &TooLargeError{Path: templatePath, Size: len(out)}
	}
	if err := check(out); err != nil {
		return nil, fmt.Errorf("%s: rendered user_data %w", templatePath, err)
	}
	if d.HostKey == nil {
		return out, nil
	}
	out, err = injectHostKey(out, d.HostKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", templatePath, err)
	}
	if len(out) > MaxUserData {
		return nil, &TooLargeError{Path: templatePath, Size: len(out)}
	}
	if err := check(out); err != nil {
		return nil, fmt.Errorf("%s: user_data with the host key %w", templatePath, err)
	}
	return out, nil
}

// check validates rendered user_data; its errors read after "rendered user_data".
func check(out []byte) error {
	first, _, _ := bytes.Cut(out, []byte("\n"))
	if strings.TrimRight(string(first), " \t\r") != Header {
		return fmt.Errorf("must start with a %q line (cloud-init ignores anything else), but its first line is %q", Header, truncate(string(first), 40))
	}
	// cloud-init silently skips a cloud-config it cannot parse, so a droplet
	// would boot without anything from it: catch that here.
	var doc yaml.Node
	if err := yaml.Unmarshal(out, &doc); err != nil {
		return fmt.Errorf("is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("is not a YAML mapping (line %d); a cloud-config maps keys such as write_files and runcmd", doc.Content[0].Line)
	}
	return nil
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}
