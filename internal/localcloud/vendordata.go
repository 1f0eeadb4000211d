package localcloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/textproto"
	"net/url"
	"strings"

	"mime/multipart"
)

// vendorOptions say what a local droplet's vendor-data does.
type vendorOptions struct {
	// AptProxy, if set, is apt's HTTP proxy (the local cloud's package
	// cache, DockerOptions.AptProxy).
	AptProxy string
	// RegistryMirror, if set, is Docker's registry mirror (the local
	// cloud's stand-in for Docker Hub, DockerOptions.RegistryMirror).
	RegistryMirror string
	// CgroupParent, if set, is the "cgroup-parent" of the droplet's
	// dockerd: on a cgroup v1 host, a relative one keeps the droplet's
	// containers inside the droplet's own cgroups.
	CgroupParent string
	// Monitoring adds the metrics agent's install (the create request's
	// monitoring).
	Monitoring bool
	// Fail makes the metrics agent's install fail (FaultVendorFail);
	// without Monitoring there is none to fail.
	Fail bool
}

// The vendor-data's MIME boundary; the parts are fleet's own text, which
// never contains it.
const vendorBoundary = "fleet-local-vendor-data"

// vendorData is the NoCloud vendor-data of a local droplet, standing in for
// DigitalOcean's: a MIME multi-part with
//
//   - a boothook (cloud-init runs it in its network stage, before any
//     module) that points the droplet at the local cloud's mirrors: apt's
//     proxy, and Docker's registry mirror (an insecure registry too if it
//     is plain HTTP) and cgroup parent in
//     /etc/docker/daemon.json, unless one is there already, so it is in
//     place before user data installs Docker;
//   - a script in place of DigitalOcean's droplet agent install (the web
//     console's agent, on every droplet; DigitalOcean ignores its
//     failures), which cloud-init runs in its final stage (module
//     scripts-vendor) before the user's scripts;
//   - with Monitoring, a script in place of the install of DigitalOcean's
//     metrics agent (do-agent), in the same stage; with Fail it fails,
//     and `cloud-init status` reports an error in scripts-vendor, while
//     the user's scripts still run.
//
// It never holds secrets: only the mirrors' addresses, which validMirrorURL
// has checked.
func vendorData(o vendorOptions) ([]byte, error) {
	for _, u := range []struct{ name, v string }{{"apt proxy", o.AptProxy}, {"registry mirror", o.RegistryMirror}} {
		if u.v != "" {
			if err := validMirrorURL(u.v); err != nil {
				return nil, fmt.Errorf("%s: %w", u.name, err)
			}
		}
	}
	if o.CgroupParent != "" && !dockerNameRE.MatchString(o.CgroupParent) {
		return nil, fmt.Errorf("cgroup parent %q: use letters, digits, '_', '.' and '-'", o.CgroupParent)
	}

	var hook strings.Builder
	hook.WriteString("#cloud-boothook\n#!/bin/sh\n" +
		"# fleet local cloud: the droplet uses the local cloud's mirrors.\nset -eu\n")
	if o.AptProxy != "" {
		fmt.Fprintf(&hook, "cat >/etc/apt/apt.conf.d/00fleet-local-proxy <<'EOF'\nAcquire::http::Proxy \"%s\";\nEOF\n", o.AptProxy)
	}
	daemon := map[string]any{}
	if o.RegistryMirror != "" {
		daemon["registry-mirrors"] = []string{o.RegistryMirror}
		// BuildKit (compose build with docker-buildx) pulls from a plain
		// HTTP mirror only if it is an insecure registry too.
		if u, err := url.Parse(o.RegistryMirror); err == nil && u.Scheme == "http" {
			daemon["insecure-registries"] = []string{u.Host}
		}
	}
	if o.CgroupParent != "" {
		daemon["cgroup-parent"] = o.CgroupParent
	}
	if len(daemon) > 0 {
		js, err := json.MarshalIndent(daemon, "", "  ")
		if err != nil {
			return nil, err
		}
		// Rewritten when it is ours (it names a registry mirror): a droplet
		// booted from a snapshot would otherwise keep the mirrors' addresses
		// of the day it was baked, which change when dockerd restarts.
		fmt.Fprintf(&hook, "if [ ! -e /etc/docker/daemon.json ] || grep -q '\"registry-mirrors\"' /etc/docker/daemon.json; then\n"+
			"  mkdir -p /etc/docker\n  cat >/etc/docker/daemon.json <<'EOF'\n%s\nEOF\nfi\n", js)
	}

	agent := "#!/bin/sh\n" +
		"# fleet local cloud: stands in for DigitalOcean's droplet agent install.\n" +
		"set -eu\n" +
		"mkdir -p /opt/digitalocean\n" +
		"echo 'fleet local cloud: stands in for the DigitalOcean droplet agent' >/opt/digitalocean/fleet-local-agent\n" +
		"echo 'droplet-agent: installed (fleet local cloud stand-in)'\n"
	parts := []struct{ typ, name, body string }{
		{"text/cloud-boothook", "fleet-local-mirrors", hook.String()},
		{"text/x-shellscript", "droplet-agent", agent},
	}
	if o.Monitoring {
		metrics := "#!/bin/sh\n" +
			"# fleet local cloud: stands in for the install of DigitalOcean's metrics agent (monitoring: true).\n" +
			"set -eu\n"
		if o.Fail {
			metrics += "echo 'do-agent: install failed (fleet local cloud fault vendor-fail)' >&2\nexit 1\n"
		} else {
			metrics += "mkdir -p /opt/digitalocean\n" +
				"echo 'fleet local cloud: stands in for the DigitalOcean metrics agent' >/opt/digitalocean/fleet-local-do-agent\n" +
				"echo 'do-agent: installed (fleet local cloud stand-in)'\n"
		}
		parts = append(parts, struct{ typ, name, body string }{"text/x-shellscript", "do-agent", metrics})
	}

	var buf bytes.Buffer
	buf.WriteString("Content-Type: multipart/mixed; boundary=\"" + vendorBoundary + "\"\nMIME-Version: 1.0\n\n")
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary(vendorBoundary); err != nil {
		return nil, err
	}
	for _, p := range parts {
		if strings.Contains(p.body, vendorBoundary) {
			return nil, fmt.Errorf("vendor-data part %s contains its MIME boundary", p.name)
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.typ+`; charset="us-ascii"`)
		h.Set("Content-Disposition", `attachment; filename="`+p.name+`"`)
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write([]byte(p.body)); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// validMirrorURL accepts http://HOST[:PORT][/PATH] with nothing a shell
// here-document, apt's configuration or JSON would read specially, and no
// credentials (vendor-data is readable in the droplet).
func validMirrorURL(s string) error {
	if len(s) > 256 {
		return fmt.Errorf("%.40q...: longer than 256 bytes", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want http://HOST[:PORT]", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q: credentials do not belong in vendor-data", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(s, "\"'\\`$;\n\r\t ") {
		return fmt.Errorf("%q: want a plain http://HOST[:PORT][/PATH]", s)
	}
	return nil
}
