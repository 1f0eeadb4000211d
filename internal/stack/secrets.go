package stack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleet/internal/inputfile"
	"github.com/fleetdeploy/fleet/internal/spec"
)

// MissingSecretsError lists every secret the compose files need that no
// source provides a value for.
type MissingSecretsError struct {
	Names       []string // sorted
	File        string   // the secrets file as the spec names it ("" = none)
	FileMissing bool     // the secrets file does not exist
}

func (e *MissingSecretsError) Error() string {
	vars := make([]string, len(e.Names))
	for i, n := range e.Names {
		vars[i] = EnvVar(n)
	}
	noun := "secret has"
	if len(e.Names) > 1 {
		noun = "secrets have"
	}
	msg := fmt.Sprintf("%d %s no value: %s; ", len(e.Names), noun, strings.Join(e.Names, ", "))
	if e.File != "" {
		msg += fmt.Sprintf("add NAME=VALUE lines to %s", e.File)
		if e.FileMissing {
			msg += " (it does not exist)"
		}
		msg += ", or set "
	} else {
		msg += "set "
	}
	return msg + strings.Join(vars, ", ") + " in the environment"
}

var envVarRE = regexp.MustCompile(`[^A-Z0-9]`)

// EnvVar is the environment variable a secret's value may come from:
// FLEET_SECRET_ and the name upper-cased, with every character other than a
// letter or digit turned into '_' (hello-token: FLEET_SECRET_HELLO_TOKEN).
func EnvVar(name string) string {
	return spec.SecretEnvPrefix + envVarRE.ReplaceAllString(strings.ToUpper(name), "_")
}

// LoadSecrets returns the value of every secret in need. A value comes from
// the environment (FLEET_SECRET_<NAME>, see EnvVar; getenv, os.Getenv if
// nil), or else from the spec's secrets file (as spec.Load resolved it
// against the spec's directory, repoDir), a dotenv file (NAME=VALUE
// lines; NAME is the secret's name as the compose files spell it, or its
// upper-cased EnvVar suffix), which git must not track. An empty value is
// no value. Every missing secret is listed in one *MissingSecretsError.
// Errors never hold a secret's value.
func LoadSecrets(st *spec.Stack, repoDir string, need []string, getenv func(string) string) (map[string]string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var (
		fromFile    map[string]string
		shown       string
		fileMissing bool
	)
	if st != nil && st.Secrets.File != "" {
		file := secretsPath(st)
		shown = displayPath(file)
		if err := checkUntracked(file, shown); err != nil {
			return nil, err
		}
		data, err := inputfile.Read(file, spec.MaxSecretsFileSize)
		var ie *inputfile.Error
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fileMissing = true
		case errors.As(err, &ie):
			return nil, fmt.Errorf("%sstack.secrets.file: %s: %s", at(st), shown, ie.Reason())
		case err != nil:
			return nil, fmt.Errorf("%sstack.secrets.file: reading %s: %w", at(st), shown, err)
		default:
			if fromFile, err = parseDotenv(shown, data); err != nil {
				return nil, err
			}
		}
	}
	values := make(map[string]string, len(need))
	var missing []string
	for _, name := range need {
		if _, dup := values[name]; dup {
			continue
		}
		v := getenv(EnvVar(name))
		if v == "" {
			v = fromFile[name]
		}
		if v == "" {
			v = fromFile[strings.TrimPrefix(EnvVar(name), spec.SecretEnvPrefix)]
		}
		if v == "" {
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			continue
		}
		values[name] = v
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, &MissingSecretsError{Names: missing, File: shown, FileMissing: fileMissing}
	}
	return values, nil
}

// at is where the spec names the secrets file, as an error's prefix.
func at(st *spec.Stack) string {
	if st.Secrets.At == "" {
		return ""
	}
	return st.Secrets.At + ": "
}

// secretsPath is the spec's secrets file as an OS path. spec.Load has
// already resolved it against the spec's directory (repoDir), so it is used
// as it is: absolute, or relative to the working directory like repoDir.
func secretsPath(st *spec.Stack) string {
	return filepath.Clean(filepath.FromSlash(st.Secrets.File))
}

