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

// APIError is an error answer of the API, after godo's retries.
type APIError struct {
	Op        string // what fleet was doing
	Status    int
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s: API answered %d", e.Op, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	if e.Status == http.StatusUnauthorized {
		msg += "; check DIGITALOCEAN_TOKEN"
	}
	return msg
}

// TimeoutError says which wait ran out.
type TimeoutError struct {
	What  string
	After time.Duration
	Last  string // the last state seen
}

func (e *TimeoutError) Error() string {
	s := fmt.Sprintf("timed out after %s waiting for %s", e.After, e.What)
	if e.Last != "" {
		s += " (last seen: " + e.Last + ")"
	}
	return s
}

// ActionError is an action that ended errored.
type ActionError struct {
	ID   int
	Type string
	On   string
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("action %d (%s on %s) ended errored", e.ID, e.Type, e.On)
}

// ErrNotFound is returned (wrapped) for a 404.
var ErrNotFound = errors.New("not found")

func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// IsStatus reports whether err is an API answer with that status, wrapped
// (APIError) or straight from godo.
func IsStatus(err error, status int) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == status
	}
	var er *godo.ErrorResponse
	return errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == status
}

func wrap(err error, op string) error {
	if err == nil {
		return nil
	}
	var rl *RateLimitError
	if errors.As(err, &rl) {
		named := *rl
		named.Op = op
		return &named
	}
	var er *godo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return &APIError{Op: op, Status: er.Response.StatusCode, Message: er.Message, RequestID: er.RequestID}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// retryable reports whether a failed non-idempotent POST may be sent
// again, after looking up whether it took effect.
func retryable(resp *godo.Response, err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if resp == nil || resp.Response == nil {
		return true // transport error: the request may or may not have arrived
	}
	s := resp.StatusCode
	return s == http.StatusTooManyRequests || (s >= 500 && s != http.StatusNotImplemented)
}

// resendWait is how long to wait before resending a POST that failed with
// err: what the answer states (Retry-After), or b's next back-off. A wait
// the call's budget cannot hold is not slept: a stated one fails with a
// RateLimitError, a back-off with err itself.
func (c *Client) resendWait(ctx context.Context, resp *godo.Response, err error, b *backoff) (time.Duration, error) {
	now := time.Now()
	var hr *http.Response
	if resp != nil {
		hr = resp.Response
	}
	wait, stated := statedWait(hr, now)
	if !stated {
		wait = b.wait()
	}
	budget, why := c.budget(ctx, now)
	switch {
	case wait < budget:
		return wait, nil
	case stated:
		return 0, newRateLimitError(hr, wait, now, budget, why)
	}
	return 0, err
}

func isPendingEvent(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity &&
		strings.Contains(strings.ToLower(ae.Message), "pending event")
}
