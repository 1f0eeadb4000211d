package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetdeploy/fleet/internal/deploy"
	"github.com/fleetdeploy/fleet/internal/spec"
)

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
// stdout as an ErrorJSON (jsonout.go). It returns the exit code.
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
		_ = printJSON(stdout, ErrorJSON{Error: newErrorDetail(err)})
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
