package remote

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Output shaped like cloud-init 25's `status --format json` (keys sorted,
// recoverable_errors by level, the v1 stage dicts merged in).
const (
	cloudInitDone = `{
  "boot_status_code": "enabled-by-generator",
  "datasource": "digitalocean",
  "detail": "DataSourceDigitalOcean",
  "errors": [],
  "extended_status": "done",
  "init": {"errors": [], "finished": 1712345678.1, "recoverable_errors": {}, "start": 1712345670.2},
  "last_update": "Thu, 01 Jan 1970 00:00:11 +0000",
  "recoverable_errors": {},
  "status": "done"
}
`
	cloudInitDegraded = `{
  "boot_status_code": "enabled-by-generator",
  "datasource": "digitalocean",
  "detail": "DataSourceDigitalOcean",
  "errors": [],
  "extended_status": "degraded done",
  "last_update": "Thu, 01 Jan 1970 00:00:11 +0000",
  "recoverable_errors": {
    "WARNING": [
      "Failed to write hostname\nsecond line",
      "Skipping modules 'foo' because no applicable config is provided."
    ],
    "DEPRECATED": ["Key 'ssh_authorized_keys' is deprecated"]
  },
  "status": "done"
}
`
	cloudInitFailed = `{
  "boot_status_code": "enabled-by-generator",
  "datasource": "digitalocean",
  "detail": "DataSourceDigitalOcean",
  "errors": [
    "('scripts_user', RuntimeError('Runparts: 1 failures (part-001) in 1 attempted commands'))"
  ],
  "extended_status": "error - done",
  "last_update": "Thu, 01 Jan 1970 00:00:11 +0000",
  "recoverable_errors": {},
  "status": "error"
}
`
	// cloud-init 22.4 (Debian 12): no extended_status, no recoverable_errors.
	cloudInitOld = `{
  "_schema_version": "1",
  "boot_status_code": "enabled-by-generator",
  "datasource": "digitalocean",
  "detail": "DataSourceDigitalOcean",
  "errors": [],
  "last_update": "Thu, 01 Jan 1970 00:00:11 +0000",
  "schemas": {"1": {"status": "done"}},
  "status": "done"
}
`
	// Debian 13's cloud-init 25.1 when the vendor-data's script fails
	// (the local cloud's vendor-fail fault; trimmed).
	cloudInitVendorFailed = `{
  "datasource": "nocloud",
  "errors": [
    "('scripts-vendor', RuntimeError('Runparts: 1 failures (droplet-agent) in 1 attempted commands'))"
  ],
  "extended_status": "error - done",
  "recoverable_errors": {
    "WARNING": [
      "Failed to run module scripts-vendor (vendor in /var/lib/cloud/instance/scripts/vendor)"
    ]
  },
  "status": "error"
}
`
	cloudInitLogTail = "Cloud-init v. 25.1 running 'modules:final'\n+ docker compose up\nError: no such image\n"
)

