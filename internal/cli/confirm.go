package cli

import (
	"bufio"
	"fmt"
	"strings"
)

// confirm asks before a destructive action. Without a TTY it refuses
// unless --yes was given: a script must say what it means.
func confirm(io *IOStreams, yes bool, question string) error {
	if yes {
		return nil
	}
	if !io.CanPrompt() {
		return &RefusedError{Msg: question + ": refusing without --yes, since there is no terminal to ask"}
	}
	fmt.Fprintf(io.ErrOut, "%s? [y/N] ", question)
	line, _ := bufio.NewReader(io.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a == "y" || a == "yes" {
		return nil
	}
	return &RefusedError{Msg: "cancelled"}
}
