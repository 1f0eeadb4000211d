package cloud

import (
	"context"
	"errors"
	"testing"
	"time"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJv2Y3E7bMVK2cL4B3zFqEN5o6k1fU4tBHj2sYyZ1Ff test"

// TestKeys: create is a compare-and-swap (ErrExists on a second create of
// the same public key), answers carry the server's clock, and missing
// keys are ErrNotFound.
func TestKeys(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	k, err := e.c.CreateKey(ctx, "lock one", testKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID == 0 || k.Fingerprint == "" || k.Name != "lock one" {
		t.Fatalf("created %+v", k)
	}
	if d := time.Since(k.Date); k.Date.IsZero() || d < -2*time.Second || d > 2*time.Second {
		t.Errorf("Date %v is not the server's clock", k.Date)
	}
	tests := []struct {
		name       string
		do         func() error
		exists     bool
		notFound   bool
		wantStatus int
	}{
		{"same key again", func() error { _, err := e.c.CreateKey(ctx, "lock two", testKey); return err }, true, false, 422},
		{"invalid key", func() error { _, err := e.c.CreateKey(ctx, "x", "ssh-ed25519 nope"); return err }, false, false, 422},
		{"read a missing key", func() error {
			_, err := e.c.KeyByFingerprint(ctx, "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff")
			return err
		}, false, true, 404},
		{"rename a missing key", func() error { _, err := e.c.RenameKey(ctx, k.ID+100, "x"); return err }, false, true, 404},
		{"delete a missing key", func() error { return e.c.DeleteKey(ctx, k.ID+100) }, false, true, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if errors.Is(err, ErrExists) != tt.exists || errors.Is(err, ErrNotFound) != tt.notFound || !IsStatus(err, tt.wantStatus) {
				t.Fatalf("got %v", err)
			}
		})
	}
	r, err := e.c.RenameKey(ctx, k.ID, "lock renamed")
	if err != nil || r.Name != "lock renamed" {
		t.Fatalf("rename: %+v, %v", r, err)
	}
	g, err := e.c.KeyByFingerprint(ctx, k.Fingerprint)
	if err != nil || g.ID != k.ID || g.Name != "lock renamed" {
		t.Fatalf("read: %+v, %v", g, err)
	}
	if err := e.c.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.KeyByFingerprint(ctx, k.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}
