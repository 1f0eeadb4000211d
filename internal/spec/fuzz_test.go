package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzLoad feeds droplets.yaml contents to the loader, in a directory
// holding the test keys and a template: it must not panic, and every
// error must say file:line. Seeds: testdata/fuzz/FuzzLoad (hostile ones
// too: huge lines, NUL bytes, deep nesting, an alias bomb).
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	files := map[string]string{"cloud-init/droplet.yaml": testTemplate}
	for _, name := range []string{"test.pub", "nocomment.pub", "two.pub"} {
		b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
		if err != nil {
			f.Fatal(err)
		}
		files["keys/"+name] = string(b)
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Add([]byte(baseSpec))
	f.Add([]byte(baseSpec + "stack:\n  dir: stacks/x\n  secrets: {file: keys/test.pub}\n  env: {A: b}\n"))
	path := filepath.Join(dir, "droplets.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := loadData(path, data)
		if err == nil {
			if s == nil || s.Project == "" || len(s.Droplet.SSHKeys) == 0 {
				t.Fatalf("no error, and spec %+v", s)
			}
			return
		}
		if s != nil {
			t.Fatal("a spec with an error")
		}
		var errs *Errors
		if !errors.As(err, &errs) || len(*errs) == 0 {
			t.Fatalf("error %T %v, want *Errors", err, err)
		}
		if len(*errs) > maxErrors+1 {
			t.Fatalf("%d errors", len(*errs))
		}
		for _, e := range *errs {
			if e.File != path || e.Line < 1 {
				t.Errorf("error without file:line: %#v", e)
			}
			// A quoted value is cut to 80 bytes; a message stays short.
			if len(e.Msg) > 1000 || !utf8.ValidString(e.Msg) {
				t.Errorf("message of %d bytes: %.300q", len(e.Msg), e.Msg)
			}
		}
	})
}
