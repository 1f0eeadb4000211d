package doopenapi

import (
	"bytes"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestYAML(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	real := compressed
	t.Cleanup(func() { compressed = real })
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "embedded"},
		{name: "another document", data: enc.EncodeAll([]byte("openapi: 3.0.0\n"), nil), wantErr: "unpacks to sha256"},
		{name: "not zstd", data: []byte("openapi: 3.0.0\n"), wantErr: Name + ".zst"},
		{name: "truncated", data: real[:len(real)/2], wantErr: Name + ".zst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compressed = real
			if tt.data != nil {
				compressed = tt.data
			}
			b, err := YAML()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("openapi: 3.")) || len(b) < 1<<20 {
				t.Errorf("YAML() = %d bytes starting %q, want DigitalOcean's OpenAPI 3 document", len(b), b[:min(len(b), 20)])
			}
		})
	}
}
