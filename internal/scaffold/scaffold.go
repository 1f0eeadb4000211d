// Package scaffold writes a new fleet project: droplets.yaml, the cloud-init
// template, a .gitignore that keeps secrets and private keys out of git, a
// deploy key, and optionally a GitHub Actions workflow that deploys on tags.
// Every file is written atomically (renameio), and an existing file is never
// replaced, so an interrupted run is finished by running it again.
package scaffold

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"embed"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/fleetdeploy/fleet/internal/inputfile"
	"github.com/fleetdeploy/fleet/internal/spec"
	"github.com/fleetdeploy/fleet/internal/stack"
	"github.com/google/renameio/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"gopkg.in/yaml.v3"
)

//go:embed templates
var templates embed.FS

// Module is the path `go install` installs fleet from.
const Module = "github.com/fleetdeploy/fleet"

// Paths of what Init writes, relative to the project directory.
const (
	SpecFile     = "droplets.yaml"
	CloudInit    = "cloud-init/droplet.yaml"
	GitIgnore    = ".gitignore"
	KeyFile      = "keys/deploy"
	PubKeyFile   = "keys/deploy.pub"
	WorkflowFile = ".github/workflows/deploy.yml"
)

// Options say what to write.
type Options struct {
	Dir      string // the project directory (made if missing)
	Project  string // "" = derived from Dir's name
	Region   string // "" = nyc3
	Size     string // "" = s-1vcpu-1gb
	StackDir string // "" = the stack section commented out
	// CI is "" or "github".
	CI string
	// FleetVersion is the release the workflow installs (vX.Y.Z).
	FleetVersion string
	// GoVersion is setup-go's go-version ("1.26" ...).
	GoVersion string
}

// Action is what Init did with a file.
type Action string

const (
	Created Action = "created"
	Kept    Action = "kept"    // it existed and was left alone
	Updated Action = "updated" // .gitignore: fleet's lines were appended
)

// Result is one file's fate.
type Result struct {
	Path   string // relative to the project directory
	Action Action
	Note   string // for people; "" when none
}

// Report is what Init did (fleet init --json prints it as initJSON, in
// internal/cli/jsonout.go).
type Report struct {
	Dir     string
	Project string
	Files   []Result
	// Secrets are the FLEET_SECRET_* variables the workflow passes (the
	// stack's secrets), sorted.
	Secrets []string
	// Warnings are things the operator should know (a stack whose secrets
	// could not be read, a public key without its private half).
	Warnings []string
}

// Caps on what init reads back: a .gitignore, a private key (RSA-16384
// in PEM is ~12 KiB).
const (
	maxGitIgnore = 1 << 20
	maxKey       = 16 << 10
)

// DefaultRegion and DefaultSize are a newcomer's first droplet.
const (
	DefaultRegion = "nyc3"
	DefaultSize   = "s-1vcpu-1gb"
)

// UsageError is a bad option; the cli maps it to exit 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

var (
	projectRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)
	slugRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	notSlugRE = regexp.MustCompile(`[^a-z0-9-]+`)
	// git describe's suffix: commits since the tag, and a dirty tree.
	describeRE = regexp.MustCompile(`-[0-9]+-g[0-9a-f]+(-dirty)?$|-dirty$`)
)

// ProjectName derives a project name from a directory name: lower-cased,
// other characters turned into '-', trimmed to 20. "" if nothing is left.
func ProjectName(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	n := notSlugRE.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-")
	n = strings.TrimLeft(n, "-0123456789")
	if len(n) > 20 {
		n = n[:20]
	}
	n = strings.TrimRight(n, "-")
	if !projectRE.MatchString(n) {
		return ""
	}
	return n
}

// IsRelease reports whether v names a release `go install` can fetch: a
// semantic version tag, not git describe's commits-after-a-tag or dirty
// forms, not a pseudo-version.
func IsRelease(v string) bool {
	return semver.IsValid(v) && semver.Canonical(v) == v && !describeRE.MatchString(v) && !module.IsPseudoVersion(v)
}

