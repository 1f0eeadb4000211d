package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// localCloud is a running `fleet local serve` started by `fleet local
// start`, as recorded in $FLEET_HOME/local/local.json.
type localCloud struct {
	PID     int    `json:"pid"`
	URL     string `json:"url"`
	Token   string `json:"token"`
	Backend string `json:"backend"`
	Log     string `json:"log"`
	Started string `json:"started"`
}

// fleetHome is $FLEET_HOME, or fleet's XDG data directory.
func fleetHome(getenv func(string) string) (string, error) {
	if h := getenv("FLEET_HOME"); h != "" {
		return h, nil
	}
	if x := getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "fleet"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", &ConfigError{Msg: "cannot find a home for fleet's files: set FLEET_HOME"}
	}
	return filepath.Join(home, ".local", "share", "fleet"), nil
}

func localDir(getenv func(string) string) (string, error) {
	h, err := fleetHome(getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(h, "local"), nil
}

// readLocal returns the recorded local cloud if its process still runs.
func readLocal(dir string) (*localCloud, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "local.json"))
	if err != nil {
		return nil, false
	}
	var lc localCloud
	if json.Unmarshal(b, &lc) != nil || lc.PID <= 0 {
		return nil, false
	}
	// Signal 0 checks the process exists without touching it.
	if err := syscall.Kill(lc.PID, 0); err != nil {
		return &lc, false
	}
	return &lc, true
}

func writeLocal(dir string, lc *localCloud) error {
	b, _ := json.MarshalIndent(lc, "", "  ")
	tmp := filepath.Join(dir, ".local.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "local.json"))
}

// localToken is the local cloud's bearer token, made once and kept (0600)
// so clients keep working across restarts.
func localToken(dir string) (string, error) {
	p := filepath.Join(dir, "token")
	if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := "fleet-local-" + hex.EncodeToString(raw)
	return tok, os.WriteFile(p, []byte(tok+"\n"), 0o600)
}

// answers reports whether the API at url accepts token.
func answers(ctx context.Context, url, token string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v2/account", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Defaults of the local cloud, shared by `local start`, `local serve` and
// the automatic start for provider: local.
const (
	defaultLocalBackend = "docker"
	defaultLocalListen  = "127.0.0.1:8510"
	defaultLocalWait    = 15 * time.Minute // the first start builds the droplet image
)

type startOpts struct {
	backend, listen string
	wait            time.Duration
	progress        func(string)
}

// startLocal starts `fleet local serve` in the background, detached from
// this terminal, unless one already runs. The token reaches it through
// the environment, never its arguments.
func startLocal(ctx context.Context, getenv func(string) string, o startOpts) (*localCloud, bool, error) {
	dir, err := localDir(getenv)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	if lc, ok := readLocal(dir); ok && answers(ctx, lc.URL, lc.Token) {
		return lc, false, nil
	}
	token, err := localToken(dir)
	if err != nil {
		return nil, false, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, false, err
	}
	logPath := filepath.Join(dir, "local.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, false, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s: fleet local start (%s backend, %s)\n", time.Now().UTC().Format(time.RFC3339), o.backend, o.listen)
	cmd := exec.Command(self, "local", "serve", "--backend", o.backend, "--listen", o.listen,
		"--state", filepath.Join(dir, "state.json"))
	cmd.Env = append(os.Environ(), "FLEET_LOCAL_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this terminal
	if err := cmd.Start(); err != nil {
		return nil, false, err
	}
	lc := &localCloud{PID: cmd.Process.Pid, URL: "http://" + o.listen, Token: token, Backend: o.backend,
		Log: logPath, Started: time.Now().UTC().Format(time.RFC3339)}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if o.progress != nil {
		o.progress("starting the local cloud (first start builds the droplet image; log: " + logPath + ")")
	}
	deadline := time.After(o.wait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !answers(ctx, lc.URL, token) {
		select {
		case err := <-exited:
			return nil, false, fmt.Errorf("the local cloud exited (%v); last lines of %s:\n%s", err, logPath, tail(logPath, 15))
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return nil, false, fmt.Errorf("the local cloud did not answer on %s within %s; see %s", lc.URL, o.wait, logPath)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return nil, false, ctx.Err()
		case <-tick.C:
		}
	}
	if err := writeLocal(dir, lc); err != nil {
		return nil, false, err
	}
	_ = cmd.Process.Release()
	return lc, true, nil
}

// stopLocal stops the recorded local cloud by its PID. Droplets keep
// running: the next start adopts them.
func stopLocal(ctx context.Context, getenv func(string) string) (*localCloud, error) {
	dir, err := localDir(getenv)
	if err != nil {
		return nil, err
	}
	lc, ok := readLocal(dir)
	if !ok {
		_ = os.Remove(filepath.Join(dir, "local.json"))
		return nil, nil
	}
	if err := syscall.Kill(lc.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(lc.PID, 0) == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the local cloud (pid %d) did not stop within 30s", lc.PID)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return lc, os.Remove(filepath.Join(dir, "local.json"))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
