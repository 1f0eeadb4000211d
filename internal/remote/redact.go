package remote

import (
	"bytes"
	"io"
	"sort"
	"strings"
	"sync"
)

// Redactor is an io.Writer that replaces secret values with "[redacted]".
// It holds back the end of a write that could be the start of a secret, so
// Flush must be called once writing is over.
type Redactor interface {
	io.Writer
	Flush() error
}

const redacted = "[redacted]"

// minSecretLen: values shorter than this are not redacted. Replacing every
// "1", "on" or "ok" in the output would make it unreadable while hiding
// nothing: a secret of one or two bytes is guessed in at most 65536 tries
// whether or not it is printed.
const minSecretLen = 3

// minLineLen: each line of a multi-line secret (a PEM key, a certificate
// bundle) this long is a secret of its own, so part of one is still caught:
// `tail -n 5 key.pem`, an error's tail cut inside it, re-indented or CRLF
// output. 8 bytes of base64 are already 48 bits of the key.
const minLineLen = 8

// NewRedactor returns a Redactor writing to w with every occurrence of each
// secret (of at least minSecretLen bytes) replaced by "[redacted]", even when
// a value is split across Write calls. Each line of a multi-line secret (of
// at least minLineLen bytes, without surrounding blanks) is redacted on its
// own too. Where secrets overlap, the longest one matching at a position
// wins.
func NewRedactor(w io.Writer, secrets []string) Redactor {
	return newRedactor(w, expandSecrets(secrets))
}

// expandSecrets is secrets with the lines of the multi-line ones added,
// deduplicated, longest first.
func expandSecrets(secrets []string) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	add := func(s string, min int) {
		if len(s) >= min && !seen[s] {
			seen[s] = true
			out = append(out, []byte(s))
		}
	}
	for _, s := range secrets {
		add(s, minSecretLen)
		if !strings.ContainsAny(s, "\r\n") {
			continue
		}
		add(strings.TrimRight(s, "\r\n"), minSecretLen)
		for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
			add(strings.TrimSpace(l), minLineLen)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

func newRedactor(w io.Writer, secrets [][]byte) *redactor {
	r := &redactor{w: w, secrets: secrets}
	for _, s := range secrets {
		r.byFirst[s[0]] = append(r.byFirst[s[0]], s) // stays longest first
	}
	return r
}

type redactor struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte      // longest first
	byFirst [256][][]byte // secrets by their first byte, longest first
	pending []byte        // at most the longest secret's length - 1 bytes
}

// Write accepts all of p; what it cannot yet tell is not part of a secret
// is held back until the next Write or Flush.
func (r *redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.secrets) == 0 {
		return r.w.Write(p)
	}
	buf := append(r.pending, p...)
	out, keep := r.redact(buf, false)
	r.pending = append(r.pending[:0:0], keep...)
	if len(out) > 0 {
		if _, err := r.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what Write held back.
func (r *redactor) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	out, _ := r.redact(r.pending, true)
	r.pending = nil
	_, err := r.w.Write(out)
	return err
}

// redact returns buf with secrets replaced, and, unless final, the tail of
// buf that is a proper prefix of some secret and so must wait for more input.
func (r *redactor) redact(buf []byte, final bool) (out, keep []byte) {
	out = make([]byte, 0, len(buf))
	start := 0 // buf[start:i] is known to be clear
	for i := 0; i < len(buf); {
		rest := buf[i:]
		if !final && r.couldStart(rest) {
			out = append(out, buf[start:i]...)
			return out, rest
		}
		if s := r.matchAt(rest); s != nil {
			out = append(out, buf[start:i]...)
			out = append(out, redacted...)
			i += len(s)
			start = i
			continue
		}
		i++
	}
	return append(out, buf[start:]...), nil
}

// couldStart reports whether rest is shorter than some secret and is its
// beginning: more input may complete it (and a longer secret must win over
// a shorter one matching here already).
func (r *redactor) couldStart(rest []byte) bool {
	if len(rest) == 0 || len(rest) >= len(r.secrets[0]) {
		return false
	}
	for _, s := range r.byFirst[rest[0]] {
		if len(rest) < len(s) && bytes.HasPrefix(s, rest) {
			return true
		}
	}
	return false
}

// matchAt is the longest secret rest begins with.
func (r *redactor) matchAt(rest []byte) []byte {
	for _, s := range r.byFirst[rest[0]] {
		if bytes.HasPrefix(rest, s) {
			return s
		}
	}
	return nil
}
