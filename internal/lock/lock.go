// Package lock is fleet's per-project lock. It lives in the DigitalOcean
// account, which every operator and CI runner shares, as an SSH key:
// POST /v2/account/keys with a public key already on the account answers
// 422, so creating the project's lock key is a compare-and-swap. The key
// is the same for everyone (PublicKey), its name records the holder, and
// the holder renews it; a lock whose holder died is taken over once it
// has not been renewed for a TTL, or at once when its holder was a
// process on this machine that is gone.
package lock

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/internal/cloud"
)

// Keys is what the lock needs of the account's SSH keys; *cloud.Client
// implements it.
type Keys interface {
	// CreateKey answers ErrExists (wrapped) when the public key is on the
	// account already.
	CreateKey(ctx context.Context, name, publicKey string) (*cloud.Key, error)
	// KeyByFingerprint, RenameKey and DeleteKey answer cloud.ErrNotFound
	// (wrapped) when the key is not there.
	KeyByFingerprint(ctx context.Context, fingerprint string) (*cloud.Key, error)
	RenameKey(ctx context.Context, id int, name string) (*cloud.Key, error)
	DeleteKey(ctx context.Context, id int) error
}

var _ Keys = (*cloud.Client)(nil)

// DefaultTTL is how long a lock lives without renewal. The holder renews
// every TTL/3 and gives up (cancelling its command) after TTL/2 without a
// successful renewal, before anyone may take the lock over.
const DefaultTTL = 60 * time.Second

// ReleaseTimeout bounds Release, which runs after Ctrl-C too.
const ReleaseTimeout = 5 * time.Second

// Options say whose lock to take, and for what.
type Options struct {
	Project string
	Who     string // see Who
	Cmd     string // the command, "up v1.2.0"
	Version string // fleet's version
	TTL     time.Duration
	// Wait is how long to wait for a held lock; 0 fails at once.
	Wait time.Duration
	// Notify, if set, is told when Acquire starts waiting or takes over
	// a stale lock.
	Notify func(msg string)

	// Tests stand in for other machines and processes.
	host, ns string
	pid      int
	alive    func(pid int) bool
}

// Lock is a held lock.
type Lock struct {
	keys    Keys
	opt     Options
	pub, fp string
	id      int // the key's ID: one incarnation of the lock key
	parent  context.Context

	ctx    context.Context // cancelled, with a *LostError cause, when lost
	cancel context.CancelCauseFunc
	done   chan struct{} // the renewer has stopped

	mu     sync.Mutex
	holder Holder
	offset time.Duration // the API server's clock minus ours
	lost   *LostError

	release    sync.Once
	releaseErr error
}

var errReleased = errors.New("lock released")

// Acquire takes the lock of opt.Project, waiting up to opt.Wait while
// another fleet holds it (a *HeldError when it still does). The lock is
// renewed until Release; ctx ends the wait and, through Context, the work.
func Acquire(ctx context.Context, keys Keys, opt Options) (*Lock, error) {
	if opt.TTL <= 0 {
		opt.TTL = DefaultTTL
	}
	if opt.host == "" {
		opt.host, opt.ns = hostname(), machineNS()
	}
	if opt.pid == 0 {
		opt.pid = os.Getpid()
	}
	if opt.alive == nil {
		opt.alive = alive
	}
	pub, fp, err := PublicKey(opt.Project)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	l := &Lock{keys: keys, opt: opt, pub: pub, fp: fp, parent: ctx, done: make(chan struct{}),
		holder: Holder{Who: opt.Who, Host: opt.host, NS: opt.ns, PID: opt.pid, Cmd: opt.Cmd, Version: opt.Version, Nonce: hex.EncodeToString(nonce)}}
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	go l.renewLoop()
	return l, nil
}

// Context is the parent context, cancelled with a *LostError cause
// (context.Cause) when the lock is lost: the command stops before doing more.
func (l *Lock) Context() context.Context { return l.ctx }

// Lost is why the lock was lost, or nil.
func (l *Lock) Lost() *LostError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// Holder is the lock's current record.
func (l *Lock) Holder() Holder {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

// now is the API server's clock, as last learned.
func (l *Lock) now() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Add(l.offset)
}

