package localcloud

import (
	"testing"
	"time"
)

// BenchmarkReservedIPSwitch fires a steady load through a reserved IP (two
// clients, keep-alive off and on, 2,000 requests each at 1 per ms) while
// the target switches A->B->A... every 200ms, and reports the failed
// requests (goal 0) and how long a switching Set takes.
func BenchmarkReservedIPSwitch(b *testing.B) {
	var failed, requests, switches int
	var switchSum, switchMax time.Duration
	iters := 0
	for b.Loop() {
		res := fwdRunLoad(b, fwdLoad{
			Reserved: "127.0.0.254", A: "127.0.0.246", B: "127.0.0.247",
			Requests: 2000, Interval: time.Millisecond,
			SwitchEvery: 200 * time.Millisecond, Drain: 100 * time.Millisecond,
			MaxTime: 10 * time.Second,
		})
		iters++
		failed += res.failed()
		requests += res.requests()
		for _, d := range res.Switches {
			switchSum += d
			switchMax = max(switchMax, d)
		}
		switches += len(res.Switches)
		for _, c := range res.Clients {
			if c.Failed > 0 {
				b.Logf("keep-alive=%v: first errors: %v", c.KeepAlive, c.Errors)
			}
		}
		b.Logf("%v", res)
	}
	switchMS := 0.0
	if switches > 0 {
		switchMS = float64(switchSum) / float64(switches) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(failed)/float64(iters), "failed-requests")
	b.ReportMetric(float64(requests)/float64(iters), "requests")
	b.ReportMetric(switchMS, "switch-ms")
	b.ReportMetric(float64(switchMax)/float64(time.Millisecond), "switch-max-ms")
	b.Logf("reserved IP switch: %d/%d requests failed over %d switches; Set on a switch mean %.3f ms, max %.3f ms",
		failed, requests, switches, switchMS, float64(switchMax)/float64(time.Millisecond))
}
