package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// dropletJSON is the stable JSON shape of a droplet.
type dropletJSON struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	Role       string `json:"role"`
	Status     string `json:"status"`
	PublicIPv4 string `json:"public_ipv4"`
	CreatedAt  string `json:"created_at"`
	Health     string `json:"health,omitempty"` // stack deploys: healthy or unhealthy
}

func toJSON(m *deploy.Member) *dropletJSON {
	if m == nil {
		return nil
	}
	return &dropletJSON{
		ID: m.ID, Name: m.Name, Version: m.Version, Role: string(m.Role), Status: m.Status,
		PublicIPv4: m.PublicIPv4, CreatedAt: m.CreatedAt.UTC().Format(time.RFC3339),
		Health: health(m),
	}
}

// health is what the health gate said of a droplet; "" before any gate
// ran (a provision-only deploy, or one still in progress).
func health(m *deploy.Member) string {
	switch { // failed wins: a droplet rolled back from was healthy once
	case m.HasTag(deploy.TagFailed):
		return "unhealthy"
	case m.HasTag(deploy.TagHealthy):
		return "healthy"
	}
	return ""
}

func toJSONs(ms []deploy.Member) []*dropletJSON {
	out := make([]*dropletJSON, 0, len(ms))
	for i := range ms {
		out = append(out, toJSON(&ms[i]))
	}
	return out
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages hold <project> and the like, for people too
	return enc.Encode(v)
}

// table prints aligned columns with a header on a TTY, and plain
// tab-separated rows without a header when piped (for cut and awk).
type table struct {
	tty    bool
	header []string
	rows   [][]string
}

func (t *table) add(cols ...string) { t.rows = append(t.rows, cols) }

func (t *table) print(w io.Writer) error {
	if !t.tty {
		for _, r := range t.rows {
			if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age says how long ago t was, the way an operator reads it.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// humanBytes prints a byte count for people: 512 B, 3.4 KiB, 12.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

type phaseJSON struct {
	Name    string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

func phasesJSON(ps []deploy.Phase) []phaseJSON {
	out := make([]phaseJSON, len(ps))
	for i, p := range ps {
		out[i] = phaseJSON{p.Name, p.Duration.Seconds()}
	}
	return out
}

// ErrorJSON is how a failed command reports itself on stdout with --json
// (the plain message still goes to stderr):
//
//	{"error": "no API token: ...", "code": "config", "exit": 4}
//
// Error is the message (a spec's problems one per line, as on stderr),
// Exit the process's exit code and Code its stable name (ExitCodeName).
// A command that prints its own JSON report on failure (validate) adds the
// same three fields to it. README's --json section documents this.
type ErrorJSON struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	Exit  int    `json:"exit"`
}

// exitCodeNames are the codes of ErrorJSON, one word per exit code.
var exitCodeNames = map[int]string{
	ExitError:       "error",
	ExitUsage:       "usage",
	ExitSpec:        "spec",
	ExitConfig:      "config",
	ExitRefused:     "refused",
	ExitTimeout:     "timeout",
	ExitAPI:         "api",
	ExitDeploy:      "deploy",
	ExitInterrupted: "interrupted",
}

// ExitCodeName is the stable word for an exit code ("error" for one not listed).
func ExitCodeName(code int) string {
	if n, ok := exitCodeNames[code]; ok {
		return n
	}
	return "error"
}

// printError reports err: on stderr as text, and with asJSON also on
// stdout as an ErrorJSON. It returns the exit code.
func printError(stdout, stderr io.Writer, asJSON bool, err error) int {
	code := exitCode(err)
	var (
		silent   *silentError
		specErrs *spec.Errors
	)
	switch {
	case errors.As(err, &silent):
		return code // already reported, on both streams
	case errors.As(err, &specErrs):
		// Each line already says file:line:col, for editors to jump to.
		fmt.Fprintln(stderr, err)
	default:
		fmt.Fprintln(stderr, "fleet:", err)
	}
	if asJSON {
		_ = printJSON(stdout, ErrorJSON{Error: err.Error(), Code: ExitCodeName(code), Exit: code})
	}
	return code
}

// jsonFlag reports whether args ask for --json, for errors that happen
// before (or while) the flags are parsed.
func jsonFlag(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "--json=true", "--json=1":
			return true
		}
	}
	return false
}
