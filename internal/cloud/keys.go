package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// Key is an SSH key on the account, with the server's clock at the answer.
// The project lock (internal/lock) is one; these calls are its seam, kept
// out of the Cloud interface.
type Key struct {
	ID          int
	Name        string
	Fingerprint string // MD5
	PublicKey   string
	// Date is the API server's clock when it answered (its Date header,
	// whole seconds); zero when absent. Machines whose clocks disagree
	// agree on this one.
	Date time.Time
}

// ErrExists is returned (wrapped) by CreateKey when the public key is
// already on the account: DigitalOcean answers 422 "SSH Key is already in
// use on your account", which makes the create a compare-and-swap.
var ErrExists = errors.New("already on the account")

func fromGodoKey(k *godo.Key, resp *godo.Response) *Key {
	out := &Key{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey}
	if resp != nil && resp.Response != nil {
		out.Date, _ = http.ParseTime(resp.Header.Get("Date"))
	}
	return out
}

// CreateKey adds a public key to the account. A retried POST that took
// effect the first time answers ErrExists too: the caller tells its own
// key by its name.
func (c *Client) CreateKey(ctx context.Context, name, publicKey string) (*Key, error) {
	k, resp, err := c.api.Keys.Create(ctx, &godo.KeyCreateRequest{Name: name, PublicKey: publicKey})
	if err = wrap(err, "add SSH key "+keyLabel(name)); err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(ae.Message), "already in use") {
			return nil, fmt.Errorf("%w: %w", ErrExists, err)
		}
		return nil, err
	}
	return fromGodoKey(k, resp), nil
}

// KeyByFingerprint reads a key; ErrNotFound (wrapped) when it is not on the
// account.
func (c *Client) KeyByFingerprint(ctx context.Context, fingerprint string) (*Key, error) {
	k, resp, err := c.api.Keys.GetByFingerprint(ctx, fingerprint)
	if err != nil {
		return nil, wrap(err, "read SSH key "+fingerprint)
	}
	return fromGodoKey(k, resp), nil
}

// RenameKey sets the name of key id; ErrNotFound (wrapped) when it is gone.
func (c *Client) RenameKey(ctx context.Context, id int, name string) (*Key, error) {
	k, resp, err := c.api.Keys.UpdateByID(ctx, id, &godo.KeyUpdateRequest{Name: name})
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("rename SSH key %d", id))
	}
	return fromGodoKey(k, resp), nil
}

// DeleteKey removes key id (by ID, never by fingerprint: an ID names one
// incarnation of a key); ErrNotFound (wrapped) when it is already gone.
func (c *Client) DeleteKey(ctx context.Context, id int) error {
	_, err := c.api.Keys.DeleteByID(ctx, id)
	return wrap(err, fmt.Sprintf("delete SSH key %d", id))
}

// keyLabel is the start of a key's name, for error messages.
func keyLabel(name string) string {
	if i := strings.IndexByte(name, ' '); i > 0 {
		name = name[:i]
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return fmt.Sprintf("%q", name)
}
