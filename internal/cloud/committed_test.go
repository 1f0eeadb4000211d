package cloud

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

// A change the API received before Ctrl-C is answered, so fleet knows it
// happened; a read is cancelled at once; a change not yet sent is never
// sent. Both godo clients (retrying and once) behave so.
func TestCommittedRequests(t *testing.T) {
	var received atomic.Int32
	inHandler := make(chan string, 4)
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received.Add(1)
		inHandler <- r.Method
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(`{"droplet":{"id":1}}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"reserved_ip":{"ip":"192.0.2.1"}}`))
	}))
	defer hs.Close()
	c, err := New(Config{Token: "t", APIURL: hs.URL, PollInterval: 10 * time.Millisecond, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		api  *godo.Client
	}{{"retrying", c.api}, {"once", c.once}} {
		t.Run(tc.name, func(t *testing.T) {
			// A POST in the API's hands when the context ends: its answer.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, _, err := tc.api.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
				done <- err
			}()
			<-inHandler
			cancel()
			time.Sleep(50 * time.Millisecond)
			release <- struct{}{}
			if err := <-done; err != nil {
				t.Errorf("POST cancelled in flight: %v, want the API's answer", err)
			}

			// A GET in flight is cancelled at once.
			ctx, cancel = context.WithCancel(context.Background())
			go func() {
				_, _, err := tc.api.Droplets.Get(ctx, 1)
				done <- err
			}()
			<-inHandler
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("GET cancelled in flight: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("a cancelled GET waited for its answer")
			}
			release <- struct{}{}

			// A POST whose context ended before it was sent is not sent.
			n := received.Load()
			if _, _, err := tc.api.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"}); !errors.Is(err, context.Canceled) {
				t.Errorf("POST after cancel: %v, want context.Canceled", err)
			}
			if got := received.Load(); got != n {
				t.Errorf("a POST was sent after its context ended")
			}
		})
	}
}

// LastMove is the newest completed assign's end, read from the API's
// action list (a creation with a droplet is one too).
func TestLastMove(t *testing.T) {
	e := newEnv(t, "", nil)
	ctx := context.Background()
	a := e.create(t, "web-a", "fleet-deploy:a")
	ip, err := e.c.CreateReservedIP(ctx, a.ID, quick, nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.c.LastMove(ctx, ip.IP)
	if err != nil {
		t.Fatal(err)
	}
	b := e.create(t, "web-b", "fleet-deploy:b")
	before := time.Now().Add(-time.Second) // the API's clock stamps to the second
	if err := e.c.Assign(ctx, ip.IP, b.ID, quick); err != nil {
		t.Fatal(err)
	}
	got, err := e.c.LastMove(ctx, ip.IP)
	if err != nil {
		t.Fatal(err)
	}
	if got.Before(before) || got.After(time.Now().Add(time.Second)) || got.Before(first) {
		t.Errorf("LastMove %v (before the assign: %v), want the assign's end, after %v", got, first, before)
	}
}

// A change still waiting for a connection when the context ends is
// dropped at once, unsent (a dead network must not hold Ctrl-C for the
// request timeout).
func TestCommittedDropsUnsent(t *testing.T) {
	dialing := make(chan struct{})
	tr := committed{base: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		close(dialing)
		<-ctx.Done() // a network that never answers
		return nil, ctx.Err()
	}}}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://192.0.2.1/v2/tags", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	<-dialing
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a POST still dialling outlived its context")
	}
}
