package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem in a spec file, at a 1-based line and column.
// Line (and Col) are 0 when the problem has no position, e.g. an unreadable
// file, or a YAML syntax error for which yaml reports only a line.
type Error struct {
	File      string
	Line, Col int
	Msg       string
	// Omitted is set on a last Error that stands for that many problems
	// not listed (Load lists at most 100).
	Omitted int
}

// Error formats e as "file:line:col: message", leaving out the parts that are 0.
func (e Error) Error() string {
	switch {
	case e.Line == 0:
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Col == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem Load found, in file order. Load returns it as *Errors.
type Errors []Error

// Error prints one Error per line.
func (e *Errors) Error() string {
	lines := make([]string, len(*e))
	for i, err := range *e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Total is how many problems there are, listed or not.
func (e *Errors) Total() int {
	n := len(*e)
	if n > 0 && (*e)[n-1].Omitted > 0 {
		n += (*e)[n-1].Omitted - 1
	}
	return n
}

// Unwrap gives the single errors, for errors.As(err, &spec.Error{}).
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(*e))
	for i, err := range *e {
		errs[i] = err
	}
	return errs
}

// sort orders e by position; problems found at the same place keep the
// order they were found in.
func (e Errors) sort() {
	slices.SortStableFunc(e, func(a, b Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
}

// maxQuoted is how much of a value an error repeats.
const maxQuoted = 80

// quote is strconv.Quote(v), of at most the first 80 bytes of v; a longer
// value is cut (at a character boundary) and its length given:
// "AAAA…"… (30000000 bytes).
func quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(v[:cutAt(v, maxQuoted)]), len(v))
}

// clip is v unquoted, cut like quote: for names and paths shown as they are.
func clip(v string) string {
	if len(v) <= maxQuoted {
		return v
	}
	return fmt.Sprintf("%s… (%d bytes)", v[:cutAt(v, maxQuoted)], len(v))
}

// cutAt is the largest index ≤ n that starts a UTF-8 character of v.
func cutAt(v string, n int) int {
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return n
}

// clipMsg cuts a message from a library that may quote the input (a YAML
// anchor name, template text) to its first 200 bytes.
func clipMsg(msg string) string {
	if len(msg) <= 200 {
		return msg
	}
	return fmt.Sprintf("%s… (%d bytes)", msg[:cutAt(msg, 200)], len(msg))
}