// Init writes the project. ctx bounds reading an existing stack's compose
// files (git).
func Init(ctx context.Context, o Options) (*Report, error) {
	if o.Dir == "" {
		o.Dir = "."
	}
	if o.Region == "" {
		o.Region = DefaultRegion
	}
	if o.Size == "" {
		o.Size = DefaultSize
	}
	if !slugRE.MatchString(o.Region) {
		return nil, &UsageError{Msg: fmt.Sprintf("--region %q: want a DigitalOcean region slug like nyc3", o.Region)}
	}
	if !slugRE.MatchString(o.Size) {
		return nil, &UsageError{Msg: fmt.Sprintf("--size %q: want a DigitalOcean size slug like s-1vcpu-1gb", o.Size)}
	}
	if o.StackDir != "" {
		if filepath.IsAbs(o.StackDir) || slices.Contains(strings.Split(filepath.ToSlash(o.StackDir), "/"), "..") {
			return nil, &UsageError{Msg: fmt.Sprintf("--stack %q: want a directory inside the project, relative to it", o.StackDir)}
		}
		o.StackDir = filepath.ToSlash(filepath.Clean(o.StackDir))
	}
	switch o.CI {
	case "":
	case "github":
		if !IsRelease(o.FleetVersion) {
			return nil, &UsageError{Msg: fmt.Sprintf("the workflow must install a released fleet, and %q is not a release tag: pin one with --fleet-version vX.Y.Z", o.FleetVersion)}
		}
		if o.GoVersion == "" {
			return nil, errors.New("scaffold: no Go version for the workflow")
		}
	default:
		return nil, &UsageError{Msg: fmt.Sprintf("--ci %q: the only CI fleet init knows is github", o.CI)}
	}

	specPath := filepath.Join(o.Dir, SpecFile)
	specExists, err := exists(specPath)
	if err != nil {
		return nil, err
	}
	r := &Report{Dir: o.Dir}
	// An existing spec names the project. It is validated at the end: the
	// files it names may be what an interrupted run did not write yet.
	if specExists {
		name, err := specProject(specPath)
		if err != nil {
			return nil, err
		}
		if o.Project != "" && o.Project != name {
			return nil, &UsageError{Msg: fmt.Sprintf("--project %s: %s exists and names project %s", o.Project, specPath, name)}
		}
		o.Project = name
	}
	if o.Project == "" {
		if o.Project = ProjectName(o.Dir); o.Project == "" {
			return nil, &UsageError{Msg: fmt.Sprintf("cannot make a project name of directory %s: give one with --project NAME", o.Dir)}
		}
	}
	if !projectRE.MatchString(o.Project) {
		return nil, &UsageError{Msg: fmt.Sprintf("--project %q: a-z 0-9 -, starting with a letter, at most 20 characters", o.Project)}
	}
	r.Project = o.Project

	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	// Order matters when interrupted: .gitignore before the private key,
	// so `git add -A` never sees the key unignored; the key before the
	// spec that names it.
	steps := []func() (Result, error){
		func() (Result, error) { return writeGitIgnore(o.Dir) },
		func() (Result, error) { return writeKeys(o.Dir, o.Project, r) },
		func() (Result, error) {
			return writeTemplate(o.Dir, CloudInit, "templates/cloud-init.yaml", nil, 0o644)
		},
		func() (Result, error) {
			return writeTemplate(o.Dir, SpecFile, "templates/droplets.yaml.tmpl", o, 0o644)
		},
	}
	for _, step := range steps {
		res, err := step()
		if err != nil {
			return nil, err
		}
		r.Files = append(r.Files, res)
	}
	s, specErr := spec.Load(specPath)
	if specErr != nil && o.CI == "" {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s (kept) does not validate: %v", SpecFile, specErr))
	}
	if o.CI == "github" {
		if specErr != nil {
			return nil, fmt.Errorf("%s does not validate, so the workflow cannot be written (fix it, or move it away to have a new one written):\n%w", specPath, specErr)
		}
		if s.Stack != nil {
			names, err := StackSecrets(ctx, specPath, s)
			if err != nil {
				r.Warnings = append(r.Warnings, fmt.Sprintf("could not read the stack's secrets (%v): add a FLEET_SECRET_<NAME> line per secret to %s's env by hand", err, WorkflowFile))
			}
			r.Secrets = names
		}
		data := struct {
			Options
			Module  string
			Secrets []string
		}{o, Module, r.Secrets}
		res, err := writeTemplate(o.Dir, WorkflowFile, "templates/deploy.yml.tmpl", data, 0o644)
		if err != nil {
			return nil, err
		}
		if res.Action == Kept {
			res.Note = "delete it and run fleet init --ci github again for a fresh one (new secrets, another fleet version)"
		}
		r.Files = append(r.Files, res)
	}
	return r, nil
}

// StackSecrets lists the FLEET_SECRET_* variables the stack's compose files
// (in the work tree) need.
func StackSecrets(ctx context.Context, specPath string, s *spec.Spec) ([]string, error) {
	if s.Stack == nil {
		return nil, nil
	}
	b, err := stack.Prepare(ctx, filepath.Dir(specPath), s.Stack, "worktree", true)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var vars []string
	for _, name := range b.Secrets {
		vars = append(vars, stack.EnvVar(name))
	}
	slices.Sort(vars)
	return slices.Compact(vars), nil
}

