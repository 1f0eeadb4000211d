package lock

import (
	"fmt"
	"time"
)

// HeldError is a lock another fleet holds (and, with Options.Wait, still
// held when the wait ran out).
type HeldError struct {
	Project string
	Holder  Holder
	Now     time.Time     // when it was read, on the API server's clock
	Waited  time.Duration // 0: did not wait
}

func (e *HeldError) Error() string {
	s := fmt.Sprintf("project %s is locked by %s", e.Project, e.Holder.describe(e.Now))
	if e.Waited > 0 {
		s += fmt.Sprintf("; still held after waiting %s", e.Waited.Round(time.Second))
	}
	return s
}

// LostError is a lock lost while its command ran: another fleet took it
// over, someone deleted its key, or it could not be renewed for TTL/2.
// The command's context is cancelled with it as the cause.
type LostError struct {
	Project string
	To      *Holder // the new holder, when known
	Now     time.Time
	Err     error // why renewing failed, when it did
}

func (e *LostError) Error() string {
	switch {
	case e.To != nil:
		return fmt.Sprintf("lost the lock of project %s to %s", e.Project, e.To.describe(e.Now))
	case e.Err != nil:
		return fmt.Sprintf("lost the lock of project %s: %v", e.Project, e.Err)
	}
	return fmt.Sprintf("lost the lock of project %s: its key was deleted from the account", e.Project)
}

func (e *LostError) Unwrap() error { return e.Err }

// describe says who holds a lock, running what, since when: "alice (pid
// 42 on ci-7) running `fleet up v1.2.0` (fleet v0.4.0) since
// 2025-06-01 10:00:00 UTC (3m ago, renewed 4s ago)".
func (h Holder) describe(now time.Time) string {
	since, renewed := time.Unix(h.Since, 0).UTC(), time.Unix(h.Renewed, 0).UTC()
	if now.IsZero() {
		now = time.Now()
	}
	ago := func(t time.Time) string {
		d := now.Sub(t).Round(time.Second)
		if d < 0 {
			d = 0
		}
		return d.String() + " ago"
	}
	return fmt.Sprintf("%s (pid %d on %s) running `fleet %s` (fleet %s) since %s (%s, renewed %s)",
		h.Who, h.PID, h.Host, h.Cmd, h.Version, since.Format("2006-01-02 15:04:05 MST"), ago(since), ago(renewed))
}
