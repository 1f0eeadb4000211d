package remote

import (
	"bytes"
	"io"
	"sort"
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

// NewRedactor returns a Redactor writing to w with every occurrence of each
// secret (of at least minSecretLen bytes) replaced by "[redacted]", even when
// a value is split across Write calls. Where secrets overlap, the longest
// one matching at a position wins.
func NewRedactor(w io.Writer, secrets []string) Redactor {
	r := &redactor{w: w}
	seen := map[string]bool{}
	for _, s := range secrets {
		if len(s) >= minSecretLen && !seen[s] {
			seen[s] = true
			r.secrets = append(r.secrets, []byte(s))
		}
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return r
}

type redactor struct {
	mu      sync.Mutex
	w       io.Writer
	secrets [][]byte // longest first
	pending []byte   // at most the longest secret's length - 1 bytes
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
	for _, s := range r.secrets {
		if len(rest) < len(s) && bytes.HasPrefix(s, rest) {
			return true
		}
	}
	return false
}

// matchAt is the longest secret rest begins with.
func (r *redactor) matchAt(rest []byte) []byte {
	for _, s := range r.secrets {
		if bytes.HasPrefix(rest, s) {
			return s
		}
	}
	return nil
}

// redactString redacts a complete text with r's secrets.
func (r *redactor) redactString(s string) string {
	if len(r.secrets) == 0 {
		return s
	}
	out, _ := r.redact([]byte(s), true)
	return string(out)
}
