package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/spf13/cobra"
)

// NewCmdLocal builds `fleet local`, the local cloud.
func NewCmdLocal(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "local",
		Short: "Run fleet's DigitalOcean-compatible API locally",
	}
	cmd.AddCommand(NewCmdLocalServe(f, nil), NewCmdLocalStart(f), NewCmdLocalStop(f), NewCmdLocalStatus(f))
	return cmd
}

// NewCmdLocalStart builds `fleet local start`.
func NewCmdLocalStart(f *Factory) *cobra.Command {
	o := startOpts{}
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start the local cloud in the background (idempotent)",
		Long: `Start fleet local serve in the background, unless it already runs. Its state,
token and log live under $FLEET_HOME/local (default: ~/.local/share/fleet).
Prints the API URL and the token; with provider: local in droplets.yaml,
fleet finds it by itself.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p := f.IOStreams.NewProgress()
			o.progress = p.Phase
			lc, started, err := startLocal(cmd.Context(), f.Getenv, o)
			p.Stop(err == nil)
			if err != nil {
				return err
			}
			return printLocal(f, lc, started)
		},
	}
	cmd.Flags().StringVar(&o.backend, "backend", defaultLocalBackend, "where droplets live: docker or memory")
	cmd.Flags().StringVar(&o.listen, "listen", defaultLocalListen, "address of the API")
	cmd.Flags().DurationVar(&o.wait, "wait", defaultLocalWait, "how long to wait for the API (the first start builds the droplet image)")
	return cmd
}

func printLocal(f *Factory, lc *localCloud, started bool) error {
	if f.JSON {
		return printJSON(f.IOStreams.Out, localJSON{Running: true, Started: &started, URL: lc.URL, Token: lc.Token, PID: lc.PID, Backend: lc.Backend, Log: lc.Log})
	}
	verb := "already running"
	if started {
		verb = "started"
	}
	fmt.Fprintf(f.IOStreams.ErrOut, "local cloud %s (%s backend, pid %d, log %s)\n", verb, lc.Backend, lc.PID, lc.Log)
	fmt.Fprintf(f.IOStreams.Out, "export FLEET_API_URL=%s\nexport DIGITALOCEAN_TOKEN=%s\n", lc.URL, lc.Token)
	return nil
}

// NewCmdLocalStop builds `fleet local stop`.
func NewCmdLocalStop(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop the local cloud; its droplets keep running",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lc, err := stopLocal(cmd.Context(), f.Getenv)
			if err != nil {
				return err
			}
			if f.JSON {
				out := localStopJSON{Stopped: lc != nil}
				if lc != nil {
					out.PID = lc.PID
				}
				return printJSON(f.IOStreams.Out, out)
			}
			if lc == nil {
				fmt.Fprintln(f.IOStreams.ErrOut, "the local cloud is not running")
				return nil
			}
			fmt.Fprintf(f.IOStreams.ErrOut, "stopped the local cloud (pid %d); its droplets keep running\n", lc.PID)
			return nil
		},
	}
}

// NewCmdLocalStatus builds `fleet local status`.
func NewCmdLocalStatus(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether the local cloud runs, and where",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := localDir(f.Getenv)
			if err != nil {
				return err
			}
			lc, ok := readLocal(dir)
			if ok && answers(cmd.Context(), lc.URL, lc.Token) {
				return printLocal(f, lc, false)
			}
			if f.JSON {
				return printJSON(f.IOStreams.Out, localJSON{Running: false})
			}
			fmt.Fprintln(f.IOStreams.Out, "the local cloud is not running: start it with `fleet local start`")
			return &silentError{&RefusedError{Msg: "not running"}}
		},
	}
}

// LocalServeOptions are the inputs of `fleet local serve`.
type LocalServeOptions struct {
	IO          *IOStreams
	JSON        bool
	Backend     string
	Listen      string
	Token       string
	BootDelay   time.Duration
	ActionDelay time.Duration
	RateLimit   int
	BurstLimit  int
	Drain       time.Duration
	Faults      string
	State       string
	Verbose     bool
}

// NewCmdLocalServe builds `fleet local serve`.
func NewCmdLocalServe(f *Factory, runF func(context.Context, *LocalServeOptions) error) *cobra.Command {
	opts := &LocalServeOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the DigitalOcean-compatible API in the foreground",
		Long: `Serve a DigitalOcean-compatible API (the endpoints fleet uses) until
interrupted. Point fleet at it with FLEET_API_URL and DIGITALOCEAN_TOKEN.

The docker backend (the default) runs each droplet as a Debian 13 container
with real cloud-init, OpenSSH and its own Docker engine, on a loopback
address 127.0.0.N; reserved IPs (127.0.0.200 up) forward ports 80 and 443
to the droplet they are assigned to; when one moves, connections open on
the old droplet are cut, as on DigitalOcean (--drain keeps them open for a
while instead). The memory backend keeps droplets in
memory: they boot after --boot-delay and run nothing but an sshd that
answers fleet's readiness gate (on their address, at the port printed as
FLEET_SSH_PORT). Faults can be injected for tests (--faults or FLEET_FAULTS,
or POST /_fleet/faults):
` + localcloud.FaultSyntax,
		Example: `  fleet local serve --backend memory --listen 127.0.0.1:8510 --token secret
  FLEET_FAULTS='POST /v2/droplets#1=500+after' fleet local serve --token secret`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.JSON = f.JSON
			if opts.Token == "" {
				opts.Token = f.Getenv("FLEET_LOCAL_TOKEN")
			}
			if opts.Token == "" {
				return &UsageError{Msg: "fleet local serve: --token is required (or FLEET_LOCAL_TOKEN): clients must send it as DIGITALOCEAN_TOKEN"}
			}
			if opts.Faults == "" {
				opts.Faults = f.Getenv("FLEET_FAULTS")
			}
			if opts.RateLimit < 0 || opts.BurstLimit < 0 {
				return &UsageError{Msg: "--rate-limit and --burst-limit must not be negative"}
			}
			if !cmd.Flags().Changed("drain") {
				if v := f.Getenv("FLEET_LOCAL_DRAIN"); v != "" {
					d, err := time.ParseDuration(v)
					if err != nil {
						return &UsageError{Msg: fmt.Sprintf("FLEET_LOCAL_DRAIN=%q: not a duration (e.g. 30s)", v)}
					}
					opts.Drain = d
				}
			}
			if opts.Drain < 0 || opts.Drain > time.Hour {
				return &UsageError{Msg: fmt.Sprintf("--drain %s: must be between 0 (cut) and 1h", opts.Drain)}
			}
			switch opts.Backend {
			case "memory", "docker":
			default:
				return &UsageError{Msg: fmt.Sprintf("--backend %q: must be memory or docker", opts.Backend)}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return localServeRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Backend, "backend", defaultLocalBackend, "where droplets live: docker (real containers) or memory")
	fl.StringVar(&opts.Listen, "listen", defaultLocalListen, "address to listen on")
	fl.StringVar(&opts.Token, "token", "", "bearer token clients must send (env FLEET_LOCAL_TOKEN)")
	fl.DurationVar(&opts.BootDelay, "boot-delay", time.Second, "memory backend: time a droplet stays new")
	fl.DurationVar(&opts.ActionDelay, "action-delay", 300*time.Millisecond, "time a reserved IP action stays in progress")
	fl.IntVar(&opts.RateLimit, "rate-limit", 0, "requests per hour before 429 (0: DigitalOcean's 5000)")
	fl.IntVar(&opts.BurstLimit, "burst-limit", 0, "requests per minute before a 429 with Retry-After (0: DigitalOcean's 250)")
	fl.DurationVar(&opts.Drain, "drain", 0, "docker backend: how long connections open on a reserved IP stay on the old droplet after it moves (0: cut at once, as DigitalOcean does; env FLEET_LOCAL_DRAIN)")
	fl.StringVar(&opts.Faults, "faults", "", "faults to inject (env FLEET_FAULTS)")
	fl.StringVar(&opts.State, "state", "", "file that keeps the state across restarts (default: memory only)")
	fl.BoolVarP(&opts.Verbose, "verbose", "v", false, "log every request to stderr")
	return cmd
}

func localServeRun(ctx context.Context, opts *LocalServeOptions) error {
	faults, err := localcloud.ParseFaults(opts.Faults)
	if err != nil {
		return &UsageError{Msg: "--faults: " + err.Error()}
	}
	lo := localcloud.Options{
		Token: opts.Token, BootDelay: opts.BootDelay, ActionDelay: opts.ActionDelay,
		RateLimit: opts.RateLimit, BurstLimit: opts.BurstLimit, Faults: faults, StatePath: opts.State,
	}
	if opts.Verbose {
		lo.Logf = func(format string, args ...any) { fmt.Fprintf(opts.IO.ErrOut, format+"\n", args...) }
	}
	logf := func(format string, args ...any) { fmt.Fprintf(opts.IO.ErrOut, format+"\n", args...) }
	if opts.Backend == "docker" {
		// The reserved IPs answer on 80 and 443 through the forwarder;
		// a switch cuts open connections, as on DigitalOcean, unless
		// --drain gives them time (tests of stragglers).
		fwd := localcloud.NewForwarder([]int{80, 443}, opts.Drain)
		fwd.Logf = logf
		defer fwd.Close()
		// One instance label per state file, so two local clouds (or a
		// test run) never adopt each other's containers.
		instance := "default"
		if opts.State != "" {
			sum := sha256.Sum256([]byte(opts.State))
			instance = hex.EncodeToString(sum[:6])
		}
		// The package and image mirrors are engine-wide, shared by every
		// local cloud on the engine.
		fmt.Fprintln(opts.IO.ErrOut, "starting the package and image mirrors (the first time builds their image)")
		mirrors, err := localcloud.EnsureMirrors(ctx, opts.IO.ErrOut)
		if err != nil {
			return err
		}
		fmt.Fprintf(opts.IO.ErrOut, "apt proxy %s, registry mirror %s\n", mirrors.AptProxy, mirrors.RegistryMirror)
		fmt.Fprintln(opts.IO.ErrOut, "preparing the droplet image (the first time builds it, a few minutes)")
		be, err := localcloud.NewDockerBackend(ctx, localcloud.DockerOptions{
			Instance: instance, Log: opts.IO.ErrOut, Router: fwd,
			AptProxy: mirrors.AptProxy, RegistryMirror: mirrors.RegistryMirror,
		})
		if err != nil {
			return err
		}
		lo.Backend = be
	} else {
		// Memory droplets answer SSH (fleet up's readiness gate) on
		// their address at a port of their own, kept with the state.
		sshd, err := localcloud.NewMemorySSH()
		if err != nil {
			return err
		}
		defer sshd.Close()
		if opts.State != "" {
			sshd.Dir = opts.State + ".disks"
		}
		lo.SSH = sshd
	}
	srv, err := localcloud.NewServer(lo)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return &UsageError{Msg: fmt.Sprintf("--listen %s: %v", opts.Listen, err)}
	}
	hs := localcloud.NewHTTPServer(srv.Handler())
	url := "http://" + ln.Addr().String()
	sshPort := 0
	if lo.SSH != nil {
		sshPort = lo.SSH.Port
	}
	if opts.JSON {
		if err := printJSON(opts.IO.Out, localServeJSON{URL: url, Backend: opts.Backend, SSHPort: sshPort}); err != nil {
			ln.Close()
			return err
		}
	} else {
		fmt.Fprintf(opts.IO.Out, "fleet local cloud (%s backend) serving on %s\n", opts.Backend, url)
		if sshPort != 0 {
			fmt.Fprintf(opts.IO.Out, "export FLEET_API_URL=%s DIGITALOCEAN_TOKEN=<the --token value> FLEET_SSH_PORT=%d\n", url, sshPort)
		} else {
			fmt.Fprintf(opts.IO.Out, "export FLEET_API_URL=%s DIGITALOCEAN_TOKEN=<the --token value>\n", url)
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
