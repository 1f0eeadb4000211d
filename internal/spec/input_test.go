package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadWithin runs Load and fails the test if it takes longer than d (a
// FIFO that blocks the read would hang the test otherwise).
func loadWithin(t *testing.T, d time.Duration, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Load(%s) still running after %v", path, d)
		return nil
	}
}

// mkfifo makes a named pipe at path and, at the end of the test, opens and
// closes its write end so a reader blocked on it (the bug) gets EOF.
func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}

// Only regular files are read, each with a size cap; the error names the
// file, and, for a file the spec names, the key and its position.
func TestLoadNonRegularAndLargeFiles(t *testing.T) {
	big := func(n int) string { return "#cloud-config\n#" + strings.Repeat("x", n) + "\n" }
	tests := []struct {
		name  string
		old   string // replaced by new in baseSpec
		new   string
		fifo  string            // made as a named pipe in the spec's directory
		files map[string]string // extra files
		want  []string          // as checkErrors
	}{
		{name: "cloud_init /dev/zero", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: /dev/zero",
			want: []string{`10:15: droplet.cloud_init: /dev/zero: not a regular file (a character device)`}},
		{name: "cloud_init fifo", old: "cloud_init: cloud-init/droplet.yaml", new: "cloud_init: pipe.yaml", fifo: "pipe.yaml",
			want: []string{`10:15: droplet.cloud_init: pipe.yaml: not a regular file (a named pipe)`}},
		{name: "cloud_init too large", files: map[string]string{"cloud-init/droplet.yaml": big(300 << 10)},
			want: []string{`10:15: droplet.cloud_init: cloud-init/droplet.yaml: larger than 256 KiB`}},
		{name: "ssh key /dev/zero", old: "- keys/test.pub", new: "- /dev/zero",
			want: []string{`8:7: droplet.ssh_keys[0]: /dev/zero: not a regular file (a character device)`}},
		{name: "ssh key fifo", old: "- keys/test.pub", new: "- keys/pipe.pub", fifo: "keys/pipe.pub",
			want: []string{`8:7: droplet.ssh_keys[0]: keys/pipe.pub: not a regular file (a named pipe)`}},
		{name: "ssh key too large", old: "- keys/test.pub", new: "- keys/big.pub", files: map[string]string{"keys/big.pub": strings.Repeat("x", 20<<10)},
			want: []string{`8:7: droplet.ssh_keys[0]: keys/big.pub: larger than 16 KiB`}},
		{name: "ssh key a directory", old: "- keys/test.pub", new: "- keys",
			want: []string{`8:7: droplet.ssh_keys[0]: keys: is a directory; name a public key file`}},
		{name: "secrets file fifo", old: "keep: 2", new: "keep: 2\nstack:\n  dir: stacks/x\n  secrets: {file: secrets.env}", fifo: "secrets.env",
			want: []string{`15:19: stack.secrets.file: secrets.env: not a regular file (a named pipe)`}},
		{name: "secrets file too large", old: "keep: 2", new: "keep: 2\nstack:\n  dir: stacks/x\n  secrets: {file: secrets.env}", files: map[string]string{"secrets.env": strings.Repeat("A=1\n", 300<<10)},
			want: []string{`15:19: stack.secrets.file: secrets.env: larger than 1024 KiB`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec
			if tt.old != "" {
				s = mustReplace(t, s, tt.old, tt.new)
			}
			setup(t, s, tt.files)
			if tt.fifo != "" {
				mkfifo(t, tt.fifo)
			}
			checkErrors(t, loadWithin(t, 5*time.Second, "droplets.yaml"), tt.want)
		})
	}
}

