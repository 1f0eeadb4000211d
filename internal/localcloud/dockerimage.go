package localcloud

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// The droplet image: a bare Debian trixie with systemd, cloud-init and
// sshd (droplet-image/Dockerfile). Its recipe is embedded; the tag carries
// a hash of it, so a changed recipe means a new image, built on first use.

//go:embed droplet-image
var dropletImageFS embed.FS

const (
	dropletImageRepo = "fleet-droplet"
	dropletBaseImage = "debian:trixie-slim"
	dropletImageDir  = "droplet-image"
)

// DropletImageTag is the tag of the droplet image of this fleet build:
// fleet-droplet:<first 12 hex digits of a SHA-256 over the recipe files>.
func DropletImageTag() string {
	files, err := dropletRecipe()
	if err != nil {
		panic(err) // the files are embedded: cannot happen
	}
	return dropletImageRepo + ":" + recipeHash(files)
}

// recipeFile is one file of an image recipe (droplet-image/, mirror-image/).
type recipeFile struct {
	name string // relative to the recipe directory, with slashes
	data []byte
}

// dropletRecipe reads the embedded recipe files, sorted by name.
func dropletRecipe() ([]recipeFile, error) { return readRecipe(dropletImageFS, dropletImageDir) }

// recipeHash hashes the names and contents of files.
func recipeHash(files []recipeFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// imageMu serializes EnsureImage within the process.
var imageMu sync.Mutex

// EnsureImage returns the droplet image tag (DropletImageTag), building the
// image with `docker build` first if Docker does not have it (about half a
// minute with a reachable Debian mirror; build output goes to logw, which
// may be nil). With the image present it only asks Docker whether it is.
// If the base image debian:trixie-slim is missing too, it is pulled, or
// else made with debootstrap and `docker import`.
func EnsureImage(ctx context.Context, logw io.Writer) (string, error) {
	if logw == nil {
		logw = io.Discard
	}
	files, err := dropletRecipe()
	if err != nil {
		return "", fmt.Errorf("droplet image recipe: %w", err)
	}
	hash := recipeHash(files)
	tag := dropletImageRepo + ":" + hash
	imageMu.Lock()
	defer imageMu.Unlock()
	if ok, err := imageExists(ctx, tag); err != nil || ok {
		return tag, err
	}
	if err := ensureBaseImage(ctx, logw); err != nil {
		return "", err
	}
	fmt.Fprintf(logw, "building the droplet image %s (once per recipe change)\n", tag)
	if err := buildRecipe(ctx, files, tag, hash, logw); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("building the droplet image %s: %w", tag, err)
	}
	return tag, nil
}

// imageExists says whether Docker has the image ref.
func imageExists(ctx context.Context, ref string) (bool, error) {
	_, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	if err == nil {
		return true, nil
	}
	var de *dockerError
	if errors.As(err, &de) && strings.Contains(strings.ToLower(de.stderr), "no such image") {
		return false, nil
	}
	return false, err
}

// ensureBaseImage makes sure debian:trixie-slim exists: present, pulled,
// or built with debootstrap and imported.
func ensureBaseImage(ctx context.Context, logw io.Writer) error {
	if ok, err := imageExists(ctx, dropletBaseImage); err != nil || ok {
		return err
	}
	fmt.Fprintf(logw, "pulling %s\n", dropletBaseImage)
	pull := exec.CommandContext(ctx, "docker", "pull", dropletBaseImage)
	pull.Stdout, pull.Stderr = logw, logw
	if err := pull.Run(); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return fmt.Errorf("%s is missing and cannot be pulled; install debootstrap (apt-get install debootstrap) so fleet can build it", dropletBaseImage)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is missing and cannot be pulled; building it with debootstrap needs root: run `sudo debootstrap --variant=minbase trixie DIR && sudo tar -C DIR -c . | docker import - %s`", dropletBaseImage, dropletBaseImage)
	}
	dir, err := os.MkdirTemp("", "fleet-trixie-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(logw, "%s cannot be pulled; building it with debootstrap (a few minutes)\n", dropletBaseImage)
	tail := &tailBuffer{max: 4096}
	boot := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "trixie", dir, "http://deb.debian.org/debian")
	boot.Stdout, boot.Stderr = io.MultiWriter(logw, tail), io.MultiWriter(logw, tail)
	if err := boot.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("debootstrap of %s: %v\n%s", dropletBaseImage, err, tail.String())
	}
	tarCmd := exec.CommandContext(ctx, "tar", "-C", dir, "-c", ".")
	imp := exec.CommandContext(ctx, "docker", "import", "-", dropletBaseImage)
	r, w := io.Pipe()
	tarCmd.Stdout = w
	var tarErr bytes.Buffer
	tarCmd.Stderr = &tarErr
	imp.Stdin = r
	var impOut bytes.Buffer
	imp.Stdout, imp.Stderr = &impOut, &impOut
	if err := imp.Start(); err != nil {
		return err
	}
	terr := tarCmd.Run()
	w.CloseWithError(terr)
	ierr := imp.Wait()
	r.Close()
	if terr != nil {
		return fmt.Errorf("importing %s: tar: %v %s", dropletBaseImage, terr, tarErr.String())
	}
	if ierr != nil {
		return fmt.Errorf("importing %s: docker import: %v %s", dropletBaseImage, ierr, impOut.String())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
