package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a spec file, at a 1-based line and column.
// Line (and Col) are 0 when the problem has no position, e.g. an unreadable
// file, or a YAML syntax error for which yaml reports only a line.
type Error struct {
	File      string
	Line, Col int
	Msg       string
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