func TestWaitCloudInit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    int
		json    string
		hang    bool
		want    *CloudInit
		wantErr []string // substrings of the error
		// wantSource is the error's Source
		wantSource string
	}{
		{name: "done", code: 0, json: cloudInitDone,
			want: &CloudInit{Status: "done", ExtendedStatus: "done", Errors: []string{}}},
		{name: "done, old cloud-init", code: 0, json: cloudInitOld,
			want: &CloudInit{Status: "done", Errors: []string{}}},
		{name: "recoverable", code: 2, json: cloudInitDegraded,
			want: &CloudInit{Status: "done", ExtendedStatus: "degraded done", Recoverable: true, Errors: []string{},
				Warnings: []string{
					"DEPRECATED: Key 'ssh_authorized_keys' is deprecated",
					"WARNING: Failed to write hostname second line",
					"WARNING: Skipping modules 'foo' because no applicable config is provided.",
				}}},
		{name: "recoverable, but exit 0 (Ubuntu's patched cloud-init)", code: 0, json: cloudInitDegraded,
			want: &CloudInit{Status: "done", ExtendedStatus: "degraded done", Recoverable: true, Errors: []string{},
				Warnings: []string{
					"DEPRECATED: Key 'ssh_authorized_keys' is deprecated",
					"WARNING: Failed to write hostname second line",
					"WARNING: Skipping modules 'foo' because no applicable config is provided.",
				}}},
		{name: "failed", code: 1, json: cloudInitFailed, wantSource: SourceUser,
			wantErr: []string{`status "error", exit 1`, "Runparts: 1 failures", "last 30 lines of /var/log/cloud-init-output.log", "Error: no such image"}},
		{name: "vendor-data failed", code: 1, json: cloudInitVendorFailed, wantSource: SourceVendor,
			wantErr: []string{`status "error", exit 1`, "scripts-vendor", "Error: no such image"}},
		{name: "disabled", code: 0, json: `{"boot_status_code": "disabled-by-marker-file", "errors": [], "status": "disabled"}`,
			wantErr: []string{"disabled", "user_data was never applied"}},
		{name: "not json", code: 1, json: "Traceback (most recent call last):\n",
			wantErr: []string{"exit 1", "Error: no such image"}},
		{name: "hangs", hang: true,
			wantErr: []string{"did not finish within 300ms", "Error: no such image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.fake.cloudInitCode, f.fake.cloudInitJSON, f.fake.cloudInitHang = tc.code, tc.json, tc.hang
			f.fake.cloudInitLog = cloudInitLogTail
			c := f.connect(t)

			got, err := c.WaitCloudInit(t.Context(), 300*time.Millisecond)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("WaitCloudInit: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got  %#v\nwant %#v", got, tc.want)
				}
				return
			}
			var ce *CloudInitError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want *CloudInitError", err, err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q:\n%s", s, err)
				}
			}
			if ce.Source != tc.wantSource {
				t.Errorf("Source = %q, want %q", ce.Source, tc.wantSource)
			}
		})
	}
}

func TestCloudInitSource(t *testing.T) {
	const (
		vendor    = "('scripts-vendor', RuntimeError('Runparts: 1 failures (droplet-agent) in 1 attempted commands'))"
		vendorOld = "('scripts_vendor', RuntimeError('Runparts: 1 failures (part-002) in 1 attempted commands'))"
		user      = "('scripts-user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"
		userOld   = "('scripts_user', RuntimeError('Runparts: 1 failures (part-001) in 1 attempted commands'))"
		pkgs      = "('package-update-upgrade-install', PackageInstallerError(\"Failed to install the following packages: {'nope'}.\"))"
		files     = "('write-files', OSError('Unknown user or group: \"getpwnam(): name not found: \\'nosuchuser\\'\"'))"
	)
	for _, tc := range []struct {
		name string
		errs []string
		want string
	}{
		{"none", nil, ""},
		{"vendor script", []string{vendor}, SourceVendor},
		{"vendor script, old cloud-init", []string{vendorOld}, SourceVendor},
		{"user script", []string{user}, SourceUser},
		{"user script, old cloud-init", []string{userOld}, SourceUser},
		{"packages and files", []string{files, pkgs}, SourceUser},
		{"vendor and user", []string{vendor, user}, SourceUser},
		{"no module named", []string{"Traceback (most recent call last):"}, ""},
		{"vendor and no module named", []string{vendor, "something odd"}, ""},
		{"module-like text later", []string{"x ('scripts-vendor', y)"}, ""},
	} {
		if got := CloudInitSource(tc.errs); got != tc.want {
			t.Errorf("%s: CloudInitSource = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseCloudInit(t *testing.T) {
	for _, tc := range []struct {
		name string
		out  string
		want *CloudInit
	}{
		{name: "progress dots before the JSON", out: "....\n" + cloudInitOld,
			want: &CloudInit{Status: "done", Errors: []string{}}},
		{name: "nulls", out: `{"status": "done", "errors": null, "recoverable_errors": null}`,
			want: &CloudInit{Status: "done"}},
		{name: "odd items", out: `{"status": "error", "errors": ["a", {"b": 1}, null], "recoverable_errors": {"ERROR": "one"}}`,
			want: &CloudInit{Status: "error", Errors: []string{"a", `{"b": 1}`}, Warnings: []string{"ERROR: one"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCloudInit([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
	if _, err := parseCloudInit([]byte("status: done")); err == nil {
		t.Error("parsed output without JSON")
	}
}
