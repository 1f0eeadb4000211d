package localcloud

import (
	"net/http"
	"strconv"
	"time"
)

// DigitalOcean's limits, per token (its OpenAPI file, "Rate Limit"):
// 5,000 requests an hour and 250 a minute. Each request counts for a
// whole window after it was made (its own timer), so the budget comes back
// one request at a time; ratelimit-reset is when the oldest counted
// request expires. Only a burst 429 carries Retry-After.
const (
	defaultRateLimit   = 5000
	defaultBurstLimit  = 250
	defaultBurstWindow = time.Minute
	// rateSlots is how many slots a window is counted in: memory per
	// token stays bounded whatever the limit. A request is held until its
	// slot's end plus the window: at most a slot (1 s of an hour) longer
	// than DigitalOcean, never shorter.
	rateSlots = 3600
)

// slidingCount counts requests in a window that slides slot by slot.
type slidingCount struct {
	window, slot time.Duration
	base         time.Time  // slot 0 starts here
	slots        []rateSlot // non-empty slots, oldest first
	total        int
}

type rateSlot struct {
	idx int64
	n   int
}

func newSlidingCount(window time.Duration, base time.Time) *slidingCount {
	return &slidingCount{window: window, slot: max(window/rateSlots, time.Microsecond), base: base}
}

// expiry is when the requests of slot idx stop counting.
func (c *slidingCount) expiry(idx int64) time.Time {
	return c.base.Add(time.Duration(idx+1)*c.slot + c.window)
}

// prune drops the slots expired at now.
func (c *slidingCount) prune(now time.Time) {
	i := 0
	for i < len(c.slots) && !c.expiry(c.slots[i].idx).After(now) {
		c.total -= c.slots[i].n
		i++
	}
	c.slots = c.slots[i:]
}

func (c *slidingCount) add(now time.Time) {
	idx := int64(now.Sub(c.base) / c.slot)
	if n := len(c.slots); n > 0 && c.slots[n-1].idx == idx {
		c.slots[n-1].n++
	} else {
		c.slots = append(c.slots, rateSlot{idx: idx, n: 1})
	}
	c.total++
}

// oldestExpiry is when the oldest counted request expires; now if none.
func (c *slidingCount) oldestExpiry(now time.Time) time.Time {
	if len(c.slots) == 0 {
		return now
	}
	return c.expiry(c.slots[0].idx)
}

// rateState is one token's hourly and burst counts.
type rateState struct{ hourly, burst *slidingCount }

// ceilSecond rounds t up to a whole second: a client that waits until a
// reset (whole seconds) never retries early.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

// setRateHeaders sets the ratelimit-* headers for token, counting the
// request if count is set. Over a limit it counts nothing and returns
// ok=false, and for the burst limit the Retry-After seconds (0 for the
// hourly limit: DigitalOcean sends none then).
func (s *Server) setRateHeaders(w http.ResponseWriter, token string, count bool) (retryAfter int, ok bool) {
	now := time.Now()
	s.mu.Lock()
	st := s.rate[token]
	if st == nil {
		st = &rateState{hourly: newSlidingCount(s.opts.RateWindow, now), burst: newSlidingCount(s.opts.BurstWindow, now)}
		if count {
			s.rate[token] = st
		}
	}
	st.hourly.prune(now)
	st.burst.prune(now)
	hourlyOK := st.hourly.total < s.opts.RateLimit
	burstOK := st.burst.total < s.opts.BurstLimit
	ok = hourlyOK && burstOK
	if ok && count {
		st.hourly.add(now)
		st.burst.add(now)
	}
	remaining := s.opts.RateLimit - st.hourly.total
	reset := ceilSecond(st.hourly.oldestExpiry(now))
	if hourlyOK && !burstOK {
		remaining = 0 // as DigitalOcean's sample of a burst 429
		wait := st.burst.oldestExpiry(now).Sub(now)
		retryAfter = max(1, int((wait+time.Second-1)/time.Second))
	}
	s.mu.Unlock()

	h := w.Header()
	h.Set("ratelimit-limit", strconv.Itoa(s.opts.RateLimit))
	h.Set("ratelimit-remaining", strconv.Itoa(remaining))
	h.Set("ratelimit-reset", strconv.FormatInt(reset.Unix(), 10))
	return retryAfter, ok
}
