package cloud

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"
)

// CleanupWait is the longest wait before a retry once the command was
// interrupted: the clean-up that follows a Ctrl-C (recording a failed
// candidate, under context.WithoutCancel) must not wait out a rate limit.
const CleanupWait = 2 * time.Second

// requestTimeout bounds one HTTP exchange (not the retries around it).
const requestTimeout = 60 * time.Second

// httpClients builds the transports of the two godo clients: retrying
// (go-retryablehttp, with fleet's CheckRetry and Backoff) and once.
// godo's own RetryConfig cannot take hooks, so the retrying client is
// built here the way godo builds it, plus the hooks.
func (c *Client) httpClients() (retrying, once *http.Client) {
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.cfg.Token})
	rc := retryablehttp.NewClient()
	rc.Logger = nil // godo's default: retries are not logged
	rc.HTTPClient.Timeout = requestTimeout
	rc.HTTPClient.Transport = committed{base: rc.HTTPClient.Transport}
	rc.RetryMax = c.cfg.RetryMax
	rc.RetryWaitMin, rc.RetryWaitMax = c.cfg.RetryWaitMin, c.cfg.RetryWaitMax
	rc.CheckRetry = c.checkRetry
	rc.Backoff = c.backoffFor
	rc.ErrorHandler = giveUp
	retrying = &http.Client{Transport: &tracked{base: &oauth2.Transport{Source: ts, Base: &retryablehttp.RoundTripper{Client: rc}}}}
	once = &http.Client{
		Transport: &tracked{base: &oauth2.Transport{Source: ts, Base: committed{base: http.DefaultTransport.(*http.Transport).Clone()}}},
		Timeout:   requestTimeout,
	}
	return retrying, once
}

// checkRetry is retryablehttp's default policy (and godo's HTTP/2
// INTERNAL_ERROR retry), except that a retry whose wait does not fit the
// call's budget is not made: a server-stated wait (Retry-After) fails with
// a RateLimitError, and a back-off returns the answer (or error) in hand.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil && err == nil && resp != nil {
		return false, nil // a committed request's answer: it stands, unretried
	}
	retry, cerr := retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	if !retry && err != nil && ctx.Err() == nil && strings.Contains(err.Error(), "INTERNAL_ERROR") &&
		strings.Contains(reflect.TypeOf(err).String(), "http2") {
		retry, cerr = true, nil
	}
	if !retry {
		return false, cerr
	}
	attempt := 0
	if n, ok := ctx.Value(attemptKey{}).(*int); ok {
		attempt = *n
		*n++
	}
	now := time.Now()
	wait, stated := c.retryWait(attempt, resp, now)
	budget, why := c.budget(ctx, now)
	if wait < budget {
		return true, nil
	}
	if stated {
		return false, newRateLimitError(resp, wait, now, budget, why)
	}
	return false, nil
}

// backoffFor is the Backoff hook; checkRetry made the same choice.
func (c *Client) backoffFor(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	wait, _ := c.retryWait(attempt, resp, time.Now())
	return wait
}

// retryWait is how long to wait before retry number attempt (0-based):
// what the server states, or an exponential back-off up to RetryWaitMax.
func (c *Client) retryWait(attempt int, resp *http.Response, now time.Time) (wait time.Duration, stated bool) {
	if w, ok := statedWait(resp, now); ok {
		return w, true
	}
	return retryablehttp.DefaultBackoff(c.cfg.RetryWaitMin, c.cfg.RetryWaitMax, attempt, nil), false
}

// statedWait is the wait a 429 or 503 asks for: Retry-After (seconds or
// an HTTP date; DigitalOcean's burst limit sends it) or, on a 429 with
// none left and no Retry-After (its hourly limit), until ratelimit-reset.
// The reset is read against the answer's Date, so a clock that is off
// does not turn it into a busy retry loop or an hour's wait; a reset that
// has passed still waits a second.
func statedWait(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	const most = 365 * 24 * time.Hour // no overflow from a hostile header
	clamp := func(d time.Duration) time.Duration { return max(0, min(d, most)) }
	if ra := strings.TrimSpace(resp.Header.Get("Retry-After")); ra != "" {
		if secs, err := strconv.ParseInt(ra, 10, 64); err == nil && secs >= 0 {
			return clamp(time.Duration(min(secs, int64(most/time.Second))) * time.Second), true
		}
		if t, err := http.ParseTime(ra); err == nil {
			return clamp(t.Sub(now)), true
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests && strings.TrimSpace(resp.Header.Get("ratelimit-remaining")) == "0" {
		reset, err := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("ratelimit-reset")), 10, 64)
		if err == nil && reset > 0 && reset < 1<<40 {
			sent := now
			if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
				sent = d
			}
			return clamp(max(time.Unix(reset, 0).Sub(sent), time.Second)), true
		}
	}
	return 0, false
}

// budget is the longest one wait before a retry may be under ctx:
// RetryWaitMax, what is left before ctx's deadline, and CleanupWait once
// the command was interrupted. why says which one, for errors.
func (c *Client) budget(ctx context.Context, now time.Time) (time.Duration, string) {
	b, why := c.cfg.RetryWaitMax, ""
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < b {
		b = max(0, dl.Sub(now))
		if roundBudget(b) < roundBudget(c.cfg.RetryWaitMax) {
			why = "the time left for this step"
		}
	}
	if in, ok := ctx.Value(interruptKey{}).(*Interrupt); ok && in.fired() && CleanupWait < b {
		b, why = CleanupWait, "after Ctrl-C"
	}
	return b, why
}