// displayPath is how errors show a file: relative to the working directory
// if it lies under it (so a suggested git command works as it is), else
// absolute.
func displayPath(file string) string {
	abs, err := filepath.Abs(file)
	if err != nil {
		return file
	}
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, abs); err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator)) {
			return r
		}
	}
	return abs
}

// checkUntracked refuses a secrets file that git tracks.
func checkUntracked(file, shown string) error {
	dir := filepath.Dir(file)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil // nothing there, so nothing tracked
	}
	cmd := exec.Command("git", "-C", dir, "--literal-pathspecs", "ls-files", "--error-unmatch", "--", filepath.Base(file))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return fmt.Errorf("secrets file %s is tracked by git: remove it from the index (git rm --cached %s) and add it to .gitignore", shown, shown)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && (ee.ExitCode() == 1 || strings.Contains(stderr.String(), "not a git repository")) {
		return nil
	}
	return fmt.Errorf("checking that git does not track the secrets file %s: %v: %s", shown, err, strings.TrimSpace(stderr.String()))
}

var dotenvKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// parseDotenv reads NAME=VALUE lines: blank lines and lines starting with #
// are skipped, an "export " prefix is allowed, values may be 'single
// quoted' (literal) or "double quoted" (\n, \t, \", \\ escapes), both may
// span lines; an unquoted value ends at " #". Nothing is interpolated.
// Errors name the file and line, never a value.
func parseDotenv(name string, data []byte) (map[string]string, error) {
	text := strings.TrimPrefix(string(data), "\uFEFF")
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	out := map[string]string{}
	for i := 0; i < len(lines); i++ {
		ln := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "export"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			line = strings.TrimLeft(rest, " \t")
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected NAME=VALUE", name, ln)
		}
		key = strings.TrimSpace(key)
		if !dotenvKeyRE.MatchString(key) {
			return nil, fmt.Errorf("%s:%d: the text before '=' is not a name (letters, digits, '_', '.', '-')", name, ln)
		}
		val = strings.TrimLeft(val, " \t")
		if val == "" || (val[0] != '"' && val[0] != '\'') {
			if j := commentStart(val); j >= 0 {
				val = val[:j]
			}
			out[key] = strings.TrimSpace(val)
			continue
		}
		q := val[0]
		body := val[1:]
		var b strings.Builder
		closed := false
		for !closed {
			for j := 0; j < len(body); j++ {
				c := body[j]
				switch {
				case c == q:
					if rest := strings.TrimSpace(body[j+1:]); rest != "" && rest[0] != '#' {
						return nil, fmt.Errorf("%s:%d: %s: unexpected text after the closing quote", name, i+1, clipName(key))
					}
					closed = true
				case q == '"' && c == '\\' && j+1 < len(body):
					j++
					switch e := body[j]; e {
					case 'n':
						b.WriteByte('\n')
					case 't':
						b.WriteByte('\t')
					case 'r':
						b.WriteByte('\r')
					case '"', '\\', '$':
						b.WriteByte(e)
					default:
						b.WriteByte('\\')
						b.WriteByte(e)
					}
					continue
				default:
					b.WriteByte(c)
					continue
				}
				break
			}
			if closed {
				break
			}
			if i+1 >= len(lines) {
				return nil, fmt.Errorf("%s:%d: %s: the quoted value is not closed", name, ln, clipName(key))
			}
			i++
			b.WriteByte('\n')
			body = lines[i]
		}
		out[key] = b.String()
	}
	return out, nil
}

// clipName cuts a (validated, ASCII) name to 80 bytes for an error.
func clipName(key string) string {
	if len(key) <= 80 {
		return key
	}
	return fmt.Sprintf("%s… (%d bytes)", key[:80], len(key))
}

// commentStart is the index of an inline comment (# after a space or tab)
// in an unquoted value, or -1.
func commentStart(v string) int {
	for j := 1; j < len(v); j++ {
		if v[j] == '#' && (v[j-1] == ' ' || v[j-1] == '\t') {
			return j
		}
	}
	return -1
}
