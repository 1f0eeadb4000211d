//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cutoverLoad writes comments and reads pages through the reserved IP
// without pause, until stop is closed and both minimums are met. Failures
// are counted by kind: a 503 (the site refused: read-only), a reset (the
// connection closed or reset under the request), a timeout, or anything
// else.
type cutoverLoad struct {
	Attempts, Acked, Frozen, OtherWrites atomic.Int64 // write attempts; 201s; 503s; any other answer or error
	WriteResets, WriteTimeouts           atomic.Int64 // of OtherWrites
	Reads, FailedReads                   atomic.Int64
	ReadResets, ReadTimeouts             atomic.Int64 // of FailedReads
	LongestWrite                         atomic.Int64 // ns: the longest an acknowledged write took (held ones wait)

	mu      sync.Mutex
	acked   []string // bodies of the comments answered 201
	samples []string // first failures, for the log
}

func (l *cutoverLoad) sample(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 10 {
		l.samples = append(l.samples, fmt.Sprintf(format, args...))
	}
}

// errKind sorts a request's error: "timeout", "reset" or "other".
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "server closed"), strings.Contains(err.Error(), "connection reset"):
		return "reset"
	}
	return "other"
}

// Failed is every request that did not succeed, writes and reads.
func (l *cutoverLoad) Failed() int64 {
	return l.Frozen.Load() + l.OtherWrites.Load() + l.FailedReads.Load()
}

// Summary is the counts for a log line.
func (l *cutoverLoad) Summary() string {
	return fmt.Sprintf("%d write attempts, %d acked, %d answered 503, %d other (%d resets, %d timeouts); %d reads, %d failed (%d resets, %d timeouts); longest acked write %.2fs",
		l.Attempts.Load(), l.Acked.Load(), l.Frozen.Load(), l.OtherWrites.Load(), l.WriteResets.Load(), l.WriteTimeouts.Load(),
		l.Reads.Load(), l.FailedReads.Load(), l.ReadResets.Load(), l.ReadTimeouts.Load(), time.Duration(l.LongestWrite.Load()).Seconds())
}

// run starts writers and readers (half of each with keep-alive, so both
// kinds of connection cross the switch) and returns when done.
func (l *cutoverLoad) run(newSite func(keepAlive bool) *site, slug string, stop <-chan struct{}, minWrites, minReads int64) {
	var wg sync.WaitGroup
	enough := func() bool {
		select {
		case <-stop:
			return l.Attempts.Load() >= minWrites && l.Reads.Load() >= minReads
		default:
			return false
		}
	}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := newSite(w%2 == 0)
			for i := 0; !enough(); i++ {
				body := fmt.Sprintf("load comment %s w%d-%d", slug, w, i)
				for !enough() { // retry this comment until it is acked
					l.Attempts.Add(1)
					start := time.Now()
					code, _, err := s.comment(slug, fmt.Sprintf("loader %d", w), "loader@example.com", body)
					took := time.Since(start)
					if err == nil && code == http.StatusCreated {
						l.Acked.Add(1)
						for {
							old := l.LongestWrite.Load()
							if int64(took) <= old || l.LongestWrite.CompareAndSwap(old, int64(took)) {
								break
							}
						}
						l.mu.Lock()
						l.acked = append(l.acked, body)
						l.mu.Unlock()
						break
					}
					if err == nil && code == http.StatusServiceUnavailable {
						l.Frozen.Add(1)
					} else {
						l.OtherWrites.Add(1)
						if err != nil {
							switch errKind(err) {
							case "reset":
								l.WriteResets.Add(1)
							case "timeout":
								l.WriteTimeouts.Add(1)
							}
						}
						l.sample("write %s: %d %v (after %.2fs)", body, code, err, took.Seconds())
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(w)
	}
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			s := newSite(r%2 == 0)
			paths := []string{"/", "/posts/" + slug + "/"}
			for i := 0; !enough(); i++ {
				p := paths[i%len(paths)]
				code, _, err := s.get(p)
				l.Reads.Add(1)
				if err != nil || code < 200 || code > 299 {
					l.FailedReads.Add(1)
					if err != nil {
						switch errKind(err) {
						case "reset":
							l.ReadResets.Add(1)
						case "timeout":
							l.ReadTimeouts.Add(1)
						}
					}
					l.sample("read %s: %d %v", p, code, err)
				}
			}
		}(r)
	}
	wg.Wait()
}
