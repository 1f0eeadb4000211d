package cli

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/spf13/cobra"
)

// pickDroplet returns the named droplet, or by default the live one, or
// else the newest (a failed candidate is what an operator wants to see).
func pickDroplet(ctx context.Context, f *Factory, name string) (*deploy.Member, *deploy.Remote, error) {
	d, err := f.Deployer(nil)
	if err != nil {
		return nil, nil, err
	}
	st, err := d.State(ctx)
	if err != nil {
		return nil, nil, err
	}
	var m *deploy.Member
	switch {
	case name != "":
		if m = st.Find(name); m == nil {
			return nil, nil, &deploy.ConflictError{Msg: fmt.Sprintf("no droplet %q in project %s (droplets: %v)", name, st.Project, st.Names())}
		}
	case st.Live() != nil:
		m = st.Live()
	case len(st.Members) > 0:
		m = &st.Members[0]
	default:
		return nil, nil, &deploy.ConflictError{Msg: "project " + st.Project + " has no droplets: run `fleet up VERSION`"}
	}
	if m.PublicIPv4 == "" {
		return nil, nil, &deploy.ConflictError{Msg: m.Name + " has no public IPv4 yet"}
	}
	return m, d.Remote, nil
}

// NewCmdSSH builds `fleet ssh [DROPLET] [-- COMMAND]`.
func NewCmdSSH(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh [DROPLET] [-- COMMAND...]",
		Short: "Log in to a droplet with the system ssh, verified by its recorded host key",
		Long: `Run the system ssh as root on a droplet (default: the live one, else the
newest), with StrictHostKeyChecking=yes. fleet first verifies the droplet
against the host key recorded in the cloud (its fleet-hostkey: tag) and
caches that key under $FLEET_HOME/known_hosts, the only file ssh trusts.`,
		ValidArgsFunction: completeDroplets(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if n := cmd.ArgsLenAtDash(); n != 0 && len(args) > 0 {
				name, args = args[0], args[1:]
			}
			m, r, err := pickDroplet(cmd.Context(), f, name)
			if err != nil {
				return err
			}
			bin, err := exec.LookPath("ssh")
			if err != nil {
				return &ConfigError{Msg: "the system ssh client is missing: apt-get install openssh-client"}
			}
			// Verify the droplet against the host key the cloud records;
			// the handshake leaves it in the cache OpenSSH reads.
			c, err := r.Dial(cmd.Context(), &m.Droplet, r.SSHWait)
			if err != nil {
				return err
			}
			key := c.HostKey()
			c.Close()
			// ssh trusts that file alone: it must hold the key just
			// verified, not a stale one a failed cache write left.
			port := 22
			if r.Dialer.Port != 0 {
				port = r.Dialer.Port
			}
			if err := r.Dialer.KnownHosts.Pin(m.Name, net.JoinHostPort(m.PublicIPv4, strconv.Itoa(port)), key); err != nil {
				return &ConfigError{Msg: fmt.Sprintf("caching the verified host key of %s for ssh: %v", m.Name, err)}
			}
			// Only that file counts (no system-wide known_hosts, no
			// KnownHostsCommand, ed25519 only), and the agent that may hold
			// FLEET_SSH_KEY is never forwarded to the droplet.
			sshArgs := []string{"ssh", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + r.Dialer.KnownHosts.Path(m.Name),
				"-o", "GlobalKnownHostsFile=/dev/null", "-o", "KnownHostsCommand=none", "-o", "UpdateHostKeys=no",
				"-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ForwardAgent=no"}
			if r.Dialer.Port != 0 {
				sshArgs = append(sshArgs, "-p", strconv.Itoa(r.Dialer.Port))
			}
			for _, k := range r.Dialer.KeyFiles {
				sshArgs = append(sshArgs, "-i", k)
			}
			sshArgs = append(sshArgs, "root@"+m.PublicIPv4)
			sshArgs = append(sshArgs, args...)
			if len(r.Dialer.Signers) > 0 {
				return runSSHWithAgent(cmd.Context(), f, bin, sshArgs, r.Dialer.Signers)
			}
			return syscall.Exec(bin, sshArgs, sshEnv())
		},
	}
}

// NewCmdLogs builds `fleet logs [SERVICE] [-f]`.
func NewCmdLogs(f *Factory) *cobra.Command {
	var follow bool
	var droplet string
	cmd := &cobra.Command{
		Use:   "logs [SERVICE]",
		Short: "Show the stack's container logs on a droplet",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.Spec()
			if err != nil {
				return err
			}
			words := []string{"logs", "--no-color"}
			if follow {
				words = append(words, "--follow")
			}
			words = append(words, args...)
			return runRemote(cmd.Context(), f, droplet, deploy.ComposeCmd(s.Project, words...), false)
		},
	}
	// -f is the global --file, so follow has no shorthand.
	cmd.Flags().BoolVar(&follow, "follow", false, "keep streaming new lines")
	cmd.Flags().StringVar(&droplet, "droplet", "", "droplet to read (default: the live one, else the newest)")
	return cmd
}

// NewCmdExec builds `fleet exec SERVICE -- CMD...`.
func NewCmdExec(f *Factory) *cobra.Command {
	var droplet string
	cmd := &cobra.Command{
		Use:   "exec SERVICE -- COMMAND...",
		Short: "Run a command in one of the stack's containers",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return &UsageError{Msg: "usage: fleet exec SERVICE -- COMMAND... (e.g. fleet exec app -- python3 manage.py migrate)"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.Spec()
			if err != nil {
				return err
			}
			c := deploy.ComposeCmd(s.Project, append([]string{"exec", "-T", args[0]}, args[1:]...)...)
			return runRemote(cmd.Context(), f, droplet, c, true)
		},
	}
	cmd.Flags().StringVar(&droplet, "droplet", "", "droplet to run on (default: the live one, else the newest)")
	return cmd
}

func runRemote(ctx context.Context, f *Factory, droplet, command string, stdin bool) error {
	m, r, err := pickDroplet(ctx, f, droplet)
	if err != nil {
		return err
	}
	c, err := r.Dial(ctx, &m.Droplet, r.SSHWait)
	if err != nil {
		return err
	}
	defer c.Close()
	var in = f.IOStreams.In
	if !stdin {
		in = nil
	}
	return c.Run(ctx, command, in, f.IOStreams.Out, f.IOStreams.ErrOut)
}

// sshPort reads FLEET_SSH_PORT, the port droplets' sshd listens on when
// it is not 22 (the test suite's in-process local cloud); 0 means 22.
func sshPort(getenv func(string) string) (int, error) {
	v := getenv("FLEET_SSH_PORT")
	if v == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		return 0, &ConfigError{Msg: fmt.Sprintf("FLEET_SSH_PORT=%q: want a port number from 1 to 65535", v)}
	}
	return p, nil
}
