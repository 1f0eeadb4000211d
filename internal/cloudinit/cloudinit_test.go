package cloudinit

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

var data = Data{Project: "blog", Version: "v1.2.0", DropletName: "blog-v1-2-0-a1b2", DeployID: "d-123"}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name     string
		template string
		want     string // the output, or for an error a substring of it
		wantErr  bool
	}{
		{name: "fields", template: "#cloud-config\n# {{.Project}} {{.Version}} {{.DropletName}} {{.DeployID}}\n", want: "#cloud-config\n# blog v1.2.0 blog-v1-2-0-a1b2 d-123\n"},
		{name: "header only", template: "#cloud-config\n", want: "#cloud-config\n"},
		{name: "header without newline", template: "#cloud-config", want: "#cloud-config"},
		{name: "header with CRLF", template: "#cloud-config\r\nruncmd: []\r\n", want: "#cloud-config\r\nruncmd: []\r\n"},
		{name: "mapping", template: "#cloud-config\nruncmd:\n  - echo {{.Version}}\n", want: "#cloud-config\nruncmd:\n  - echo v1.2.0\n"},
		{name: "unknown field", template: "#cloud-config\n# {{.Nope}}\n", wantErr: true, want: "can't evaluate field Nope"},
		{name: "parse error", template: "#cloud-config\n{{.Project\n", wantErr: true, want: "unclosed action"},
		{name: "no header", template: "runcmd: []\n", wantErr: true, want: `rendered user_data must start with a "#cloud-config" line (cloud-init ignores anything else), but its first line is "runcmd: []"`},
		{name: "leading blank line", template: "\n#cloud-config\n", wantErr: true, want: `its first line is ""`},
		{name: "shell script", template: "#!/bin/sh\necho hi\n", wantErr: true, want: `its first line is "#!/bin/sh"`},
		{name: "header suffix", template: "#cloud-configs\n", wantErr: true, want: "must start with"},
		{name: "header from template", template: "{{if .Project}}#cloud-config{{end}}\n", want: "#cloud-config\n"},
		{name: "invalid yaml", template: "#cloud-config\nruncmd: [a\n", wantErr: true, want: "rendered user_data is not valid YAML"},
		{name: "not a mapping", template: "#cloud-config\n- a\n", wantErr: true, want: "is not a YAML mapping (line 2)"},
		{name: "just under the limit", template: "#cloud-config\n#" + strings.Repeat("x", MaxUserData-16) + "\n", want: "#cloud-config\n#" + strings.Repeat("x", MaxUserData-16) + "\n"},
		{name: "over the limit", template: "#cloud-config\n#" + strings.Repeat("x", MaxUserData-15) + "\n", wantErr: true, want: "rendered user_data is over DigitalOcean's limit of 65536 bytes (64 KiB); rendering stopped there"},
		{name: "printf width", template: "#cloud-config\n# {{printf \"%2000000000d\" 1}}\n", wantErr: true, want: "printf: a width or precision over 65536 cannot fit in user_data"},
		{name: "printf star width", template: "#cloud-config\n# {{printf \"%*d\" 2000000000 1}}\n", wantErr: true, want: "printf: a width or precision over 65536 cannot fit in user_data"},
		{name: "printf precision", template: "#cloud-config\n# {{printf \"%.900000f\" 1.0}}\n", wantErr: true, want: "printf: a width or precision over 65536 cannot fit in user_data"},
		{name: "printf small width", template: "#cloud-config\n# {{printf \"%-6s|%5.2f|%%\" .Project 1.5}}\n", want: "#cloud-config\n# blog  | 1.50|%\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "droplet.yaml")
			if err := os.WriteFile(path, []byte(tc.template), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := Render(path, data)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Render error = %v, want one containing %q", err, tc.want)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
				if out != nil {
					t.Errorf("Render returned output with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(out) != tc.want {
				t.Errorf("Render = %q, want %q", out, tc.want)
			}
		})
	}
}

func TestRenderTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte("#cloud-config\n#"+strings.Repeat("{{.Project}}", MaxUserData/4)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Render(path, data)
	var tooLarge *TooLargeError
	if !errors.As(err, &tooLarge) || !tooLarge.Stopped || tooLarge.Size != MaxUserData+1 || tooLarge.Path != path {
		t.Fatalf("Render error = %#v, want a *TooLargeError", err)
	}
}

func TestRenderMissingTemplate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Render(path, data)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Render error = %v, want not-exist naming %s", err, path)
	}
}

// The repository's example template renders to a cloud-config that writes
// the release files, starts the responder, makes the deploy layout, installs
// Docker and postfix (preseeded as a satellite) and pins postfix's settings.
func TestRepoTemplate(t *testing.T) {
	path := filepath.Join("..", "..", "cloud-init", "droplet.yaml")
	out, err := Render(path, data)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		WriteFiles []struct {
			Path, Content, Permissions string
		} `yaml:"write_files"`
		Runcmd []string `yaml:"runcmd"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, f := range cfg.WriteFiles {
		files[f.Path] = f.Content
	}
	if got := files["/var/www/fleet/index.html"]; got != "fleet blog v1.2.0\n" {
		t.Errorf("index.html = %q", got)
	}
	if got, want := files["/etc/fleet/release"], "FLEET_PROJECT=blog\nFLEET_VERSION=v1.2.0\nFLEET_DROPLET=blog-v1-2-0-a1b2\nFLEET_DEPLOY_ID=d-123\n"; got != want {
		t.Errorf("release = %q, want %q", got, want)
	}
	if !strings.Contains(files["/etc/systemd/system/fleet-http.service"], "ExecStart=/usr/bin/python3 -m http.server 80 --directory /var/www/fleet") {
		t.Errorf("no systemd unit for the responder: %q", files)
	}
	if got, want := files["/etc/fleet/postfix.debconf"], "postfix postfix/main_mailer_type select Satellite system\npostfix postfix/mailname string blog-v1-2-0-a1b2\npostfix postfix/relayhost string [127.0.0.1]:2525\n"; got != want {
		t.Errorf("postfix.debconf = %q, want %q", got, want)
	}
	if got := files["/etc/mailname"]; got != "blog-v1-2-0-a1b2\n" {
		t.Errorf("mailname = %q", got)
	}
	if len(cfg.Runcmd) == 0 || cfg.Runcmd[0] != "set -e" {
		t.Errorf("runcmd does not start with set -e: %q", cfg.Runcmd)
	}
	cmds := strings.Join(cfg.Runcmd, "\n")
	last := -1
	for _, want := range []string{
		"[ -d /run/systemd/system ]", "systemctl enable --now fleet-http.service", "setsid nohup python3 -m http.server 80 --directory /var/www/fleet",
		"install -d -m 0755 /srv/fleet/blog\n", "install -d -m 0700 -o root -g root /etc/fleet/blog/secrets\n",
		"for p in docker.io docker-cli docker-compose postfix cron; do", "debconf-set-selections /etc/fleet/postfix.debconf", "install $missing",
		"postconf -e myhostname=blog-v1-2-0-a1b2 myorigin=/etc/mailname mydestination= 'relayhost=[127.0.0.1]:2525' inet_interfaces=loopback-only\n",
		"systemctl enable --now docker.service", "systemctl restart postfix.service", "systemctl enable --now cron.service",
		"service postfix restart", "service cron start",
	} {
		i := strings.Index(cmds, want)
		if i < 0 {
			t.Errorf("runcmd lacks %q:\n%s", want, cmds)
		} else if i < last {
			t.Errorf("runcmd has %q out of order:\n%s", want, cmds)
		}
		last = max(last, i)
	}
}

// fleet's local droplet image is a bare Debian like DigitalOcean's: it
// has none of the packages the template installs, so the template's
// install path runs on every local boot as it does on a droplet.
func TestRepoTemplatePackagesNotInImage(t *testing.T) {
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "cloud-init", "droplet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile(filepath.Join("..", "localcloud", "droplet-image", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(tmpl), "for p in ")
	list, _, _ := strings.Cut(rest, ";")
	if !ok || len(strings.Fields(list)) == 0 {
		t.Fatal(`the template has no "for p in <packages>;" list`)
	}
	// The words of the image's RUN lines (comments left out).
	var words []string
	for _, line := range strings.Split(string(dockerfile), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			words = append(words, strings.Fields(strings.NewReplacer("\\", " ").Replace(line))...)
		}
	}
	if !slices.Contains(words, "openssh-server") || !slices.Contains(words, "cloud-init") {
		t.Fatalf("cannot find the image's package list in its Dockerfile")
	}
	for _, p := range append(strings.Fields(list), "docker-ce", "containerd", "docker-compose-plugin") {
		if slices.Contains(words, p) {
			t.Errorf("the droplet image installs %s: the template must install it, as on DigitalOcean", p)
		}
	}
}

// With a stack the droplet's port 80 belongs to the stack, so the
// example's responder must not start.
func TestRepoTemplateResponderOnlyWithoutStack(t *testing.T) {
	path := filepath.Join("..", "..", "cloud-init", "droplet.yaml")
	for _, stack := range []bool{false, true} {
		out, err := Render(path, Data{Project: "hello", Version: "v1.0.0", DropletName: "hello-v1-0-0-abc123", DeployID: "abc123", Stack: stack})
		if err != nil {
			t.Fatal(err)
		}
		starts := strings.Contains(string(out), "enable --now fleet-http") || strings.Contains(string(out), "setsid nohup python3 -m http.server 80")
		if starts == stack {
			t.Errorf("stack=%v: the responder starts=%v, want %v", stack, starts, !stack)
		}
	}
}

// Rendering stops as soon as the output passes MaxUserData: a template
// that would print gigabytes fails fast and small.
func TestRenderStopsAtTheLimit(t *testing.T) {
	for _, tmpl := range []string{
		"#cloud-config\n{{range 2000000000}}# {{$.Project}} padding padding padding\n{{end}}",
		"#cloud-config\n{{range $i := 2000000000}}{{$i}}{{end}}",
	} {
		path := filepath.Join(t.TempDir(), "droplet.yaml")
		if err := os.WriteFile(path, []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Render(path, data)
		runtime.ReadMemStats(&after)
		var tooLarge *TooLargeError
		if !errors.As(err, &tooLarge) || tooLarge.Path != path {
			t.Fatalf("Render error = %v, want a *TooLargeError", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Render took %v", d)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 {
			t.Errorf("Render allocated %d MiB", n>>20)
		}
		if want := "rendered user_data is over DigitalOcean's limit of 65536 bytes (64 KiB); rendering stopped there"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// A template that loops without printing is stopped by a deadline.
func TestRenderDeadline(t *testing.T) {
	defer func(d time.Duration) { renderTimeout = d }(renderTimeout)
	renderTimeout = 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "droplet.yaml")
	// Some seconds of work, and nothing printed.
	if err := os.WriteFile(path, []byte("#cloud-config\n{{range 3000}}{{range 3000}}{{end}}{{end}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := Render(path, data)
	if err == nil || !strings.Contains(err.Error(), path+": rendering took longer than 50ms") {
		t.Fatalf("Render error = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Render took %v", d)
	}
}

// Only a regular template file is read, up to MaxTemplateSize.
func TestRenderTemplateFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() { // unblock a reader stuck on the pipe (the bug)
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}()
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, []byte("#cloud-config\n{{/* "+strings.Repeat("x", 300<<10)+" */}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{"/dev/zero", "cloud-init template: /dev/zero: not a regular file (a character device)"},
		{fifo, "cloud-init template: " + fifo + ": not a regular file (a named pipe)"},
		{huge, "cloud-init template: " + huge + ": larger than 256 KiB"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Render(tt.path, data)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || err.Error() != tt.want {
				t.Errorf("Render(%s) = %v, want %q", tt.path, err, tt.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Render(%s) still running after 5s", tt.path)
		}
	}
}
