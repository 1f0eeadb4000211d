package stack

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var dotenvErrRE = regexp.MustCompile(`^f\.env:(\d+): `)

// FuzzParseDotenv: no panic; an error starts with file:line (a line of the
// input) and stays short; every name parsed is a valid one. Seeds:
// testdata/fuzz/FuzzParseDotenv.
func FuzzParseDotenv(f *testing.F) {
	f.Add([]byte("A=1\nexport B='x y'\nC=\"multi\nline\" # c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := parseDotenv("f.env", data)
		if err != nil {
			m := dotenvErrRE.FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("error without file:line: %.200q", err)
			}
			n, _ := strconv.Atoi(m[1])
			if lines := strings.Count(string(data), "\n") + 1; n < 1 || n > lines {
				t.Fatalf("line %d of %d: %v", n, lines, err)
			}
			if len(err.Error()) > 300 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		for k := range got {
			if !dotenvKeyRE.MatchString(k) {
				t.Fatalf("name %q", k)
			}
		}
	})
}
