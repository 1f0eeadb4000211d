package remotetest

import (
	"bytes"
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Command is the record of one command the server received.
type Command struct {
	Line string // as sent
	// Calls are the simple commands the remote shell (bash) would run, in
	// source order, with quotes removed: what a test asserts to check that
	// a command line was built from quoted arguments. An argument to
	// `sh -c` is one argument; Parse it to look inside.
	Calls []Call
	// ParseErr is why Line is not valid shell (then Calls is nil).
	ParseErr error
	Env      []string // NAME=value pairs sent with the session's env requests
	// Stdin is what the handler read of stdin (its first MaxStdinRecord
	// bytes); StdinBytes counts all of it.
	Stdin      []byte
	StdinBytes int64
	Signals    []string // signals the client sent to it
	Done       bool     // the handler returned
	Result     Result   // how it ended, once Done
}

// Call is one simple command.
type Call struct {
	// Assigns are its leading NAME=value words, values unquoted.
	Assigns []string
	// Args is its argv. A word with an expansion the shell would do at run
	// time ($x, $(cmd), $((1+1))) keeps its source text, quotes and all.
	Args []string
}

func newCommand(line string, env []string) *Command {
	c := &Command{Line: line, Env: env}
	c.Calls, c.ParseErr = Parse(line)
	return c
}

func (c *Command) copy() Command {
	d := *c
	d.Calls = append([]Call(nil), c.Calls...)
	d.Env = append([]string(nil), c.Env...)
	d.Stdin = append([]byte(nil), c.Stdin...)
	d.Signals = append([]string(nil), c.Signals...)
	return d
}

// Find is the first call whose program is name, or nil.
func (c *Command) Find(name string) *Call {
	for i := range c.Calls {
		if len(c.Calls[i].Args) > 0 && c.Calls[i].Args[0] == name {
			return &c.Calls[i]
		}
	}
	return nil
}

// Parse splits a shell command line (bash syntax) into the simple commands
// it runs, including those in pipelines, lists, subshells, functions and
// command substitutions, in source order.
func Parse(line string) ([]Call, error) {
	f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(bytes.NewReader([]byte(line)), "")
	if err != nil {
		return nil, err
	}
	var calls []Call
	var werr error
	syntax.Walk(f, func(n syntax.Node) bool {
		ce, ok := n.(*syntax.CallExpr)
		if !ok || len(ce.Args) == 0 || werr != nil {
			return werr == nil
		}
		var c Call
		for _, a := range ce.Assigns {
			v := []string{""}
			if a.Value != nil {
				if v, werr = words(a.Value); werr != nil {
					return false
				}
			}
			c.Assigns = append(c.Assigns, a.Name.Value+"="+strings.Join(v, " "))
		}
		for _, w := range ce.Args {
			f, err := words(w)
			if err != nil {
				werr = err
				return false
			}
			c.Args = append(c.Args, f...)
		}
		calls = append(calls, c)
		return true
	})
	return calls, werr
}

// words are the fields w expands to with quotes removed (more than one
// only by brace expansion), or, when the shell would expand something in
// it at run time, its source text.
func words(w *syntax.Word) ([]string, error) {
	static := true
	syntax.Walk(w, func(n syntax.Node) bool {
		switch n.(type) {
		case *syntax.ParamExp, *syntax.CmdSubst, *syntax.ArithmExp, *syntax.ProcSubst, *syntax.ExtGlob:
			static = false
		}
		return static
	})
	if lit, ok := w.Parts[0].(*syntax.Lit); ok && strings.HasPrefix(lit.Value, "~") {
		static = false // ~ is $HOME
	}
	if static {
		// No ReadDir in the config: no globbing, "*" stays itself. A
		// fresh Config each time: expand writes into the one it is given,
		// and nil means a shared global (a data race between sessions).
		f, err := expand.Fields(&expand.Config{}, w)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", w.Pos(), err)
		}
		return f, nil
	}
	var b bytes.Buffer
	if err := syntax.NewPrinter().Print(&b, w); err != nil {
		return nil, err
	}
	return []string{b.String()}, nil
}
