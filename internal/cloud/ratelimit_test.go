package cloud

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/localcloud"
)

// A rate limit (or back-off) longer than what is left of a call's budget
// fails the call at once, naming the wait; one that fits is waited out.
// Issue 9: a 3,470 s Retry-After held fleet for an hour.
func TestRetryWaitsAreBounded(t *testing.T) {
	ctx := context.Background()
	listTwice := func(ctx context.Context, c *Client) error {
		if _, err := c.ListByTag(context.Background(), "fleet:test"); err != nil {
			return err // the first spends the quota
		}
		_, err := c.ListByTag(ctx, "fleet:test")
		return err
	}
	tests := []struct {
		name     string
		opts     localcloud.Options // the server's limit; its window is its Retry-After
		waitMax  time.Duration      // Config.RetryWaitMax
		deadline time.Duration      // of the call; 0: none
		call     func(ctx context.Context, c *Client) error
		want     string        // in the error; "" wants success
		status   int           // of the APIError, if want is not a rate limit
		atLeast  time.Duration // the call waited at least
		within   time.Duration // the call returns within
	}{
		{
			// The hourly limit's 429 has no Retry-After: the wait is
			// until ratelimit-reset, when the oldest request expires.
			name: "an hourly reset 3470s away is not waited",
			opts: localcloud.Options{RateLimit: 1, RateWindow: 3470 * time.Second}, waitMax: 30 * time.Second,
			call:   listTwice,
			want:   "list droplets tagged fleet:test (page 1): DigitalOcean rate limit reached (429): it asks to wait 57m5",
			within: time.Second,
		},
		{
			name: "the message names fleet's limit",
			opts: localcloud.Options{RateLimit: 1, RateWindow: 3470 * time.Second}, waitMax: 30 * time.Second,
			call: listTwice, want: " UTC); fleet waits at most 30s", within: time.Second,
		},
		{
			name: "an hourly reset later than the time left before the deadline",
			opts: localcloud.Options{RateLimit: 1, RateWindow: 3 * time.Second}, waitMax: 30 * time.Second, deadline: time.Second,
			// Under the 1 s deadline, which a wait for the reset would reach.
			call: listTwice, want: "(the time left for this step)", within: 700 * time.Millisecond,
		},
		{
			name: "an hourly reset that fits is waited out",
			opts: localcloud.Options{RateLimit: 1, RateWindow: time.Second}, waitMax: 30 * time.Second, deadline: 10 * time.Second,
			call: listTwice, atLeast: 500 * time.Millisecond, within: 4 * time.Second,
		},
		{
			// The burst limit's 429 carries Retry-After (seconds).
			name: "a burst Retry-After that fits is waited out",
			opts: localcloud.Options{BurstLimit: 1, BurstWindow: 1500 * time.Millisecond}, waitMax: 30 * time.Second, deadline: 10 * time.Second,
			call: listTwice, atLeast: 900 * time.Millisecond, within: 3 * time.Second,
		},
		{
			name: "a burst Retry-After longer than fleet waits",
			opts: localcloud.Options{BurstLimit: 1, BurstWindow: 50 * time.Second}, waitMax: 30 * time.Second,
			call: listTwice, want: "list droplets tagged fleet:test (page 1): DigitalOcean rate limit reached (429): it asks to wait 5", within: time.Second,
		},
		{
			name: "a create's POST meets the limit",
			opts: localcloud.Options{RateLimit: 1, RateWindow: 3470 * time.Second}, waitMax: 30 * time.Second,
			call: func(ctx context.Context, c *Client) error {
				_, _, err := c.CreateDroplet(ctx, CreateRequest{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:x"})
				return err
			},
			want: "create droplet web-1: DigitalOcean rate limit reached (429): it asks to wait 57m5", within: time.Second,
		},
		{
			name: "a poll meets the limit",
			opts: localcloud.Options{RateLimit: 3, RateWindow: 3470 * time.Second, ActionDelay: time.Minute}, waitMax: 30 * time.Second,
			call: func(ctx context.Context, c *Client) error {
				d, action, err := c.CreateDroplet(ctx, CreateRequest{Name: "web-1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-13-x64", DeployTag: "fleet-deploy:x"})
				if err != nil {
					return err
				}
				_, err = c.WaitReady(ctx, d, action, Timeouts{Create: 20 * time.Second, Active: 20 * time.Second})
				return err
			},
			want: "get create action of web-1: DigitalOcean rate limit reached (429)", within: time.Second,
		},
		{
			name: "a 503 whose back-off outlasts the deadline is answered at once",
			opts: localcloud.Options{Faults: mustFaults(t, "GET /v2/droplets#2=503")}, waitMax: 30 * time.Second, deadline: 300 * time.Millisecond,
			// Under the deadline: a call that slept until it would take 300 ms.
			call: listTwice, status: 503, within: 250 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, tt.opts, func(c *Config) { c.RetryWaitMax = tt.waitMax; c.RetryWaitMin = time.Second })
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if tt.deadline > 0 {
				cctx, cancel = context.WithTimeout(cctx, tt.deadline)
				defer cancel()
			}
			// A guard, not a deadline: the budget must not shrink.
			guard := time.AfterFunc(tt.within+5*time.Second, cancel)
			defer guard.Stop()
			start := time.Now()
			err := tt.call(cctx, e.c)
			took := time.Since(start)
			switch {
			case tt.want == "" && tt.status == 0 && err != nil:
				t.Fatalf("got %v, want success", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			case tt.status != 0 && !IsStatus(err, tt.status):
				t.Fatalf("got %v, want the API's %d", err, tt.status)
			}
			var rl *RateLimitError
			if isRL := errors.As(err, &rl); isRL != (tt.want != "") {
				t.Errorf("RateLimitError: %v, want %v", isRL, !isRL)
			}
			if took > tt.within || took < tt.atLeast {
				t.Errorf("the call took %v, want %v to %v", took, tt.atLeast, tt.within)
			}
			if tt.want == "" && tt.status == 0 && tt.atLeast > 0 && e.srv.Stats().Count("", "/v2/") > 0 {
				if n := count429(e.srv); n != 1 {
					t.Errorf("%d answers were 429, want 1 (waited out, then retried once)", n)
				}
			}
			t.Logf("%v in %v", err, took.Round(time.Millisecond))
		})
	}
}

func count429(srv *localcloud.Server) (n int) {
	for _, r := range srv.Stats().Requests {
		if r.Status == 429 {
			n++
		}
	}
	return n
}

func mustFaults(t *testing.T, spec string) []localcloud.Fault {
	fs, err := localcloud.ParseFaults(spec)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestStatedWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 19, 27, 10, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header map[string]string
		want   time.Duration
		stated bool
	}{
		{"Retry-After seconds", 429, map[string]string{"Retry-After": "3470"}, 3470 * time.Second, true},
		{"Retry-After date", 429, map[string]string{"Retry-After": "Sun, 01 Mar 2026 19:28:10 GMT"}, time.Minute, true},
		{"Retry-After date passed", 429, map[string]string{"Retry-After": "Sun, 01 Mar 2026 19:00:00 GMT"}, 0, true},
		{"503 with Retry-After", 503, map[string]string{"Retry-After": "120"}, 2 * time.Minute, true},
		{"500 ignores Retry-After", 500, map[string]string{"Retry-After": "120"}, 0, false},
		{"429 without a hint", 429, nil, 0, false},
		{"ratelimit-reset with none left", 429, map[string]string{"ratelimit-remaining": "0", "ratelimit-reset": "1772393830"}, 10 * time.Minute, true},
		{"ratelimit-reset with some left", 429, map[string]string{"ratelimit-remaining": "4", "ratelimit-reset": "1772393830"}, 0, false},
		{"ratelimit-reset against the answer's Date", 429, map[string]string{"ratelimit-remaining": "0", "ratelimit-reset": "1772393830", "Date": "Sun, 01 Mar 2026 19:32:10 GMT"}, 5 * time.Minute, true},
		{"a reset that passed waits a second", 429, map[string]string{"ratelimit-remaining": "0", "ratelimit-reset": "1772393000"}, time.Second, true},
		{"a bad Date is ignored", 429, map[string]string{"ratelimit-remaining": "0", "ratelimit-reset": "1772393830", "Date": "yesterday"}, 10 * time.Minute, true},
		{"a huge reset is no wait", 429, map[string]string{"ratelimit-remaining": "0", "ratelimit-reset": "99999999999999999"}, 0, false},
		{"Retry-After wins over reset", 429, map[string]string{"Retry-After": "5", "ratelimit-remaining": "0", "ratelimit-reset": "1772393830"}, 5 * time.Second, true},
		{"negative", 429, map[string]string{"Retry-After": "-5"}, 0, false},
		{"garbage", 429, map[string]string{"Retry-After": "soon"}, 0, false},
		{"huge is clamped, not overflowed", 429, map[string]string{"Retry-After": "99999999999999999"}, 365 * 24 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{}}
			for k, v := range tt.header {
				resp.Header.Set(k, v)
			}
			got, stated := statedWait(resp, now)
			if got != tt.want || stated != tt.stated {
				t.Errorf("got %v, %v; want %v, %v", got, stated, tt.want, tt.stated)
			}
		})
	}
}