// learn takes the server's clock from an answer received at local time at.
func (l *Lock) learn(k *cloud.Key, at time.Time) {
	if k == nil || k.Date.IsZero() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// Date has whole seconds: it lies within a second before the answer.
	l.offset = k.Date.Add(500 * time.Millisecond).Sub(at).Round(time.Second)
}

func (l *Lock) record() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder.name(l.opt.Project)
}

func (l *Lock) acquire(ctx context.Context) error {
	start := time.Now()
	poll, maxPoll := clamp(l.opt.TTL/60, 100*time.Millisecond, time.Second), clamp(l.opt.TTL/6, 100*time.Millisecond, 10*time.Second)
	told := false
	for churn := 0; ; {
		now := l.now().Unix()
		l.mu.Lock()
		l.holder.Since, l.holder.Renewed = now, now
		l.mu.Unlock()
		k, err := l.keys.CreateKey(ctx, l.record(), l.pub)
		if err == nil {
			l.id = k.ID
			return l.settleClock(ctx, k)
		}
		if !errors.Is(err, cloud.ErrExists) {
			// The POST may have taken effect before it failed (or before
			// Ctrl-C): then it is ours, to keep or to give back.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ReleaseTimeout)
			k, gerr := l.keys.KeyByFingerprint(dctx, l.fp)
			if gerr == nil && l.ours(k) {
				l.id = k.ID
				if ctx.Err() == nil {
					cancel()
					return l.settleClock(ctx, k)
				}
				_ = l.keys.DeleteKey(dctx, k.ID)
			}
			cancel()
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("taking the lock of project %s: %w", l.opt.Project, err)
		}
		at := time.Now()
		k, err = l.keys.KeyByFingerprint(ctx, l.fp)
		if errors.Is(err, cloud.ErrNotFound) && churn < 10 {
			churn++ // released between our POST and GET: try again
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the lock of project %s: %w", l.opt.Project, err)
		}
		l.learn(k, at)
		if l.ours(k) { // a POST retried after it took effect
			l.id = k.ID
			return l.settleClock(ctx, k)
		}
		h, known := parseName(l.opt.Project, k.Name)
		if why := l.stale(h, known); why != "" && churn < 10 {
			churn++
			from := ""
			if known {
				from = " from " + h.Who
			}
			l.notify("taking over the lock of project %s%s: %s", l.opt.Project, from, why)
			// By ID: if someone else took it over meanwhile, theirs is a
			// new key and this is a 404. Only one POST can win after.
			if err := l.keys.DeleteKey(ctx, k.ID); err != nil && !errors.Is(err, cloud.ErrNotFound) {
				return fmt.Errorf("taking over the lock of project %s: %w", l.opt.Project, err)
			}
			continue
		}
		if !known {
			return fmt.Errorf("the lock of project %s keeps changing hands; try again", l.opt.Project)
		}
		held := &HeldError{Project: l.opt.Project, Holder: h, Now: l.now(), Waited: time.Since(start)}
		left := l.opt.Wait - time.Since(start)
		if l.opt.Wait <= 0 {
			held.Waited = 0
			return held
		}
		if left <= 0 {
			return held
		}
		if !told {
			told = true
			l.notify("waiting up to %s for the lock of project %s, held by %s", l.opt.Wait, l.opt.Project, h.describe(held.Now))
		}
		wait := min(left, time.Duration(float64(poll)*(0.8+0.4*mrand.Float64())))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		poll = min(poll*2, maxPoll)
	}
}

// settleClock rewrites a fresh record on the server's clock when ours
// disagrees with it: others judge staleness by the server's.
func (l *Lock) settleClock(ctx context.Context, k *cloud.Key) error {
	before := time.Unix(l.Holder().Renewed, 0)
	l.learn(k, time.Now())
	if d := l.now().Sub(before); d > -2*time.Second && d < 2*time.Second {
		return nil
	}
	now := l.now().Unix()
	l.mu.Lock()
	l.holder.Since, l.holder.Renewed = now, now
	l.mu.Unlock()
	if _, err := l.keys.RenameKey(ctx, l.id, l.record()); err != nil {
		l.releaseNow()
		return fmt.Errorf("taking the lock of project %s: %w", l.opt.Project, err)
	}
	return nil
}

func (l *Lock) ours(k *cloud.Key) bool {
	h, ok := parseName(l.opt.Project, k.Name)
	return ok && h.Nonce == l.Holder().Nonce
}

