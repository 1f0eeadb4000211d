package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// signerAgent offers signers (FLEET_SSH_KEY's) to the system ssh as an
// ssh-agent that can only list and sign: the key never touches the disk
// and cannot be extracted or changed through the socket.
type signerAgent struct{ signers []ssh.Signer }

var errReadOnlyAgent = errors.New("fleet's agent only lists and signs")

func (a *signerAgent) List() ([]*agent.Key, error) {
	keys := make([]*agent.Key, len(a.signers))
	for i, s := range a.signers {
		pub := s.PublicKey()
		keys[i] = &agent.Key{Format: pub.Type(), Blob: pub.Marshal(), Comment: "FLEET_SSH_KEY"}
	}
	return keys, nil
}

func (a *signerAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

// SignWithFlags honours the rsa-sha2 flags OpenSSH sends for RSA keys.
func (a *signerAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	for _, s := range a.signers {
		if string(s.PublicKey().Marshal()) != string(key.Marshal()) {
			continue
		}
		algo := ""
		switch {
		case flags&agent.SignatureFlagRsaSha512 != 0:
			algo = ssh.KeyAlgoRSASHA512
		case flags&agent.SignatureFlagRsaSha256 != 0:
			algo = ssh.KeyAlgoRSASHA256
		}
		if as, ok := s.(ssh.AlgorithmSigner); ok && algo != "" {
			return as.SignWithAlgorithm(rand.Reader, data, algo)
		}
		return s.Sign(rand.Reader, data)
	}
	return nil, errors.New("fleet's agent does not hold that key")
}

func (a *signerAgent) Signers() ([]ssh.Signer, error) { return a.signers, nil }
func (a *signerAgent) Add(agent.AddedKey) error       { return errReadOnlyAgent }
func (a *signerAgent) Remove(ssh.PublicKey) error     { return errReadOnlyAgent }
func (a *signerAgent) RemoveAll() error               { return errReadOnlyAgent }
func (a *signerAgent) Lock([]byte) error              { return errReadOnlyAgent }
func (a *signerAgent) Unlock([]byte) error            { return errReadOnlyAgent }
func (a *signerAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}

// serveAgent serves signers on a socket in a new directory only this
// user can enter; stop closes it and removes the directory.
func serveAgent(signers []ssh.Signer) (sock string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "fleet-agent-") // 0700
	if err != nil {
		return "", nil, fmt.Errorf("FLEET_SSH_KEY agent: %w", err)
	}
	sock = filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("FLEET_SSH_KEY agent: %w", err)
	}
	a := &signerAgent{signers: signers}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _ = agent.ServeAgent(a, c) }()
		}
	}()
	return sock, func() { ln.Close(); os.RemoveAll(dir) }, nil
}

// childExit is a child's exit status that fleet passes on as its own.
type childExit struct{ code int }

func (e *childExit) Error() string { return fmt.Sprintf("ssh exited with status %d", e.code) }

// runSSHWithAgent runs the system ssh as a child with FLEET_SSH_KEY in an
// agent of its own (an exec'd ssh could not reach fleet's memory). A
// cancelled ctx (SIGTERM to fleet) ends ssh too.
func runSSHWithAgent(ctx context.Context, f *Factory, bin string, args []string, signers []ssh.Signer) error {
	sock, stop, err := serveAgent(signers)
	if err != nil {
		return err
	}
	defer stop()
	cmd := exec.CommandContext(ctx, bin, args[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f.IOStreams.In, f.IOStreams.Out, f.IOStreams.ErrOut
	cmd.Env = append(sshEnv(), "SSH_AUTH_SOCK="+sock)
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if code < 0 { // killed by a signal: ssh's own code for errors
			code = 255
		}
		return &silentError{&childExit{code: code}}
	}
	return err
}

// secretEnv are variables the system ssh must not pass on (to a
// ProxyCommand or LocalCommand): fleet's credentials.
var secretEnv = []string{"FLEET_SSH_KEY", "DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "FLEET_LOCAL_TOKEN"}

// sshEnv is fleet's environment without its credentials.
func sshEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return slices.Contains(secretEnv, name)
	})
}
