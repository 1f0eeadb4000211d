package deploy

import (
	"strings"

	"github.com/fleetdeploy/fleet/internal/remote"
)

// Every command fleet sends to a droplet is built from words, each quoted
// for the droplet's POSIX shell, never by pasting strings: a project,
// version or setting can never become shell syntax.

// sh quotes each word that needs it and joins them into one simple
// command.
func sh(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = word(w)
	}
	return strings.Join(q, " ")
}

// word is w as one shell word: bare when it holds only characters no
// shell treats specially, else single-quoted.
func word(w string) string {
	if w == "" || strings.ContainsFunc(w, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:=@%+,-", r))
	}) {
		return remote.ShellQuote(w)
	}
	return w
}

// then joins commands so each runs only if the one before succeeded.
func then(cmds ...string) string { return strings.Join(cmds, " && ") }

// to is cmd with its stdout written to file.
func to(cmd, file string) string { return cmd + " > " + word(file) }

// replace writes cmd's stdout to file.new, then renames it over file: a
// reader sees the old file or the new one, never half of one.
func replace(cmd, file string) string {
	return then(to(cmd, file+".new"), sh("mv", file+".new", file))
}

// withEnv is cmd run with NAME=value assignments; each value is quoted,
// the names are fleet's or validated by the spec.
func withEnv(cmd string, kv ...string) string {
	var b strings.Builder
	for _, a := range kv {
		name, value, _ := strings.Cut(a, "=")
		b.WriteString(name + "=" + word(value) + " ")
	}
	return b.String() + cmd
}

// composeWords is the docker compose invocation for a project's resolved
// file, as words.
func composeWords(project string, args ...string) []string {
	return append([]string{"docker", "compose", "-p", project, "-f", composeFile(project)}, args...)
}
