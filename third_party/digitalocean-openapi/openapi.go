// Package doopenapi holds DigitalOcean's public OpenAPI description,
// DigitalOcean-public.v2.bundled.yaml (Apache License 2.0, see LICENSE),
// zstd-compressed and embedded, so that every test of fleet checks its API
// traffic against the same file with nothing outside the repository.
// README.md says where the file comes from and how to update it.
package doopenapi

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Name is the document's file name upstream.
const Name = "DigitalOcean-public.v2.bundled.yaml"

// SHA256 is the sha256 of the uncompressed document; YAML checks it, so the
// compressed file and this line change together (README.md).
const SHA256 = "3d7ed250100a1782cbed1ff5e9d534aebcff3da9326bcb81abcfeb3f6c73f436"

// maxSize bounds the uncompressed document (it is 2.9 MB).
const maxSize = 32 << 20

//go:embed DigitalOcean-public.v2.bundled.yaml.zst
var compressed []byte

// YAML returns the uncompressed document.
func YAML() ([]byte, error) {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxSize))
	if err != nil {
		return nil, fmt.Errorf("doopenapi: %w", err)
	}
	defer d.Close()
	b, err := d.DecodeAll(compressed, nil)
	if err != nil {
		return nil, fmt.Errorf("doopenapi: %s.zst: %w", Name, err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != SHA256 {
		return nil, fmt.Errorf("doopenapi: %s.zst unpacks to sha256 %s, want %s (update SHA256 with the file)", Name, got, SHA256)
	}
	return b, nil
}
