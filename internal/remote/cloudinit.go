package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// CloudInit is how cloud-init finished on a droplet.
type CloudInit struct {
	Status         string // "done"
	ExtendedStatus string // e.g. "degraded done" (cloud-init 23.4+)
	// Recoverable is set when cloud-init finished with recoverable errors:
	// exit status 2 (cloud-init 23.4+), or warnings reported by a cloud-init
	// patched to exit 0 for them (as some Ubuntu releases are). The caller
	// should show Errors and Warnings and go on.
	Recoverable bool
	Errors      []string
	Warnings    []string // "LEVEL: message", from recoverable_errors
}

// CloudInitError is returned when cloud-init failed (exit status 1, or any
// status other than 0 and 2) or did not finish in time.
type CloudInitError struct {
	Droplet string
	Code    int // exit status of `cloud-init status`; -1 when it did not finish
	Status  string
	Errors  []string
	Log     string // the last lines of /var/log/cloud-init-output.log
	Err     error  // why it did not finish, if it did not
	// Source is where the failure is, from the modules Errors name
	// (CloudInitSource): SourceVendor, SourceUser, or "" when unknown.
	Source string
}

// Where a cloud-init failure is (CloudInitError.Source).
const (
	// SourceVendor: only the cloud's vendor-data failed (module
	// scripts-vendor), e.g. DigitalOcean's metrics agent install.
	SourceVendor = "vendor"
	// SourceUser: a module of the droplet's own user_data failed
	// (scripts-user, runcmd, packages, write-files, ...).
	SourceUser = "user"
)

// cloudInitModuleRE reads the module an error of `cloud-init status
// --format json` names: "('scripts-vendor', RuntimeError('Runparts: ...'))"
// (cloud-init 24+ names modules with '-', older releases with '_').
var cloudInitModuleRE = regexp.MustCompile(`^\('([A-Za-z0-9_-]{1,64})',`)

// CloudInitSource says where the failures errs (cloud-init's "errors")
// are: SourceVendor when every one is in the vendor-data's scripts,
// SourceUser when each names a module and at least one is not the
// vendor's (the template must be fixed whatever the vendor did), and ""
// when there are none or one names no module.
func CloudInitSource(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	src := SourceVendor
	for _, e := range errs {
		m := cloudInitModuleRE.FindStringSubmatch(e)
		if m == nil {
			return ""
		}
		if strings.ReplaceAll(m[1], "_", "-") != "scripts-vendor" {
			src = SourceUser
		}
	}
	return src
}

func (e *CloudInitError) Error() string {
	var b strings.Builder
	switch {
	case e.Err != nil:
		fmt.Fprintf(&b, "cloud-init on %s: %v", e.Droplet, e.Err)
	case e.Status != "":
		fmt.Fprintf(&b, "cloud-init failed on %s (status %q, exit %d)", e.Droplet, e.Status, e.Code)
	default:
		fmt.Fprintf(&b, "cloud-init failed on %s (exit %d)", e.Droplet, e.Code)
	}
	for _, msg := range e.Errors {
		b.WriteString("\n  - ")
		b.WriteString(strings.ReplaceAll(msg, "\n", "\n    "))
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "\nlast %d lines of %s:\n%s", cloudInitLogLines, cloudInitLog, indent(strings.TrimRight(e.Log, "\n")))
	}
	return b.String()
}

func (e *CloudInitError) Unwrap() error { return e.Err }

const (
	cloudInitStatusCmd = "cloud-init status --wait --format json"
	cloudInitLog       = "/var/log/cloud-init-output.log"
	cloudInitLogLines  = 30
	logFetchTimeout    = 30 * time.Second
)

