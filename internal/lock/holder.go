package lock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Holder is who holds a lock, as its key's name records it.
type Holder struct {
	Who  string `json:"who"`
	Host string `json:"host"`
	// NS names Host's kernel boot and PID namespace: PIDs compare only
	// within one (two CI containers may share a hostname and a PID).
	NS      string `json:"ns,omitempty"`
	PID     int    `json:"pid"`
	Cmd     string `json:"cmd"`     // "up v1.2.0"
	Version string `json:"version"` // fleet's
	Since   int64  `json:"since"`   // unix seconds, the API server's clock
	Renewed int64  `json:"renewed"` // unix seconds, the API server's clock
	Nonce   string `json:"nonce"`   // this holding, unique
}

const (
	prefix = "fleet-lock:"
	// MaxName bounds a lock key's name. DigitalOcean's OpenAPI sets no
	// maxLength on ssh_key_name; 255 is the bound of a plain string column.
	MaxName = 255
	// maxRead bounds a name read back (anyone can rename the key).
	maxRead = 4096
)

// Field widths before the whole name is fitted into MaxName.
var widths = map[string]int{"who": 72, "host": 40, "cmd": 48, "version": 24}

// name is the key name recording h: "fleet-lock:<project> {json}", at most
// MaxName bytes. Long fields lose their middle (a CI run URL keeps its ID).
func (h Holder) name(project string) string {
	h.Who, h.Host = elide(clean(h.Who), widths["who"]), elide(clean(h.Host), widths["host"])
	h.Cmd, h.Version = elide(clean(h.Cmd), widths["cmd"]), elide(clean(h.Version), widths["version"])
	for {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // "alice <a@example.com>" stays readable
		_ = enc.Encode(h)        // strings and ints: cannot fail
		n := prefix + project + " " + strings.TrimSpace(b.String())
		over := len(n) - MaxName
		if over <= 0 {
			return n
		}
		// Shorten the longest field; give up at 8 runes each (the fixed
		// part alone fits: a project is at most 20 bytes).
		f := longest(&h.Who, &h.Cmd, &h.Host, &h.Version)
		r := utf8.RuneCountInString(*f)
		if r <= 8 {
			return n
		}
		*f = elide(*f, max(8, r-over))
	}
}

func longest(fs ...*string) *string {
	best := fs[0]
	for _, f := range fs[1:] {
		if len(*f) > len(*best) {
			best = f
		}
	}
	return best
}

// parseName reads the holder from a key name; ok is false when the name
// is not a holder record of project.
func parseName(project, name string) (h Holder, ok bool) {
	if len(name) > maxRead {
		return h, false
	}
	rest, found := strings.CutPrefix(name, prefix+project+" ")
	if !found || json.Unmarshal([]byte(rest), &h) != nil || h.Nonce == "" || h.Renewed <= 0 {
		return Holder{}, false
	}
	// Shown on terminals: no control characters from someone else's name.
	h.Who, h.Host, h.NS, h.Cmd, h.Version, h.Nonce = clean(h.Who), clean(h.Host), clean(h.NS), clean(h.Cmd), clean(h.Version), clean(h.Nonce)
	return h, true
}

// clean drops control characters and invalid UTF-8, and trims spaces.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s))
}

// elide shortens s to n runes by replacing its middle with "…".
func elide(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n < 2 {
		return string(r[:n])
	}
	tail := (n - 1) / 2
	return string(r[:n-1-tail]) + "…" + string(r[len(r)-tail:])
}

// Who names the person or CI job running fleet: the CI's actor and run
// URL (GitHub Actions, GitLab CI), else git's user.name <user.email> for
// the repository in the working directory, else $USER@hostname.
func Who(getenv func(string) string) string {
	if a := getenv("GITHUB_ACTOR"); a != "" {
		if s, r, id := getenv("GITHUB_SERVER_URL"), getenv("GITHUB_REPOSITORY"), getenv("GITHUB_RUN_ID"); s != "" && r != "" && id != "" {
			return clean(a + " (" + strings.TrimSuffix(s, "/") + "/" + r + "/actions/runs/" + id + ")")
		}
		return clean(a)
	}
	if a := getenv("GITLAB_USER_LOGIN"); a != "" {
		if u := getenv("CI_JOB_URL"); u != "" {
			return clean(a + " (" + u + ")")
		}
		return clean(a)
	}
	if n := gitConfig("user.name"); n != "" {
		if e := gitConfig("user.email"); e != "" {
			return clean(n + " <" + e + ">")
		}
		return clean(n)
	}
	u := getenv("USER")
	if u == "" {
		if cu, err := user.Current(); err == nil {
			u = cu.Username
		}
	}
	if u == "" {
		u = "uid" + strconv.Itoa(os.Getuid())
	}
	return clean(u + "@" + hostname())
}

// gitConfig reads one git setting; "" when git or the setting is missing.
var gitConfig = func(key string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "config", "--get", key).Output()
	if err != nil || len(out) > 1024 {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown-host"
	}
	return h
}

// machineNS identifies this kernel boot and PID namespace (Linux), so a
// PID is only ever checked where it means the same process; "" elsewhere.
func machineNS() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	pidns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(boot)) + " " + pidns))
	return hex.EncodeToString(sum[:4])
}

// alive reports whether process pid exists: only ESRCH says it does not
// (EPERM is someone else's live process).
func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