// The spec itself (-f): a device, a FIFO, a huge file.
func TestLoadSpecNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.yaml")
	mkfifo(t, fifo)
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, []byte("project: blog\n# "+strings.Repeat("x", 300<<10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{"/dev/zero", "/dev/zero: not a regular file (a character device)"},
		{fifo, fifo + ": not a regular file (a named pipe)"},
		{dir, dir + ": is a directory; name the spec file"},
		{huge, huge + ": larger than 256 KiB"},
	} {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			err := loadWithin(t, 5*time.Second, tt.path)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

// yaml.v3 leaves the line out of errors on line 1, and out of reader errors
// (bad UTF-8, control characters) altogether: every error still gets one.
func TestLoadSyntaxErrorPositions(t *testing.T) {
	for _, tt := range []struct{ name, spec, want string }{
		{"line 1 mapping", "project: a: b\n", "1:11: invalid YAML: mapping values are not allowed in this context"},
		{"line 1 token", "@project: blog\n", "1:1: invalid YAML: found character that cannot start any token"},
		{"flow on line 2", "project: blog\ndroplet: [1\n", "3:1: invalid YAML: did not find expected ',' or ']'"},
		{"unknown anchor", "project: blog\ndroplet: *x\n", "2:10: invalid YAML: unknown anchor 'x' referenced"},
		{"NUL byte", "project: blog\nkeep: 2\x00\n", "2:8: invalid YAML: control character U+0000 (only tab, newline and carriage return are allowed)"},
		{"bad UTF-8", "project: blog\n# caf\xe9\n", "2:6: invalid YAML: invalid UTF-8 (the spec must be UTF-8 text)"},
		{"UTF-16", "\xff\xfep\x00", "1:1: invalid YAML: the spec is UTF-16; save it as UTF-8"},
		{"empty", "", "1:0: spec is empty"},
		{"only a comment", "# nothing\n", "1:0: spec is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, tt.spec, nil)
			checkErrors(t, loadWithin(t, 5*time.Second, "droplets.yaml"), []string{tt.want})
		})
	}
}

// A value quoted in an error is cut to its first 80 bytes.
func TestLoadErrorsTruncateValues(t *testing.T) {
	long := strings.Repeat("A", 100<<10)
	for _, tt := range []struct{ name, old, new string }{
		{"project", "project: blog", "project: " + long},
		{"region", "region: nyc3", "region: " + long},
		{"tag", "tags: [web, prod]", "tags: [web, " + long + "]"},
		{"ssh key path", "- keys/test.pub", "- " + long},
		{"explicit key", "keep: 2", "? " + long + "\n: 2"},
		{"timeout", "create: 90s", "create: " + long},
		{"env name", "keep: 2", "keep: 2\nstack:\n  dir: x\n  env:\n    ? 1" + long + "\n    : 1"},
		{"health path", "keep: 2", "keep: 2\nstack:\n  dir: x\n  health: {paths: [" + long + "]}"},
		{"a value as the whole spec", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec
			if tt.old != "" {
				s = mustReplace(t, s, tt.old, tt.new)
			} else {
				s = long + "\n"
			}
			setup(t, s, nil)
			err := loadWithin(t, 5*time.Second, "droplets.yaml")
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, e := range errLines(t, err) {
				if len(e.Msg) > 400 || strings.Contains(e.Msg, long[:81]) {
					t.Errorf("error is %d bytes: %.200s...", len(e.Msg), e.Msg)
				}
				if strings.Contains(e.Msg, `AAAA`) && !strings.Contains(e.Msg, fmt.Sprintf("… (%d bytes)", len(long))) && !strings.Contains(e.Msg, fmt.Sprintf("… (%d bytes)", len(long)+1)) {
					t.Errorf("a quoted value does not say its length: %s", e.Msg)
				}
			}
		})
	}
}

// Load renders the template the way `fleet up` will: with .Stack set and a
// host key injected when the spec has a stack, and with the longest
// version, so a template that fits at validate time fits at up time.
func TestLoadRendersLikeUp(t *testing.T) {
	const stack = "stack:\n  dir: stacks/x\n"
	for _, tt := range []struct {
		name, stack, template string
		want                  []string
	}{
		{name: "host key pushes it over", stack: stack,
			template: "#cloud-config\nruncmd:\n  - echo " + strings.Repeat("x", 65536-200) + "\n",
			want:     []string{`10:15: droplet.cloud_init: "cloud-init/droplet.yaml" renders to more than 65536 bytes of user_data (64 KiB, DigitalOcean's limit)`}},
		{name: "only with a stack", stack: stack,
			template: "#cloud-config\n{{if .Stack}}# " + strings.Repeat("x", 70000) + "{{end}}\n",
			want:     []string{`10:15: droplet.cloud_init: "cloud-init/droplet.yaml" renders to more than 65536 bytes`}},
		{name: "grows with the version",
			template: "#cloud-config\n{{range 2000}}# {{$.Version}}\n{{end}}",
			want:     []string{`10:15: droplet.cloud_init: "cloud-init/droplet.yaml" renders to more than 65536 bytes`}},
		{name: "a loop that never ends",
			template: "#cloud-config\n{{range 2000000000}}# {{$.Version}}\n{{end}}",
			want:     []string{`10:15: droplet.cloud_init: "cloud-init/droplet.yaml" renders to more than 65536 bytes`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setup(t, baseSpec+tt.stack, map[string]string{"cloud-init/droplet.yaml": tt.template})
			checkErrors(t, loadWithin(t, 5*time.Second, "droplets.yaml"), tt.want)
		})
	}
}

