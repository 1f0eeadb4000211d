package localcloud

import (
	"archive/tar"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vendorParts parses vendor-data as cloud-init does (a MIME multi-part)
// and returns its parts' content types and bodies.
func vendorParts(t *testing.T, data []byte) (types []string, bodies []string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("vendor-data is not a MIME message: %v\n%s", err, data)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q (%v)", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, pt)
		bodies = append(bodies, string(b))
	}
	return types, bodies
}

func TestVendorData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		o         vendorOptions
		hook      []string // in the boothook, in order
		notHook   []string
		agent     []string
		notAgent  []string
		metrics   []string // the metrics agent's script; nil: there is none
		notMetric []string
		wantError string
	}{
		{
			name: "mirrors",
			o:    vendorOptions{AptProxy: "http://172.17.0.1:3142", RegistryMirror: "http://172.17.0.1:5000", CgroupParent: "docker"},
			hook: []string{"#cloud-boothook\n#!/bin/sh\n", `Acquire::http::Proxy "http://172.17.0.1:3142";`,
				"if [ ! -e /etc/docker/daemon.json ]", `"cgroup-parent": "docker"`, `"insecure-registries": [`, `"172.17.0.1:5000"`,
				`"registry-mirrors": [`, `"http://172.17.0.1:5000"`},
			agent:    []string{"#!/bin/sh\n", "/opt/digitalocean/", "droplet-agent: installed"},
			notAgent: []string{"exit 1"},
		},
		{
			name:    "bare",
			o:       vendorOptions{},
			notHook: []string{"Acquire", "daemon.json"},
			agent:   []string{"droplet-agent: installed"},
		},
		{
			name:      "monitoring",
			o:         vendorOptions{Monitoring: true},
			agent:     []string{"droplet-agent: installed"},
			metrics:   []string{"#!/bin/sh\n", "/opt/digitalocean/fleet-local-do-agent", "do-agent: installed"},
			notMetric: []string{"exit 1"},
		},
		{
			name:      "fail",
			o:         vendorOptions{Monitoring: true, Fail: true},
			agent:     []string{"droplet-agent: installed"},
			notAgent:  []string{"exit 1"},
			metrics:   []string{"install failed", "exit 1"},
			notMetric: []string{"do-agent: installed"},
		},
		{
			// Without monitoring there is no install to fail.
			name:     "fail without monitoring",
			o:        vendorOptions{Fail: true},
			agent:    []string{"droplet-agent: installed"},
			notAgent: []string{"exit 1", "install failed"},
		},
		{name: "quote", o: vendorOptions{AptProxy: `http://a";rm -rf /;"`}, wantError: "apt proxy"},
		{name: "credentials", o: vendorOptions{RegistryMirror: "http://user:secret@mirror:5000"}, wantError: "credentials"},
		{name: "scheme", o: vendorOptions{AptProxy: "ftp://mirror"}, wantError: "want http://HOST"},
		{name: "newline", o: vendorOptions{AptProxy: "http://mirror\nEOF"}, wantError: "apt proxy"},
		{name: "long", o: vendorOptions{AptProxy: "http://" + strings.Repeat("a", 300)}, wantError: "longer than 256"},
		{name: "cgroup", o: vendorOptions{CgroupParent: "../x"}, wantError: "cgroup parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := vendorData(tt.o)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			types, bodies := vendorParts(t, data)
			want := "text/cloud-boothook text/x-shellscript"
			if tt.metrics != nil {
				want += " text/x-shellscript"
			}
			if strings.Join(types, " ") != want {
				t.Fatalf("parts %v, want %s", types, want)
			}
			hook, agent := bodies[0], bodies[1]
			if tt.metrics != nil {
				for _, w := range tt.metrics {
					if !strings.Contains(bodies[2], w) {
						t.Errorf("metrics agent script lacks %q:\n%s", w, bodies[2])
					}
				}
				for _, w := range tt.notMetric {
					if strings.Contains(bodies[2], w) {
						t.Errorf("metrics agent script has %q:\n%s", w, bodies[2])
					}
				}
			}
			last := -1
			for _, w := range tt.hook {
				i := strings.Index(hook, w)
				if i < 0 || i < last {
					t.Errorf("boothook lacks %q (or has it out of order):\n%s", w, hook)
				}
				last = i
			}
			for _, w := range tt.notHook {
				if strings.Contains(hook, w) {
					t.Errorf("boothook has %q:\n%s", w, hook)
				}
			}
			for _, w := range tt.agent {
				if !strings.Contains(agent, w) {
					t.Errorf("agent script lacks %q:\n%s", w, agent)
				}
			}
			for _, w := range tt.notAgent {
				if strings.Contains(agent, w) {
					t.Errorf("agent script has %q:\n%s", w, agent)
				}
			}
		})
	}
}