func TestRateLimitErrorMessage(t *testing.T) {
	at := time.Date(2026, 3, 1, 19, 27, 10, 0, time.UTC)
	tests := []struct {
		err  RateLimitError
		want string
	}{
		{RateLimitError{Op: "list droplets", Status: 429, Wait: 3470 * time.Second, Until: at.Add(3470 * time.Second), Budget: 30 * time.Second},
			"list droplets: DigitalOcean rate limit reached (429): it asks to wait 57m50s (until 20:25 UTC); fleet waits at most 30s"},
		{RateLimitError{Status: 503, Wait: 2 * time.Minute, Until: at.Add(2 * time.Minute), Budget: 1234 * time.Millisecond, Why: "the time left for this step", RequestID: "r1"},
			"DigitalOcean is unavailable (503): it asks to wait 2m0s (until 19:29 UTC); fleet waits at most 1.2s (the time left for this step); request r1"},
		{RateLimitError{Status: 429, Wait: 50 * time.Hour, Until: at.Add(50 * time.Hour), Budget: CleanupWait, Why: "after Ctrl-C"},
			"DigitalOcean rate limit reached (429): it asks to wait 50h0m0s (until Mar 3 21:27 UTC); fleet waits at most 2s (after Ctrl-C)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

// After the first Ctrl-C the clean-up (under context.WithoutCancel) still
// runs, but waits out no rate limit longer than CleanupWait; the requests
// it has in flight are named for the second Ctrl-C's note.
func TestInterruptShortensWaits(t *testing.T) {
	e := newEnvWith(t, localcloud.Options{RateLimit: 1, RateWindow: 10 * time.Second}, func(c *Config) { c.RetryWaitMax = 30 * time.Second })
	root, cancel := context.WithCancel(context.Background())
	root, in := WithInterrupt(root, root.Done())
	if _, err := e.c.ListByTag(root, "fleet:test"); err != nil {
		t.Fatal(err)
	}
	cancel()
	cleanup, stop := context.WithTimeout(context.WithoutCancel(root), 30*time.Second)
	defer stop()
	start := time.Now()
	_, err := e.c.ListByTag(cleanup, "fleet:test")
	var rl *RateLimitError
	if !errors.As(err, &rl) || rl.Budget != CleanupWait || !strings.Contains(err.Error(), "(after Ctrl-C)") {
		t.Fatalf("got %v, want a RateLimitError bounded by CleanupWait", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("the clean-up call took %v", took)
	}
	if p := in.Pending(); len(p) != 0 {
		t.Errorf("pending after the call: %q", p)
	}
}

func TestPendingNamesRequestsInFlight(t *testing.T) {
	fs := mustFaults(t, "POST /v2/tags latency=10s")
	e := newEnvWith(t, localcloud.Options{Faults: fs}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx, in := WithInterrupt(ctx, make(chan struct{}))
	done := make(chan error, 1)
	go func() { done <- e.c.Tag(ctx, 1, "fleet-failed") }()
	deadline := time.Now().Add(5 * time.Second)
	for len(in.Pending()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := in.Pending(); len(got) != 1 || got[0] != "POST /v2/tags" {
		t.Errorf("pending %q, want [POST /v2/tags]", got)
	}
	cancel()
	<-done
	if got := in.Pending(); len(got) != 0 {
		t.Errorf("pending after the call: %q", got)
	}
}

// DigitalOcean's burst limit asks for up to a minute (Retry-After): by
// default fleet waits that out instead of failing.
func TestDefaultBudgetCoversBurstRetryAfter(t *testing.T) {
	c, err := New(Config{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"60"}}}
	wait, stated := c.retryWait(0, resp, time.Now())
	budget, _ := c.budget(context.Background(), time.Now())
	if !stated || wait != time.Minute || budget < wait {
		t.Fatalf("burst Retry-After 60: wait %v (stated %v), budget %v: want the minute waited out", wait, stated, budget)
	}
}