// Load lists at most 100 problems; the rest are counted at the first one
// left out.
func TestLoadCapsErrors(t *testing.T) {
	setup(t, mustReplace(t, baseSpec, "tags: [web, prod]", "tags: ["+strings.TrimSuffix(strings.Repeat("v1.0, ", 150), ", ")+"]"), nil)
	_, err := Load("droplets.yaml")
	errs := errLines(t, err)
	if len(errs) != 101 {
		t.Fatalf("%d errors, want 101", len(errs))
	}
	last := errs[100]
	if last.Msg != "50 more problems from here on, not shown" || last.Line != 9 || last.Col != 10+6*100 || last.Omitted != 50 {
		t.Errorf("last error = %+v", last)
	}
	if n := err.(*Errors).Total(); n != 150 {
		t.Errorf("Total = %d, want 150", n)
	}
}

// hostileSpecs are the largest hostile specs (MaxSpecSize each), by name.
func hostileSpecs() map[string][]byte {
	fill := func(prefix, unit, suffix string) []byte {
		return []byte(prefix + strings.Repeat(unit, (MaxSpecSize-len(prefix)-len(suffix))/len(unit)) + suffix)
	}
	var anchors strings.Builder
	anchors.WriteString("a0: &a0 x\n")
	for i := 1; anchors.Len() < MaxSpecSize-100; i++ {
		fmt.Fprintf(&anchors, "a%d: &a%d [*a%d, *a%d]\n", i, i, i-1, i-1)
	}
	return map[string][]byte{
		"flow mapping":   fill("{", "a: b, ", "}"),
		"flow sequence":  fill("project: [", "1,", "]"),
		"alias doubling": []byte(anchors.String()),
		"deep flow":      fill("", "[", ""),
		"deep block":     fill("", "- ", "x"),
		"bad tags":       fill("droplet:\n  tags: [", "v1.0,", "]"),
		"health paths":   numberedSpec(MaxSpecSize, "stack:\n  dir: x\n  health: {paths: [", "/a%d,", "]}\n"),
		"compose files":  numberedSpec(MaxSpecSize, "stack:\n  dir: x\n  compose: [", "a%d,", "]\n"),
		"ssh key files":  numberedSpec(MaxSpecSize, "droplet: {ssh_keys: [", "k%d.pub,", "]}\n"),
	}
}

// numberedSpec fills size bytes with format's numbered entries.
func numberedSpec(size int, prefix, format, suffix string) []byte {
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; b.Len() < size-len(suffix)-20; i++ {
		fmt.Fprintf(&b, format, i)
	}
	return []byte(b.String() + suffix)
}

// The largest hostile specs load and fail with located errors: yaml.v3
// decodes into nodes without expanding aliases, and nesting stops at 10000
// levels. How fast is BenchmarkLoadHostile's business; the bound here only
// catches a hang.
func TestLoadHostileBounded(t *testing.T) {
	for name, data := range hostileSpecs() {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := loadData("droplets.yaml", data)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(2 * time.Minute):
				t.Fatal("Load still runs after 2 minutes")
			}
			for _, e := range errLines(t, err) {
				if e.Line < 1 {
					t.Errorf("error without a line: %v", e)
				}
			}
			if err == nil {
				t.Error("no error")
			}
		})
	}
}

// BenchmarkLoadHostile reports, per hostile list, the time for a full-size
// spec over the time for one an eighth of its size: about 8 when the work
// is linear (duplicates found with a set), 64 when quadratic (a scan of
// the list took seconds at 30000 entries).
func BenchmarkLoadHostile(b *testing.B) {
	lists := []struct{ name, prefix, format, suffix string }{
		{"health-paths", "stack:\n  dir: x\n  health: {paths: [", "/a%d,", "]}\n"},
		{"compose-files", "stack:\n  dir: x\n  compose: [", "a%d,", "]\n"},
		{"ssh-key-files", "droplet: {ssh_keys: [", "k%d.pub,", "]}\n"},
	}
	for _, l := range lists {
		b.Run(l.name, func(b *testing.B) {
			full := numberedSpec(MaxSpecSize, l.prefix, l.format, l.suffix)
			eighth := numberedSpec(MaxSpecSize/8, l.prefix, l.format, l.suffix)
			var tFull, tEighth time.Duration
			for b.Loop() {
				s := time.Now()
				loadData("droplets.yaml", eighth)
				tEighth += time.Since(s)
				s = time.Now()
				loadData("droplets.yaml", full)
				tFull += time.Since(s)
			}
			b.ReportMetric(tFull.Seconds()/tEighth.Seconds(), "full/eighth")
			b.ReportMetric(tFull.Seconds()*1000/float64(b.N), "ms/full-spec")
		})
	}
}
