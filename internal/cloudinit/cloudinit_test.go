package cloudinit

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
		{name: "over the limit", template: "#cloud-config\n#" + strings.Repeat("x", MaxUserData-15) + "\n", wantErr: true, want: "rendered user_data is 65537 bytes, over DigitalOcean's limit of 65536 bytes (64 KiB)"},
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
	if !errors.As(err, &tooLarge) || tooLarge.Size != len("#cloud-config\n#")+MaxUserData || tooLarge.Path != path {
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

// fleet's local droplet image has every package the template installs, so
// a local boot needs no network.
func TestRepoTemplatePackagesInImage(t *testing.T) {
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
	image := strings.Fields(strings.NewReplacer("\\", " ").Replace(string(dockerfile)))
	for _, p := range strings.Fields(list) {
		if !slices.Contains(image, p) {
			t.Errorf("the droplet image does not install %s, which the template installs", p)
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