// The seed's vendor-data carries nothing of the droplet's user data or
// keys: it is the same for every droplet.
func TestSeedVendorDataHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	b := &DockerBackend{AptProxy: "http://10.0.0.1:3142"}
	vendor, err := vendorData(vendorOptions{AptProxy: b.AptProxy})
	if err != nil {
		t.Fatal(err)
	}
	m := Machine{ID: 7, Name: "web-1", UserData: "#cloud-config\nsecret: hunter2-token\n", SSHKeys: []string{"ssh-ed25519 AAAAC3Nza-key-material"}}
	seed, err := seedTar(m, vendor)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(seed))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = string(b)
		if h.Mode != 0o600 {
			t.Errorf("%s: mode %o", h.Name, h.Mode)
		}
	}
	if files["user-data"] != m.UserData || !strings.Contains(files["meta-data"], m.SSHKeys[0]) {
		t.Errorf("seed: %q", files)
	}
	v := files["vendor-data"]
	if v == "" || strings.Contains(v, "hunter2") || strings.Contains(v, "key-material") || strings.Contains(v, m.Name) {
		t.Errorf("vendor-data:\n%s", v)
	}
}

func TestHoldTar(t *testing.T) {
	t.Parallel()
	data, err := holdTar(map[string]time.Duration{HoldSSHD: 1500 * time.Millisecond, HoldCloudInit: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, h.Name+"|"+string(b))
	}
	want := []string{
		"cloud-config.service.d/|",
		"cloud-config.service.d/50-fleet-hold.conf|# fleet local cloud: fault hold=cloud-init\n[Service]\nExecStartPre=/bin/sleep 20\nTimeoutStartSec=110\n",
		"ssh.service.d/|",
		"ssh.service.d/50-fleet-hold.conf|# fleet local cloud: fault hold=sshd\n[Service]\nExecStartPre=/bin/sleep 1.5\nTimeoutStartSec=92\n",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hold tar:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []map[string]time.Duration{{"docker": time.Second}, {HoldSSHD: 0}, {HoldSSHD: 2 * time.Hour}} {
		if _, err := holdTar(bad); err == nil {
			t.Errorf("holdTar(%v) accepted", bad)
		}
	}
}

// The boothook rewrites a daemon.json that is its own (it names a registry
// mirror: a snapshot baked before dockerd restarted keeps the mirrors' old
// addresses), and leaves any other alone. Run under sh with /etc moved to
// a temporary directory.
func TestVendorDataRewritesItsDaemonJSON(t *testing.T) {
	data, err := vendorData(vendorOptions{RegistryMirror: "http://172.17.0.2:5000"})
	if err != nil {
		t.Fatal(err)
	}
	_, bodies := vendorParts(t, data)
	for _, tc := range []struct{ name, before, want string }{
		{"absent", "", "172.17.0.2:5000"},
		{"a stale one of ours", `{"registry-mirrors": ["http://172.17.0.3:5000"]}`, "172.17.0.2:5000"},
		{"someone else's", `{"log-driver": "journald"}`, `{"log-driver": "journald"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "etc/docker"), 0o755); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(dir, "etc/docker/daemon.json")
			if tc.before != "" {
				os.WriteFile(f, []byte(tc.before), 0o644)
			}
			hook := strings.ReplaceAll(bodies[0], "/etc/", dir+"/etc/")
			if out, err := exec.Command("sh", "-c", hook).CombinedOutput(); err != nil {
				t.Fatalf("hook: %v\n%s", err, out)
			}
			got, _ := os.ReadFile(f)
			if !strings.Contains(string(got), tc.want) || strings.Contains(string(got), "172.17.0.3") {
				t.Errorf("daemon.json %q, want it to hold %q", got, tc.want)
			}
		})
	}
}
