package spec

import (
	"fmt"
	"regexp"
	"strings"
)

// MaxVersionLen bounds a version so that <project>-<version>-<suffix> stays a
// valid hostname label (63 characters) with room for the suffix.
const MaxVersionLen = 32

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)

// ParseVersion checks that v is a release version fleet can carry in droplet
// names and tags: like a git tag (v1.2.0, 2024-06-01, rc.1), starting with a
// letter or digit, then letters, digits, '.' and '-', at most 32 characters.
// '_' is not allowed: fleet encodes '.' as '_' in tags (see VersionTag).
func ParseVersion(v string) error {
	const allowed = "a version starts with a letter or digit and has only A-Z a-z 0-9 . - (like a git tag: v1.2.0)"
	switch {
	case v == "":
		return fmt.Errorf("version is empty; %s", allowed)
	case len(v) > MaxVersionLen:
		return fmt.Errorf("version %s is %d characters; at most %d are allowed", quote(v), len(v), MaxVersionLen)
	case strings.Contains(v, "_"):
		return fmt.Errorf("version %s contains '_', which fleet reserves (it stands for '.' in DigitalOcean tags); use '.' or '-' instead", quote(v))
	case !versionRE.MatchString(v):
		return fmt.Errorf("version %s is not allowed: %s", quote(v), allowed)
	}
	return nil
}

// VersionTag encodes a version for a DigitalOcean tag, which cannot hold '.':
// "v1.2.0" becomes "v1_2_0". VersionFromTag undoes it.
func VersionTag(v string) string { return strings.ReplaceAll(v, ".", "_") }

// VersionFromTag decodes what VersionTag made: "v1_2_0" becomes "v1.2.0".
func VersionFromTag(s string) string { return strings.ReplaceAll(s, "_", ".") }

// NameSafeVersion makes a version fit in a droplet name, which is a hostname
// label: "v1.2.0" becomes "v1-2-0". It is not reversible; the version tag is
// the source of truth, the name is for people.
func NameSafeVersion(v string) string { return strings.ReplaceAll(v, ".", "-") }

// DropletName is the name of a droplet of project running version:
// <project>-<name-safe version>-<suffix>.
func DropletName(project, version, suffix string) string {
	return project + "-" + NameSafeVersion(version) + "-" + suffix
}