// specProject reads the project name of an existing spec, however broken
// the rest of it is.
func specProject(path string) (string, error) {
	data, err := inputfile.Read(path, spec.MaxSpecSize)
	if err != nil {
		return "", err
	}
	var doc struct {
		Project string `yaml:"project"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || !projectRE.MatchString(doc.Project) {
		return "", fmt.Errorf("%s exists and is kept, but names no valid project (fix it with fleet validate, or move it away to have a new one written)", path)
	}
	return doc.Project, nil
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// writeNew writes rel atomically unless it exists.
func writeNew(dir, rel string, data []byte, perm os.FileMode) (Result, error) {
	path := filepath.Join(dir, filepath.FromSlash(rel))
	ok, err := exists(path)
	if err != nil {
		return Result{}, err
	}
	if ok {
		return Result{Path: rel, Action: Kept}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return Result{}, err
	}
	if err := renameio.WriteFile(path, data, perm); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", path, err)
	}
	return Result{Path: rel, Action: Created}, nil
}

func writeTemplate(dir, rel, tmpl string, data any, perm os.FileMode) (Result, error) {
	b, err := Render(tmpl, data)
	if err != nil {
		return Result{}, err
	}
	return writeNew(dir, rel, b, perm)
}

// Render executes one embedded template: the workflow's with [[ ]]
// delimiters (GitHub's own ${{ }} stay as they are), a .tmpl with Go's,
// anything else verbatim.
func Render(name string, data any) ([]byte, error) {
	src, err := templates.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".tmpl") {
		return src, nil
	}
	t := template.New(name).Option("missingkey=error")
	if strings.HasSuffix(name, ".yml.tmpl") {
		t = t.Delims("[[", "]]")
	}
	if t, err = t.Parse(string(src)); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeGitIgnore creates .gitignore, or appends the lines of fleet's that
// an existing one lacks: a kept .gitignore that let the secrets file in
// would defeat its purpose.
func writeGitIgnore(dir string) (Result, error) {
	want, err := templates.ReadFile("templates/gitignore")
	if err != nil {
		return Result{}, err
	}
	path := filepath.Join(dir, GitIgnore)
	old, err := inputfile.Read(path, maxGitIgnore)
	if errors.Is(err, fs.ErrNotExist) {
		return writeNew(dir, GitIgnore, want, 0o644)
	}
	if err != nil {
		return Result{}, err
	}
	have := map[string]bool{}
	for l := range strings.Lines(string(old)) {
		have[strings.TrimSpace(l)] = true
	}
	var add []string
	for l := range strings.Lines(string(want)) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") && !have[l] {
			add = append(add, l)
		}
	}
	if len(add) == 0 {
		return Result{Path: GitIgnore, Action: Kept}, nil
	}
	out := bytes.Clone(old)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, "# fleet: secrets, private keys and fleet's local files stay out of git.\n"...)
	out = append(out, strings.Join(add, "\n")+"\n"...)
	st, err := os.Stat(path)
	if err != nil {
		return Result{}, err
	}
	if err := renameio.WriteFile(path, out, st.Mode().Perm()); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", path, err)
	}
	return Result{Path: GitIgnore, Action: Updated, Note: "added " + strings.Join(add, " ")}, nil
}

// writeKeys makes the deploy key pair unless there is one. The private half
// goes first: interrupted before the public half, a re-run derives it.
func writeKeys(dir, project string, r *Report) (Result, error) {
	priv := filepath.Join(dir, filepath.FromSlash(KeyFile))
	pub := filepath.Join(dir, filepath.FromSlash(PubKeyFile))
	havePriv, err := exists(priv)
	if err != nil {
		return Result{}, err
	}
	havePub, err := exists(pub)
	if err != nil {
		return Result{}, err
	}
	switch {
	case havePriv && havePub:
		return Result{Path: KeyFile, Action: Kept, Note: "with " + PubKeyFile}, nil
	case havePub:
		r.Warnings = append(r.Warnings, fmt.Sprintf("%s exists without %s: CI's FLEET_SSH_KEY must be the private key of %s", PubKeyFile, KeyFile, PubKeyFile))
		return Result{Path: PubKeyFile, Action: Kept}, nil
	case havePriv:
		data, err := inputfile.Read(priv, maxKey)
		if err != nil {
			return Result{}, err
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return Result{}, fmt.Errorf("%s exists but is not an unencrypted SSH private key fleet can read (%v); move it away to have a new key made", priv, err)
		}
		if _, err := writeNew(dir, PubKeyFile, authorizedKey(s.PublicKey(), project), 0o644); err != nil {
			return Result{}, err
		}
		return Result{Path: KeyFile, Action: Kept, Note: "wrote its public half to " + PubKeyFile}, nil
	}
	privPEM, pubLine, err := NewDeployKey(project)
	if err != nil {
		return Result{}, err
	}
	if err := os.MkdirAll(filepath.Dir(priv), 0o700); err != nil {
		return Result{}, err
	}
	if err := renameio.WriteFile(priv, privPEM, 0o600); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", priv, err)
	}
	if err := renameio.WriteFile(pub, pubLine, 0o644); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", pub, err)
	}
	return Result{Path: KeyFile, Action: Created, Note: "ed25519, with " + PubKeyFile}, nil
}

// NewDeployKey makes an ed25519 key pair: the private key as OpenSSH's
// PEM (as ssh-keygen writes an ed25519 key without a passphrase) and the public key as an
// authorized_keys line.
func NewDeployKey(project string) (privPEM, pubLine []byte, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(sk, comment(project))
	if err != nil {
		return nil, nil, err
	}
	spk, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), authorizedKey(spk, project), nil
}

func comment(project string) string { return "fleet-deploy@" + project }

func authorizedKey(k ssh.PublicKey, project string) []byte {
	line := bytes.TrimRight(ssh.MarshalAuthorizedKey(k), "\n")
	return append(line, " "+comment(project)+"\n"...)
}
