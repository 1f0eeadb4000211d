package spec

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want string // substring of the error; "" for valid
	}{
		{"v1.2.0", ""},
		{"1.2.0", ""},
		{"2024-06-01", ""},
		{"v1.2.0-rc.1", ""},
		{"V2", ""},
		{"a", ""},
		{strings.Repeat("a", 32), ""},
		{"", "version is empty; a version starts with a letter or digit"},
		{strings.Repeat("a", 33), "is 33 characters; at most 32 are allowed"},
		{"v1_2", `version "v1_2" contains '_', which fleet reserves`},
		{".v1", `version ".v1" is not allowed: a version starts with a letter or digit and has only A-Z a-z 0-9 . -`},
		{"-v1", "is not allowed"},
		{"v1+build", "is not allowed"},
		{"v1/2", "is not allowed"},
		{"v1 2", "is not allowed"},
		{"v1:2", "is not allowed"},
		{"vé", "is not allowed"},
	} {
		err := ParseVersion(tc.v)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ParseVersion(%q) = %v, want nil", tc.v, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ParseVersion(%q) = %v, want error containing %q", tc.v, err, tc.want)
		}
	}
}

func TestVersionEncodings(t *testing.T) {
	for _, tc := range []struct {
		v, tag, name string
	}{
		{"v1.2.0", "v1_2_0", "v1-2-0"},
		{"v1.2.0-rc.1", "v1_2_0-rc_1", "v1-2-0-rc-1"},
		{"2024-06-01", "2024-06-01", "2024-06-01"},
		{"v2", "v2", "v2"},
	} {
		if got := VersionTag(tc.v); got != tc.tag {
			t.Errorf("VersionTag(%q) = %q, want %q", tc.v, got, tc.tag)
		}
		if got := VersionFromTag(tc.tag); got != tc.v {
			t.Errorf("VersionFromTag(%q) = %q, want %q", tc.tag, got, tc.v)
		}
		if got := NameSafeVersion(tc.v); got != tc.name {
			t.Errorf("NameSafeVersion(%q) = %q, want %q", tc.v, got, tc.name)
		}
		if !tagRE.MatchString("fleet-version:" + VersionTag(tc.v)) {
			t.Errorf("tag of %q has characters DigitalOcean does not allow", tc.v)
		}
	}
	if got := DropletName("blog", "v1.2.0", "a1b2"); got != "blog-v1-2-0-a1b2" {
		t.Errorf("DropletName = %q", got)
	}
}
