package cli

import (
	"context"
	"fmt"
	"github.com/fleetdeploy/fleet/internal/remote"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/lock"
	"github.com/fleetdeploy/fleet/internal/spec"
	"golang.org/x/crypto/ssh"
)

// Factory builds what commands need, on first use, from the global flags
// and the environment.
type Factory struct {
	IOStreams *IOStreams
	Version   string
	Getenv    func(string) string

	// Global flags.
	SpecPath string
	APIURL   string
	JSON     bool
	Yes      bool
	LockWait time.Duration // --lock-wait

	// Context is the running command's, so that building a client (which
	// may start the local cloud) stops on Ctrl-C too.
	Context context.Context

	spec  *spec.Spec
	cloud cloud.Cloud
	audit *deploy.Entry // the running command's journal entry, if audited
}

func (f *Factory) context() context.Context {
	if f.Context != nil {
		return f.Context
	}
	return context.Background()
}

// NewFactory returns a Factory on the process's streams and environment.
func NewFactory(version string) *Factory {
	return &Factory{IOStreams: System(), Version: version, Getenv: os.Getenv}
}

// Spec loads and validates droplets.yaml once.
func (f *Factory) Spec() (*spec.Spec, error) {
	if f.spec == nil {
		s, err := spec.Load(f.SpecPath)
		if err != nil {
			return nil, err
		}
		f.spec = s
	}
	return f.spec, nil
}

// Cloud builds the godo client for the spec's provider.
func (f *Factory) Cloud() (cloud.Cloud, error) {
	if f.cloud != nil {
		return f.cloud, nil
	}
	s, err := f.Spec()
	if err != nil {
		return nil, err
	}
	apiURL, token := f.endpoint()
	if s.Provider == "local" && apiURL == "" {
		// The local cloud needs no configuration: find it, or start it.
		lc, started, err := startLocal(f.context(), f.Getenv, startOpts{backend: defaultLocalBackend, listen: defaultLocalListen, wait: defaultLocalWait})
		if err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("provider: local: the local cloud is not running and could not be started (%v); start it with `fleet local start`", err)}
		}
		if started {
			fmt.Fprintf(f.IOStreams.ErrOut, "started the local cloud on %s (log: %s)\n", lc.URL, lc.Log)
		}
		apiURL, token = lc.URL, lc.Token
	}
	if token == "" {
		return nil, &ConfigError{Msg: "no API token: set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN) to a DigitalOcean personal access token with write scope"}
	}
	cfg := cloud.Config{Token: token, APIURL: apiURL, UserAgent: "fleet/" + f.Version}
	// Test knobs: the suite shortens waits. Never below what DO tolerates
	// unless set explicitly.
	if v := f.Getenv("FLEET_POLL_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("FLEET_POLL_INTERVAL=%q: %v", v, err)}
		}
		cfg.PollInterval, cfg.MaxPoll = d, 4*d
	}
	if v := f.Getenv("FLEET_RETRY_WAIT_MIN"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("FLEET_RETRY_WAIT_MIN=%q: %v", v, err)}
		}
		cfg.RetryWaitMin = d
	}
	c, err := cloud.New(cfg)
	if err != nil {
		return nil, err
	}
	f.cloud = c
	return c, nil
}

// endpoint is the API URL (--api-url, else FLEET_API_URL; "" for
// DigitalOcean's, or the local cloud's) and the token the environment
// gives.
func (f *Factory) endpoint() (apiURL, token string) {
	apiURL = f.APIURL
	if apiURL == "" {
		apiURL = f.Getenv("FLEET_API_URL")
	}
	token = f.Getenv("DIGITALOCEAN_TOKEN")
	if token == "" {
		token = f.Getenv("DIGITALOCEAN_ACCESS_TOKEN")
	}
	return apiURL, token
}

// Deployer ties the spec to the cloud; step gets progress phases.
func (f *Factory) Deployer(step func(string)) (*deploy.Deployer, error) {
	s, err := f.Spec()
	if err != nil {
		return nil, err
	}
	c, err := f.Cloud()
	if err != nil {
		return nil, err
	}
	// Every up waits for its droplet over SSH; the data carry, the switch,
	// backups and bakes reach droplets too.
	r, err := f.Remote()
	if err != nil {
		return nil, err
	}
	return &deploy.Deployer{Cloud: c, Spec: s, Step: step, Warnings: f.IOStreams.ErrOut, Remote: r}, nil
}

// Remote is how fleet reaches droplets over SSH: host keys pinned under
// $FLEET_HOME/known_hosts, the key in FLEET_SSH_KEY (CI), the spec's key
// files (their private halves) and ssh-agent.
func (f *Factory) Remote() (*deploy.Remote, error) {
	s, err := f.Spec()
	if err != nil {
		return nil, err
	}
	home, err := fleetHome(f.Getenv)
	if err != nil {
		return nil, err
	}
	kh := remote.KnownHosts{Dir: filepath.Join(home, "known_hosts")}
	var signers []ssh.Signer
	if s, err := envSigner(f.Getenv); err != nil {
		return nil, err
	} else if s != nil {
		signers = append(signers, s)
	}
	port, err := sshPort(f.Getenv)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, k := range s.Droplet.SSHKeys {
		if priv, ok := strings.CutSuffix(k.File, ".pub"); ok {
			if _, err := os.Stat(priv); err == nil {
				keys = append(keys, priv)
			}
		}
	}
	// On a terminal the phases show progress; piped (CI), the commands'
	// own output is streamed, redacted.
	var logTo io.Writer
	if !f.IOStreams.StderrTTY {
		logTo = f.IOStreams.ErrOut
	}
	return &deploy.Remote{
		Dialer:  &remote.Dialer{KnownHosts: kh, Signers: signers, KeyFiles: keys, Agent: true, User: "root", Port: port},
		SSHWait: s.Timeouts.SSH,
		Getenv:  f.Getenv,
		Log:     logTo,
	}, nil
}

// Lock takes the project's lock (internal/lock) for command, waiting up to
// --lock-wait while another fleet holds it. FLEET_LOCK_TTL (tests) sets
// how long a lock outlives its last renewal.
func (f *Factory) Lock(ctx context.Context, command string) (*lock.Lock, error) {
	s, err := f.Spec()
	if err != nil {
		return nil, err
	}
	c, err := f.Cloud()
	if err != nil {
		return nil, err
	}
	keys, ok := c.(lock.Keys)
	if !ok {
		return nil, fmt.Errorf("the %T cloud client cannot hold the project lock", c)
	}
	if f.LockWait < 0 {
		return nil, &UsageError{Msg: fmt.Sprintf("--lock-wait %s: must not be negative", f.LockWait)}
	}
	ttl := lock.DefaultTTL
	if v := f.Getenv("FLEET_LOCK_TTL"); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl < time.Second || ttl > time.Hour {
			return nil, &ConfigError{Msg: fmt.Sprintf("FLEET_LOCK_TTL=%q: want a duration from 1s to 1h", v)}
		}
	}
	return lock.Acquire(ctx, keys, lock.Options{
		Project: s.Project, Who: lock.Who(f.Getenv), Cmd: command, Version: f.Version, TTL: ttl, Wait: f.LockWait,
		Notify: func(msg string) { fmt.Fprintln(f.IOStreams.ErrOut, msg) },
	})
}