// giveUp ends a call that will not be retried: like godo's handler it
// hands the last answer to godo (which makes it an ErrorResponse), but a
// policy error (a RateLimitError, ctx) wins over the answer.
func giveUp(resp *http.Response, err error, tries int) (*http.Response, error) {
	if resp == nil {
		return nil, err
	}
	if err != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, err
	}
	resp.Header.Add("X-Godo-Retry-Attempts", strconv.Itoa(tries))
	return resp, nil
}

type attemptKey struct{}

// tracked counts the retries of each call (for checkRetry) and records
// the requests in flight with the command's Interrupt, if any.
type tracked struct{ base http.RoundTripper }

func (t *tracked) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := context.WithValue(req.Context(), attemptKey{}, new(int))
	if in, ok := ctx.Value(interruptKey{}).(*Interrupt); ok {
		defer in.track(req.Method + " " + req.URL.Path)()
	}
	return t.base.RoundTrip(req.WithContext(ctx))
}

// Interrupt tells the client that the command was interrupted. Put on the
// command's context (WithInterrupt), it outlives context.WithoutCancel, so
// the clean-up after a Ctrl-C sees it: its retries wait at most
// CleanupWait, and Pending names the requests it has in flight.
type Interrupt struct {
	done     <-chan struct{}
	mu       sync.Mutex
	inflight map[int]string
	next     int
}

type interruptKey struct{}

// WithInterrupt returns ctx carrying an Interrupt that fires when done
// is closed (the first Ctrl-C).
func WithInterrupt(ctx context.Context, done <-chan struct{}) (context.Context, *Interrupt) {
	in := &Interrupt{done: done, inflight: map[int]string{}}
	return context.WithValue(ctx, interruptKey{}, in), in
}

func (in *Interrupt) fired() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

func (in *Interrupt) track(what string) (untrack func()) {
	in.mu.Lock()
	id := in.next
	in.next++
	in.inflight[id] = what
	in.mu.Unlock()
	return func() {
		in.mu.Lock()
		delete(in.inflight, id)
		in.mu.Unlock()
	}
}

// Pending lists the API requests in flight ("POST /v2/tags/x/resources"),
// oldest first.
func (in *Interrupt) Pending() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	ids := make([]int, 0, len(in.inflight))
	for id := range in.inflight {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = in.inflight[id]
	}
	return out
}

// RateLimitError is a 429 (or a 503 with Retry-After) asking for a wait
// longer than fleet may wait at that point.
type RateLimitError struct {
	Op        string // what fleet was doing; set by wrap
	Status    int
	Wait      time.Duration // what the API asks
	Until     time.Time
	Budget    time.Duration // the longest fleet waits there
	Why       string        // why Budget is below RetryWaitMax, if it is
	RequestID string
}

func newRateLimitError(resp *http.Response, wait time.Duration, now time.Time, budget time.Duration, why string) *RateLimitError {
	return &RateLimitError{
		Status: resp.StatusCode, Wait: wait, Until: now.Add(wait), Budget: budget, Why: why,
		RequestID: resp.Header.Get("x-request-id"),
	}
}

func (e *RateLimitError) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op + ": ")
	}
	if e.Status == http.StatusTooManyRequests {
		fmt.Fprintf(&b, "DigitalOcean rate limit reached (%d)", e.Status)
	} else {
		fmt.Fprintf(&b, "DigitalOcean is unavailable (%d)", e.Status)
	}
	wait := e.Wait.Round(time.Second)
	if e.Wait < time.Second {
		wait = e.Wait.Round(time.Millisecond)
	}
	until := e.Until.UTC().Format("15:04 UTC")
	if e.Wait > 20*time.Hour {
		until = e.Until.UTC().Format("Jan 2 15:04 UTC")
	}
	fmt.Fprintf(&b, ": it asks to wait %s (until %s); fleet waits at most %s", wait, until, roundBudget(e.Budget))
	if e.Why != "" {
		b.WriteString(" (" + e.Why + ")")
	}
	if e.RequestID != "" {
		b.WriteString("; request " + e.RequestID)
	}
	return b.String()
}

func roundBudget(d time.Duration) time.Duration {
	if d >= 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// committed lets a request that changes something, once on the wire, run
// to its answer although the command's context is cancelled (Ctrl-C):
// otherwise fleet cannot know whether the API acted on it. A move read
// back as "not moved" while its POST was still on the wire, and done by
// the API just after, made the re-run of a rollback roll back again
// (kill-and-rerun, rollback SIGINT2 after the first tag: 2 of 480 tries).
// Until the request has a connection (dial, TLS, a free connection) the
// cancel still applies, and the request is not sent; from then on only
// the context's deadline (the client's requestTimeout) does. Reads stay
// cancellable throughout.
type committed struct{ base http.RoundTripper }

func (t committed) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return t.base.RoundTrip(req)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(requestTimeout)
	}
	dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	var mu sync.Mutex
	sent, dropped := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !sent {
			dropped = true
			cancel()
		}
	})
	dctx = httptrace.WithClientTrace(dctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		mu.Lock()
		defer mu.Unlock()
		sent = !dropped
	}})
	resp, err := t.base.RoundTrip(req.WithContext(dctx))
	stop()
	if err != nil {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if dropped {
			return nil, ctx.Err() // cancelled before it left
		}
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose releases a committed request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
