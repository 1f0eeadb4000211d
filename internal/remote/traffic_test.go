package remote

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

// Traffic counts every byte of the connection: the handshake before any
// session, then each session's payload with its framing, MACs and window
// adjustments, which stay within 5% for a bulk transfer.
func TestTraffic(t *testing.T) {
	c := newFixture(t).connect(t)
	hsSent, hsRecv := c.Traffic()
	// Version strings, KEXINIT, key exchange, NEWKEYS, auth: a few KB each way.
	if hsSent < 500 || hsSent > 16<<10 || hsRecv < 500 || hsRecv > 16<<10 {
		t.Fatalf("after the handshake: sent %d, received %d; want 500 B to 16 KiB each", hsSent, hsRecv)
	}
	const mib = 1 << 20
	payload := make([]byte, mib)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Run(t.Context(), "cat", bytes.NewReader(payload), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), payload) {
		t.Fatalf("cat echoed %d bytes, not the %d sent", out.Len(), mib)
	}
	sent, recv := c.Traffic()
	t.Logf("handshake %d/%d B; after 1 MiB each way: sent %d B (%.4f MiB), received %d B (%.4f MiB)",
		hsSent, hsRecv, sent, float64(sent)/mib, recv, float64(recv)/mib)
	for _, tt := range []struct {
		name string
		n    int64
	}{{"sent", sent}, {"received", recv}} {
		if tt.n < mib || tt.n >= mib*105/100 {
			t.Errorf("%s %d B, want [1 MiB, 1.05 MiB)", tt.name, tt.n)
		}
	}
	// It only grows, and still answers after Close.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s, r := c.Traffic(); s < sent || r < recv {
		t.Errorf("after Close: %d/%d, was %d/%d", s, r, sent, recv)
	}
}
