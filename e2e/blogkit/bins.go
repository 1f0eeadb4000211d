//go:build e2e

package blogkit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// The tools' versions (all served by the module proxy).
const (
	PebbleModule   = "github.com/letsencrypt/pebble/v2"
	PebbleVersion  = "v2.10.3"
	MailpitModule  = "github.com/axllent/mailpit"
	MailpitVersion = "v1.33.1"
)

// Tool is a Go command that EnsureBinary builds.
type Tool struct {
	Pkg     string // package path of the command, e.g. github.com/letsencrypt/pebble/v2/cmd/pebble
	Version string // module version, e.g. v2.10.3
}

// The tools the blog suite uses.
var (
	PebbleTool       = Tool{PebbleModule + "/cmd/pebble", PebbleVersion}
	ChallTestSrvTool = Tool{PebbleModule + "/cmd/pebble-challtestsrv", PebbleVersion}
	MailpitTool      = Tool{MailpitModule, MailpitVersion}
	// Tools lists them all (for a CI step that builds them ahead).
	Tools = []Tool{PebbleTool, ChallTestSrvTool, MailpitTool}
)

// Name is the command's name (the last element of its package path, less
// a major version suffix).
func (tl Tool) Name() string {
	p := tl.Pkg
	base := filepath.Base(p)
	if len(base) > 1 && base[0] == 'v' && strings.Trim(base[1:], "0123456789") == "" {
		base = filepath.Base(filepath.Dir(p))
	}
	return base
}

// BinDir is where built tools are cached: $FLEET_E2E_BIN_DIR if set, else
// <user cache dir>/fleet-e2e/bin ($XDG_CACHE_HOME or ~/.cache).
func BinDir() (string, error) {
	if d := os.Getenv("FLEET_E2E_BIN_DIR"); d != "" {
		return d, nil
	}
	c, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(c, "fleet-e2e", "bin"), nil
}

// EnsureBinary returns the path of tool's binary, building it with
// `CGO_ENABLED=0 go install pkg@version` (run outside any module, so this
// repository's go.mod is neither read nor changed) into
// BinDir()/<name>@<version>/ if it is not there yet. A lock file
// serializes concurrent builds (several test binaries may ask at once).
// The binaries are static, so they also run inside debian:trixie-slim.
func EnsureBinary(ctx context.Context, tool Tool) (string, error) {
	root, err := BinDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, tool.Name()+"@"+tool.Version)
	bin := filepath.Join(dir, tool.Name())
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil { // built by another process meanwhile
		return bin, nil
	}
	tmp, err := os.MkdirTemp(root, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	gobin := filepath.Join(tmp, "bin")
	cmd := exec.CommandContext(ctx, goCommand(), "install", tool.Pkg+"@"+tool.Version)
	cmd.Dir = tmp // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=on", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", tool.Pkg, tool.Version, err, out.String())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(filepath.Join(gobin, tool.Name()), bin); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w", tool.Pkg, tool.Version, err)
	}
	return bin, nil
}

// goCommand is the go command on PATH (go test puts its own GOROOT/bin first).
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}
