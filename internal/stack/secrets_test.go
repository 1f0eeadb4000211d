package stack

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/spec"
)

func TestLoadSecrets(t *testing.T) {
	const secretValue = "s3cr3t-value"
	tests := []struct {
		name    string
		files   map[string]string // written after the commit (untracked)
		tracked map[string]string // committed
		file    string            // stack.secrets.file
		need    []string
		env     map[string]string
		want    map[string]string
		wantErr string
		missing []string
	}{
		{
			name: "from the file", file: "secrets.env",
			files: map[string]string{"secrets.env": "hello_token=abc\nDB_PASSWORD=\"p w\"\n"},
			need:  []string{"hello_token", "db-password"},
			want:  map[string]string{"hello_token": "abc", "db-password": "p w"},
		},
		{
			name: "environment overrides the file", file: "secrets.env",
			files: map[string]string{"secrets.env": "hello_token=fromfile\n"},
			env:   map[string]string{"FLEET_SECRET_HELLO_TOKEN": "fromenv"},
			need:  []string{"hello_token"},
			want:  map[string]string{"hello_token": "fromenv"},
		},
		{
			name: "environment only, no file configured",
			env:  map[string]string{"FLEET_SECRET_A_B_C": "x"},
			need: []string{"a.b-c"},
			want: map[string]string{"a.b-c": "x"},
		},
		{
			name: "file configured but absent, environment has all", file: "secrets.env",
			env:  map[string]string{"FLEET_SECRET_HELLO_TOKEN": "x"},
			need: []string{"hello_token"},
			want: map[string]string{"hello_token": "x"},
		},
		{
			name: "nothing needed", file: "secrets.env", want: map[string]string{},
		},
		{
			name: "missing: every name listed", file: "ops/secrets.env",
			files:   map[string]string{"ops/secrets.env": "hello_token=" + secretValue + "\nempty=\n"},
			need:    []string{"zeta", "hello_token", "empty", "alpha-key"},
			missing: []string{"alpha-key", "empty", "zeta"},
			wantErr: "3 secrets have no value: alpha-key, empty, zeta; add NAME=VALUE lines to ops/secrets.env, or set FLEET_SECRET_ALPHA_KEY, FLEET_SECRET_EMPTY, FLEET_SECRET_ZETA in the environment",
		},
		{
			name: "missing: file absent", file: "secrets.env",
			need:    []string{"hello_token"},
			missing: []string{"hello_token"},
			wantErr: "1 secret has no value: hello_token; add NAME=VALUE lines to secrets.env (it does not exist), or set FLEET_SECRET_HELLO_TOKEN in the environment",
		},
		{
			name:    "missing: no file configured",
			need:    []string{"hello_token"},
			missing: []string{"hello_token"},
			wantErr: "1 secret has no value: hello_token; set FLEET_SECRET_HELLO_TOKEN in the environment",
		},
		{
			name: "tracked file refused", file: "config/secrets.env",
			tracked: map[string]string{"config/secrets.env": "hello_token=" + secretValue + "\n"},
			env:     map[string]string{"FLEET_SECRET_HELLO_TOKEN": "x"},
			need:    []string{"hello_token"},
			wantErr: "secrets file config/secrets.env is tracked by git: remove it from the index (git rm --cached config/secrets.env) and add it to .gitignore",
		},
		{
			name: "syntax error names the line, not the value", file: "secrets.env",
			files:   map[string]string{"secrets.env": "# c\nhello_token=ok\n" + secretValue + "\n"},
			need:    []string{"hello_token"},
			wantErr: "secrets.env:3: expected NAME=VALUE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := newRepo(t)
			commit(t, repo, map[string]string{"droplets.yaml": "project: x\n"}, "")
			if tt.tracked != nil {
				commit(t, repo, tt.tracked, "")
			}
			write(t, repo, tt.files)
			t.Chdir(repo) // errors show the file relative to the working directory
			st := &spec.Stack{Dir: "stacks/hello"}
			if tt.file != "" {
				st.Secrets.File = filepath.Join(repo, tt.file) // as spec.Load resolves it
			}
			getenv := func(k string) string { return tt.env[k] }
			got, err := LoadSecrets(st, repo, tt.need, getenv)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v\nwant %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Fatal("the error holds a secret's value")
				}
				var me *MissingSecretsError
				if tt.missing != nil && (!errors.As(err, &me) || !reflect.DeepEqual(me.Names, tt.missing)) {
					t.Fatalf("missing names: %+v, want %v", me, tt.missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestLoadSecretsRelative: a spec loaded as ops/droplets.yaml has its
// secrets file resolved to ops/secrets.env, relative to the working directory.
func TestLoadSecretsRelative(t *testing.T) {
	repo := newRepo(t)
	commit(t, repo, map[string]string{"ops/droplets.yaml": "project: x\n", "ops/secrets.env": "a=1\n"}, "")
	t.Chdir(repo)
	_, err := LoadSecrets(&spec.Stack{Secrets: spec.Secrets{File: "ops/secrets.env"}}, "ops", []string{"a"}, nil)
	want := "secrets file ops/secrets.env is tracked by git: remove it from the index (git rm --cached ops/secrets.env) and add it to .gitignore"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	run(t, repo, "git", "rm", "-q", "--cached", "ops/secrets.env")
	got, err := LoadSecrets(&spec.Stack{Secrets: spec.Secrets{File: "ops/secrets.env"}}, "ops", []string{"a"}, func(string) string { return "" })
	if err != nil || got["a"] != "1" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestLoadSecretsOutsideGit(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"s.env": "a=1\n"})
	got, err := LoadSecrets(&spec.Stack{Secrets: spec.Secrets{File: filepath.Join(dir, "s.env")}}, t.TempDir(), []string{"a"}, func(string) string { return "" })
	if err != nil || got["a"] != "1" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestParseDotenv(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		wantErr  string
	}{
		{"plain", "A=1\nB = two words \n", map[string]string{"A": "1", "B": "two words"}, ""},
		{"comments and blanks", "# c\n\n  # indented\nA=1 # trailing\nB=x#not-a-comment\n", map[string]string{"A": "1", "B": "x#not-a-comment"}, ""},
		{"export prefix", "export A=1\nexport\tB=2\nexported=3\n", map[string]string{"A": "1", "B": "2", "exported": "3"}, ""},
		{"double quotes", `A="a \"b\" \\ \n c # no comment" # comment`, map[string]string{"A": "a \"b\" \\ \n c # no comment"}, ""},
		{"single quotes are literal", `A='a \n $B "c"'`, map[string]string{"A": `a \n $B "c"`}, ""},
		{"no interpolation", "A=$HOME/${X}\n", map[string]string{"A": "$HOME/${X}"}, ""},
		{"equals in the value", "A=b64==\n", map[string]string{"A": "b64=="}, ""},
		{"empty values", "A=\nB=\"\"\nC=''\n", map[string]string{"A": "", "B": "", "C": ""}, ""},
		{"multi-line quoted", "K=\"-----BEGIN\nline2\n-----END\"\nB=1\n", map[string]string{"K": "-----BEGIN\nline2\n-----END", "B": "1"}, ""},
		{"CRLF and BOM", "\uFEFFA=1\r\nB='2'\r\n", map[string]string{"A": "1", "B": "2"}, ""},
		{"last one wins", "A=1\nA=2\n", map[string]string{"A": "2"}, ""},
		{"dotted and dashed names", "hello.token-x=1\n", map[string]string{"hello.token-x": "1"}, ""},
		{"no equals", "A=1\nsecretvalue\n", nil, "f.env:2: expected NAME=VALUE"},
		{"bad name", "1A=secretvalue\n", nil, "f.env:1: the text before '=' is not a name"},
		{"unterminated", "A=1\nB=\"secretvalue\nmore\n", nil, "f.env:2: B: the quoted value is not closed"},
		{"text after quote", "A='secretvalue' x\n", nil, "f.env:1: A: unexpected text after the closing quote"},
		{"long name", strings.Repeat("N", 5000) + "='secretvalue\n", nil, "f.env:1: " + strings.Repeat("N", 80) + "… (5000 bytes): the quoted value is not closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDotenv("f.env", []byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secretvalue") {
					t.Fatal("the error holds a value")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvVar(t *testing.T) {
	for in, want := range map[string]string{
		"hello_token": "FLEET_SECRET_HELLO_TOKEN", "db-pass.v2": "FLEET_SECRET_DB_PASS_V2", "X": "FLEET_SECRET_X",
	} {
		if got := EnvVar(in); got != want {
			t.Errorf("EnvVar(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestExtractRejects feeds extract archives git would not make.
func TestExtractRejects(t *testing.T) {
	tests := []struct {
		name    string
		hdr     tar.Header
		wantErr string
	}{
		{"dot-dot", tar.Header{Name: "s/../../evil", Typeflag: tar.TypeReg}, "refusing path"},
		{"absolute symlink", tar.Header{Name: "s/l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}, "points outside"},
		{"escaping symlink", tar.Header{Name: "s/a/l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}, "points outside"},
		{"device", tar.Header{Name: "s/dev", Typeflag: tar.TypeChar}, "unsupported tar entry type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tt.hdr.Mode = 0o644
			if err := tw.WriteHeader(&tt.hdr); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			err = extract(tar.NewReader(&buf), "s", root)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// The secrets file must be a regular file of at most MaxSecretsFileSize:
// a FIFO must not hang, a device must not be read.
func TestLoadSecretsFileKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.env")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() { // unblock a reader stuck on the pipe (the bug)
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	huge := filepath.Join(dir, "huge.env")
	write(t, dir, map[string]string{"huge.env": strings.Repeat("A=1\n", 300<<10)})
	for _, tt := range []struct{ file, want, at string }{
		{"/dev/zero", "stack.secrets.file: /dev/zero: not a regular file (a character device)", ""},
		{fifo, "stack.secrets.file: " + fifo + ": not a regular file (a named pipe)", ""},
		{huge, "stack.secrets.file: " + huge + ": larger than 1024 KiB", ""},
		{"/dev/zero", "droplets.yaml:15:19: stack.secrets.file: /dev/zero: not a regular file (a character device)", "droplets.yaml:15:19"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := LoadSecrets(&spec.Stack{Secrets: spec.Secrets{File: tt.file, At: tt.at}}, dir, []string{"a"}, func(string) string { return "" })
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || err.Error() != tt.want {
				t.Errorf("LoadSecrets(%s) = %v, want %q", tt.file, err, tt.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("LoadSecrets(%s) still running after 5s", tt.file)
		}
	}
}
