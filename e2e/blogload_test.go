//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// cutoverLoad writes comments and reads pages through the reserved IP
// without pause, until stop is closed and both minimums are met.
type cutoverLoad struct {
	Attempts, Acked, Frozen, OtherWrites atomic.Int64 // write attempts; 201s; 503s; anything else
	Reads, FailedReads                   atomic.Int64

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
				body := fmt.Sprintf("load comment w%d-%d", w, i)
				for !enough() { // retry this comment until it is acked
					l.Attempts.Add(1)
					code, _, err := s.comment(slug, fmt.Sprintf("loader %d", w), "loader@example.com", body)
					if err == nil && code == http.StatusCreated {
						l.Acked.Add(1)
						l.mu.Lock()
						l.acked = append(l.acked, body)
						l.mu.Unlock()
						break
					}
					if err == nil && code == http.StatusServiceUnavailable {
						l.Frozen.Add(1)
					} else {
						l.OtherWrites.Add(1)
						l.sample("write %s: %d %v", body, code, err)
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
					l.sample("read %s: %d %v", p, code, err)
				}
			}
		}(r)
	}
	wg.Wait()
}
