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
	"errors"
	"fmt"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/inputfile"
)

// MaxUserData is the largest user_data DigitalOcean accepts (64 KiB).
const MaxUserData = 64 << 10

// MaxTemplateSize caps the template file Render reads.
const MaxTemplateSize = 256 << 10

// renderTimeout bounds a template's execution: a loop that prints nothing
// never reaches MaxUserData.
var renderTimeout = 5 * time.Second

// Header is the line every rendered cloud-config must start with.
const Header = "#cloud-config"

// TooLargeError is Render's error when the output exceeds MaxUserData.
type TooLargeError struct {
	Path string // the template
	Size int    // bytes of rendered user_data; with Stopped, MaxUserData+1
	// Stopped: rendering stopped once past MaxUserData, so the full size
	// is unknown.
	Stopped bool
}

func (e *TooLargeError) Error() string {
	if e.Stopped {
		return fmt.Sprintf("%s: rendered user_data is over DigitalOcean's limit of %d bytes (64 KiB); rendering stopped there", e.Path, MaxUserData)
	}
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
// The template must be a regular file of at most MaxTemplateSize bytes.
// Its execution stops as soon as the output passes MaxUserData, or after
// a few seconds, so a runaway loop fails fast without using much memory.
//
// If d.HostKey is set, Render adds to the rendered mapping ssh_keys: (that
// key's private and public halves), ssh_deletekeys: true and
// ssh_genkeytypes: [ed25519], so cloud-init deletes any host keys of the
// image and installs exactly this one, and ssh_publish_hostkeys: {enabled:
// false}. fleet owns those keys: a template that sets any of them is an
// error. The output is then re-encoded from the YAML node tree (comments
// kept, formatting normalised) and checked again, size included.
func Render(templatePath string, d Data) ([]byte, error) {
	src, err := inputfile.Read(templatePath, MaxTemplateSize)
	if err != nil {
		return nil, fmt.Errorf("cloud-init template: %w", err)
	}
	tmpl, err := template.New(templatePath).Option("missingkey=error").Funcs(template.FuncMap{"printf": printf}).Parse(string(src))
	if err != nil {
		// text/template errors already read "template: <name>:<line>: ...".
		return nil, errors.New(clip(err.Error()))
	}
	out, err := execute(tmpl, d)
	var over *overLimit
	switch {
	case errors.As(err, &over):
		return nil, &TooLargeError{Path: templatePath, Size: MaxUserData + 1, Stopped: true}
	case err != nil:
		return nil, errors.New(clip(err.Error()))
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

// execute runs tmpl into a buffer that refuses to grow past MaxUserData,
// giving up after renderTimeout. text/template cannot be cancelled: a
// timed-out execution is left running, and the process is about to exit
// with the error anyway.
func execute(tmpl *template.Template, d Data) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		w := &limitWriter{max: MaxUserData}
		err := tmpl.Execute(w, d)
		done <- result{w.buf, err}
	}()
	timer := time.NewTimer(renderTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.out, r.err
	case <-timer.C:
		return nil, fmt.Errorf("%s: rendering took longer than %v; does a loop run too long?", tmpl.Name(), renderTimeout)
	}
}

// overLimit is limitWriter's error; text/template stops at a write error.
type overLimit struct{}

func (*overLimit) Error() string { return "output over the limit" }

// limitWriter keeps at most max bytes and fails the write that would pass it.
type limitWriter struct {
	buf []byte
	max int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(w.buf)+len(p) > w.max {
		return 0, &overLimit{}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// printf is text/template's printf, refusing a width or precision that
// alone would pass MaxUserData ("%2000000000d" makes fmt allocate 2 GB
// before anything is written).
func printf(format string, args ...any) (string, error) {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format) && strings.IndexByte("+-# 0.[]*123456789", format[i]) >= 0; i++ {
			if n := digits(format[i:]); n > MaxUserData {
				return "", errWidth
			}
			if format[i] == '*' {
				for _, a := range args {
					if n, ok := a.(int); ok && (n > MaxUserData || n < -MaxUserData) {
						return "", errWidth
					}
				}
			}
		}
	}
	return fmt.Sprintf(format, args...), nil
}

var errWidth = fmt.Errorf("printf: a width or precision over %d cannot fit in user_data", MaxUserData)

// digits is the number s starts with (saturating), or 0.
func digits(s string) int {
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = min(n*10+int(s[i]-'0'), 1<<30)
	}
	return n
}

// clip shortens a message that quotes template text.
func clip(msg string) string {
	const max = 300
	if len(msg) <= max {
		return msg
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", msg[:cut], len(msg))
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