// stale says why the lock a key records may be taken over, or "".
func (l *Lock) stale(h Holder, known bool) string {
	if !known {
		return "its key's name is not a lock record"
	}
	if age := l.now().Sub(time.Unix(h.Renewed, 0)); age > l.opt.TTL {
		return fmt.Sprintf("its `fleet %s` (pid %d on %s) last renewed it %s ago (TTL %s)", h.Cmd, h.PID, h.Host, age.Round(time.Second), l.opt.TTL)
	}
	if h.Host == l.opt.host && h.NS == l.opt.ns && h.PID > 0 && h.PID != l.opt.pid && !l.opt.alive(h.PID) {
		return fmt.Sprintf("its `fleet %s`, pid %d on this machine, is gone", h.Cmd, h.PID)
	}
	return ""
}

func (l *Lock) notify(format string, args ...any) {
	if l.opt.Notify != nil {
		l.opt.Notify(fmt.Sprintf(format, args...))
	}
}

// renewLoop renews every TTL/3 until Release; when the lock is lost, or
// no renewal succeeded for TTL/2, it cancels the lock's context.
func (l *Lock) renewLoop() {
	defer close(l.done)
	every := l.opt.TTL / 3
	lastOK := time.Now()
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		giveUp := lastOK.Add(l.opt.TTL / 2)
		attempt := time.Now()
		actx, cancel := context.WithDeadline(l.ctx, giveUp)
		err := l.renew(actx)
		cancel()
		if l.ctx.Err() != nil {
			return
		}
		var lost *LostError
		switch {
		case errors.As(err, &lost):
			l.lose(lost)
			return
		case err == nil:
			lastOK = attempt
			t.Reset(every)
		case !time.Now().Before(giveUp):
			l.lose(&LostError{Project: l.opt.Project, Now: l.now(), Err: fmt.Errorf("could not renew it for %s: %w", time.Since(lastOK).Round(time.Second), err)})
			return
		default:
			t.Reset(min(every/4, time.Until(giveUp)))
		}
	}
}

func (l *Lock) renew(ctx context.Context) error {
	at := time.Now()
	k, err := l.keys.KeyByFingerprint(ctx, l.fp)
	if errors.Is(err, cloud.ErrNotFound) {
		return &LostError{Project: l.opt.Project, Now: l.now()}
	}
	if err != nil {
		return err
	}
	l.learn(k, at)
	if k.ID != l.id || !l.ours(k) {
		lost := &LostError{Project: l.opt.Project, Now: l.now()}
		if h, ok := parseName(l.opt.Project, k.Name); ok {
			lost.To = &h
		}
		return lost
	}
	l.mu.Lock()
	l.holder.Renewed = time.Now().Add(l.offset).Unix()
	l.mu.Unlock()
	_, err = l.keys.RenameKey(ctx, l.id, l.record())
	if errors.Is(err, cloud.ErrNotFound) {
		return &LostError{Project: l.opt.Project, Now: l.now()}
	}
	return err
}

func (l *Lock) lose(e *LostError) {
	l.mu.Lock()
	l.lost = e
	l.mu.Unlock()
	l.cancel(e)
}

// Release stops renewing and deletes the lock key if it is still ours. It
// runs on a context of its own (ReleaseTimeout), so it works after Ctrl-C.
// It is safe to call more than once.
func (l *Lock) Release() error {
	l.release.Do(func() {
		l.cancel(errReleased)
		<-l.done
		if l.Lost() != nil {
			return // not ours any more
		}
		l.releaseErr = l.releaseNow()
	})
	return l.releaseErr
}

func (l *Lock) releaseNow() error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(l.parent), ReleaseTimeout)
	defer cancel()
	k, err := l.keys.KeyByFingerprint(ctx, l.fp)
	if errors.Is(err, cloud.ErrNotFound) {
		return nil
	}
	if err == nil && (k.ID != l.id || !l.ours(k)) {
		return nil
	}
	if err == nil {
		err = l.keys.DeleteKey(ctx, l.id)
	}
	if err != nil && !errors.Is(err, cloud.ErrNotFound) {
		return fmt.Errorf("could not release the lock of project %s (%v): others can take it over %s after its last renewal", l.opt.Project, err, l.opt.TTL)
	}
	return nil
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}