// WaitCloudInit waits up to timeout (no limit if timeout <= 0) for cloud-init
// to finish. Exit 0 is success; exit 2 is a recoverable failure returned as a
// CloudInit with Recoverable set; anything else is a *CloudInitError carrying
// the errors cloud-init reported and the tail of its output log. A disabled
// cloud-init is an error: the droplet's user_data was never applied.
func (c *Client) WaitCloudInit(ctx context.Context, timeout time.Duration) (*CloudInit, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var out bytes.Buffer
	runErr := c.Run(wctx, cloudInitStatusCmd, nil, &out, nil)
	ci, parseErr := parseCloudInit(out.Bytes())

	var exit *ExitError
	switch {
	case runErr == nil:
		if parseErr != nil {
			c.printf("cloud-init finished on %s, but its status is unreadable: %v", c.droplet, parseErr)
			ci = &CloudInit{Status: "done"}
		}
		if ci.Status == "disabled" {
			return nil, &CloudInitError{Droplet: c.droplet, Status: ci.Status,
				Err: errors.New("cloud-init is disabled, so the droplet's user_data was never applied")}
		}
		ci.Recoverable = len(ci.Warnings) > 0 || strings.HasPrefix(ci.ExtendedStatus, "degraded")
		return ci, nil
	case errors.As(runErr, &exit) && exit.Code == 2:
		if parseErr != nil {
			ci = &CloudInit{Status: "done", Warnings: []string{"cloud-init reported recoverable errors, but its status is unreadable: " + parseErr.Error()}}
		}
		ci.Recoverable = true
		return ci, nil
	case ctx.Err() != nil:
		return nil, runErr
	}

	e := &CloudInitError{Droplet: c.droplet, Code: -1}
	switch {
	case exit != nil:
		e.Code = exit.Code
		if parseErr == nil {
			e.Status, e.Errors = ci.Status, ci.Errors
			e.Source = CloudInitSource(ci.Errors)
		} else if s := lastLines(exit.Stderr, 5); s != "" {
			e.Errors = []string{s}
		}
	case errors.Is(runErr, context.DeadlineExceeded):
		e.Err = fmt.Errorf("did not finish within %s", timeout)
	default:
		e.Err = runErr
	}
	lctx, cancel := context.WithTimeout(ctx, logFetchTimeout)
	defer cancel()
	log, err := c.Output(lctx, fmt.Sprintf("tail -n %d %s", cloudInitLogLines, cloudInitLog))
	if err != nil {
		e.Log = fmt.Sprintf("(could not read %s: %v)", cloudInitLog, err)
	} else {
		e.Log = string(log)
	}
	return nil, e
}

// parseCloudInit reads `cloud-init status --format json`. Output before the
// JSON object (older releases print progress dots with --wait) is skipped.
func parseCloudInit(out []byte) (*CloudInit, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return nil, fmt.Errorf("no JSON in %q", shortCmd(string(out)))
	}
	var v struct {
		Status      string          `json:"status"`
		Extended    string          `json:"extended_status"`
		Errors      looseStrings    `json:"errors"`
		Recoverable json.RawMessage `json:"recoverable_errors"`
	}
	if err := json.NewDecoder(bytes.NewReader(out[i:])).Decode(&v); err != nil {
		return nil, err
	}
	ci := &CloudInit{Status: v.Status, ExtendedStatus: v.Extended, Errors: v.Errors}

	// cloud-init 23.4+: {"WARNING": ["..."], "DEPRECATED": ["..."]}.
	var byLevel map[string]looseStrings
	if err := json.Unmarshal(v.Recoverable, &byLevel); err == nil {
		levels := make([]string, 0, len(byLevel))
		for level := range byLevel {
			levels = append(levels, level)
		}
		sort.Strings(levels)
		for _, level := range levels {
			for _, msg := range byLevel[level] {
				ci.Warnings = append(ci.Warnings, level+": "+strings.ReplaceAll(msg, "\n", " "))
			}
		}
	} else {
		var list looseStrings
		if json.Unmarshal(v.Recoverable, &list) == nil {
			ci.Warnings = list
		}
	}
	return ci, nil
}

// looseStrings decodes a JSON list whose items are meant to be strings,
// keeping any other item as its JSON text, and a lone string as a list of one.
type looseStrings []string

func (l *looseStrings) UnmarshalJSON(b []byte) error {
	if isNull(b) {
		*l = nil
		return nil
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		*l = looseStrings{s}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	out := make(looseStrings, 0, len(items))
	for _, it := range items {
		if isNull(it) {
			continue
		}
		if s = ""; json.Unmarshal(it, &s) == nil {
			out = append(out, s)
		} else {
			out = append(out, string(it))
		}
	}
	*l = out
	return nil
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }
