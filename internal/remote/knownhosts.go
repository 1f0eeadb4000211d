package remote

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// KnownHosts keeps one OpenSSH known_hosts file per droplet in Dir
// ($FLEET_HOME/known_hosts). Each file holds exactly one line: the pinned key
// for the droplet's address.
type KnownHosts struct{ Dir string }

// Path is the known_hosts file of droplet.
func (k KnownHosts) Path(droplet string) string {
	return filepath.Join(k.Dir, droplet)
}

// checkDroplet keeps a droplet name from naming a file outside Dir.
func checkDroplet(droplet string) error {
	if droplet == "" || droplet == "." || droplet == ".." ||
		strings.ContainsAny(droplet, `/\`) || strings.ContainsRune(droplet, 0) {
		return fmt.Errorf("invalid droplet name %q for a known_hosts file", droplet)
	}
	return nil
}

// Pin atomically replaces the droplet's known_hosts file with one line per
// key for addr ("IP" or "IP:port"): usually one key, or the current and
// the next while a rotation is under way. The file is 0600, its directory
// 0700.
func (k KnownHosts) Pin(droplet, addr string, keys ...ssh.PublicKey) error {
	if err := checkDroplet(droplet); err != nil {
		return err
	}
	if len(keys) == 0 || slices.Contains(keys, nil) {
		return fmt.Errorf("pin host key for %s: no key", droplet)
	}
	if k.Dir == "" {
		return errors.New("pin host key: no known_hosts directory configured")
	}
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	var line string
	for _, key := range keys {
		line += knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	}

	// CreateTemp makes the file 0600; rename replaces the old file in one step,
	// so a reader sees either the old pin or the new one, never a torn file.
	tmp, err := os.CreateTemp(k.Dir, "."+droplet+".tmp-*")
	if err != nil {
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.WriteString(line); err != nil {
		tmp.Close()
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	if err := os.Rename(tmp.Name(), k.Path(droplet)); err != nil {
		return fmt.Errorf("pin host key for %s: %w", droplet, err)
	}
	return nil
}

// Forget removes the droplet's known_hosts file. Forgetting a droplet that has
// no pinned key is not an error.
func (k KnownHosts) Forget(droplet string) error {
	if err := checkDroplet(droplet); err != nil {
		return err
	}
	if err := os.Remove(k.Path(droplet)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget host key for %s: %w", droplet, err)
	}
	return nil
}

// HostKeyMismatchError is returned when a droplet presents a host key other
// than the pinned one. fleet never connects in that case.
type HostKeyMismatchError struct {
	Droplet string
	Addr    string
	Want    string // SHA256 fingerprint(s) of the trusted key(s)
	Got     string // SHA256 fingerprint of the key the server presented
	// Recorded: Want is what the cloud records (fleet-hostkey: tags), not a
	// local pin.
	Recorded bool
}

func (e *HostKeyMismatchError) Error() string {
	what := "changed: pinned"
	if e.Recorded {
		what = "does not match the fingerprint recorded in the cloud (fleet-hostkey: tags): recorded"
	}
	return fmt.Sprintf("host key for %s (%s) %s %s, server presented %s; "+
		"this is a possible man-in-the-middle attack; fleet refuses to connect",
		e.Droplet, e.Addr, what, e.Want, e.Got)
}

// NoPinnedKeyError is returned when a droplet has no pinned key for the
// address being dialled.
type NoPinnedKeyError struct {
	Droplet string
	Addr    string
	Path    string
	Other   bool // the file exists but pins a different address
	// Unrecorded: the cloud records no host key for the droplet either.
	Unrecorded bool
}

func (e *NoPinnedKeyError) Error() string {
	if e.Unrecorded {
		return errUnrecorded(e)
	}
	if e.Other {
		return fmt.Sprintf("no host key pinned for %s at %s (%s pins a different address); fleet refuses to connect",
			e.Droplet, e.Addr, e.Path)
	}
	return fmt.Sprintf("no host key pinned for %s (%s does not exist); fleet refuses to connect to an unverified host",
		e.Droplet, e.Path)
}

// Callback returns a host key callback that accepts only the key pinned for
// droplet. A missing file is an error: fleet never trusts on first use.
func (k KnownHosts) Callback(droplet string) (ssh.HostKeyCallback, error) {
	cb, _, err := k.load(droplet)
	return cb, err
}

// load returns the callback and the host key algorithms matching the pinned
// keys, so the server is asked for the pinned key type and not another key
// it also holds.
func (k KnownHosts) load(droplet string) (ssh.HostKeyCallback, []string, error) {
	if err := checkDroplet(droplet); err != nil {
		return nil, nil, err
	}
	path := k.Path(droplet)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, &NoPinnedKeyError{Droplet: droplet, Path: path}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read pinned host key for %s: %w", droplet, err)
	}
	var algos []string
	seen := map[string]bool{}
	for rest := data; ; {
		var key ssh.PublicKey
		_, _, key, _, rest, err = ssh.ParseKnownHosts(rest)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read pinned host key for %s: %s: %w", droplet, path, err)
		}
		for _, a := range algorithmsFor(key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	if len(algos) == 0 {
		return nil, nil, &NoPinnedKeyError{Droplet: droplet, Path: path}
	}
	check, err := knownhosts.New(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read pinned host key for %s: %w", droplet, err)
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return &NoPinnedKeyError{Droplet: droplet, Addr: hostname, Path: path, Other: true}
			}
			return &HostKeyMismatchError{
				Droplet: droplet,
				Addr:    hostname,
				Want:    ssh.FingerprintSHA256(ke.Want[0].Key),
				Got:     ssh.FingerprintSHA256(key),
			}
		}
		return err
	}
	return cb, algos, nil
}

// algorithmsFor lists the host key signature algorithms a key of type t can
// be presented with.
func algorithmsFor(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}
