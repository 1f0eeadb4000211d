//go:build e2e

package remote

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// OpenSSH reads what Pin writes: `ssh-keygen -F` finds the key under the
// pinned address and nothing under neighbouring ones.
func TestPinReadByOpenSSH(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen: %v: apt-get install openssh-client", err)
	}
	for _, tc := range pinCases {
		t.Run(tc.addr, func(t *testing.T) {
			kh := KnownHosts{Dir: filepath.Join(t.TempDir(), "known_hosts")}
			key := newSigner(t).PublicKey()
			if err := kh.Pin("web-1", tc.addr, key); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(keygen, "-F", tc.host, "-f", kh.Path("web-1")).CombinedOutput()
			if err != nil {
				t.Fatalf("ssh-keygen -F %s: %v\n%s", tc.host, err, out)
			}
			if want := strings.Fields(string(ssh.MarshalAuthorizedKey(key)))[1]; !strings.Contains(string(out), want) {
				t.Errorf("ssh-keygen -F %s found something else:\n%s", tc.host, out)
			}
			for _, other := range tc.others {
				if out, err := exec.Command(keygen, "-F", other, "-f", kh.Path("web-1")).CombinedOutput(); err == nil {
					t.Errorf("ssh-keygen -F %s matched, want no match:\n%s", other, out)
				}
			}
		})
	}
}
