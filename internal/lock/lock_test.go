package lock

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/fleetdeploy/fleet/internal/cloud"
	"github.com/fleetdeploy/fleet/internal/localcloud"
	"github.com/fleetdeploy/fleet/internal/localcloud/contract"
	"golang.org/x/crypto/ssh"
)

// newKeys is a cloud client against an in-process API server whose
// traffic is checked against DigitalOcean's OpenAPI description.
func newKeys(t testing.TB) *cloud.Client {
	t.Helper()
	v, err := contract.LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localcloud.NewServer(localcloud.Options{Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(v.Middleware(srv.Handler()))
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		if vs := v.Violations(); len(vs) > 0 {
			t.Errorf("OpenAPI contract violations:\n%s", strings.Join(vs, "\n"))
		}
	})
	c, err := cloud.New(cloud.Config{Token: "t", APIURL: hs.URL, RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func opts(project string) Options {
	return Options{Project: project, Who: "alice <alice@example.com>", Cmd: "up v1.2.0", Version: "v0.9.0", TTL: 3 * time.Second,
		host: "laptop", ns: "ns1", pid: 100, alive: func(int) bool { return true }}
}

// plant puts a lock key on the account for h, as another fleet would.
func plant(t *testing.T, keys Keys, project string, h Holder) *cloud.Key {
	t.Helper()
	line, _, err := PublicKey(project)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.CreateKey(context.Background(), h.name(project), line)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func lockKey(t *testing.T, keys Keys, project string) (*cloud.Key, bool) {
	t.Helper()
	_, fp, _ := PublicKey(project)
	k, err := keys.KeyByFingerprint(context.Background(), fp)
	if errors.Is(err, cloud.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return k, true
}

func TestPublicKey(t *testing.T) {
	seen := map[string]string{}
	for _, p := range []string{"hello", "blog", "a", "x-1234567890123456789"} {
		line, fp, err := PublicKey(p)
		if err != nil {
			t.Fatal(err)
		}
		again, fp2, _ := PublicKey(p)
		if again != line || fp2 != fp {
			t.Errorf("%s: not deterministic", p)
		}
		if other, ok := seen[fp]; ok {
			t.Errorf("%s and %s share a lock key", p, other)
		}
		seen[fp] = p
		pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if pub.Type() != ssh.KeyAlgoED25519 || comment != "fleet-lock:"+p || ssh.FingerprintLegacyMD5(pub) != fp {
			t.Errorf("%s: got %s %q %s", p, pub.Type(), comment, fp)
		}
		raw := []byte(pub.(ssh.CryptoPublicKey).CryptoPublicKey().(ed25519.PublicKey))
		pt, err := new(edwards25519.Point).SetBytes(raw)
		if err != nil {
			t.Fatalf("%s: not a curve point: %v", p, err)
		}
		if new(edwards25519.Point).MultByCofactor(pt).Equal(edwards25519.NewIdentityPoint()) == 1 {
			t.Errorf("%s: small-order point", p)
		}
	}
}

func TestName(t *testing.T) {
	long := strings.Repeat("x", 300)
	run := "octocat (https://github.com/some-org/some-repository-with-a-long-name/actions/runs/98765432101)"
	tests := []struct {
		name string
		h    Holder
		keep []string // substrings the name must keep
	}{
		{"short", Holder{Who: "alice <a@example.com>", Host: "laptop", PID: 42, Cmd: "up v1.2.0", Version: "v0.9.0"}, []string{`"who":"alice <a@example.com>"`, `"cmd":"up v1.2.0"`}},
		{"CI run URL", Holder{Who: run, Host: "fv-az123-456", PID: 4194304, Cmd: "promote", Version: "v0.9.0-12-gabcdef0-dirty"}, []string{"octocat", "98765432101)"}},
		{"everything long", Holder{Who: long, Host: long, PID: 4194304, Cmd: long, Version: long}, nil},
		{"multibyte", Holder{Who: strings.Repeat("é", 200), Host: strings.Repeat("ü", 100), Cmd: "up v1", Version: "v1"}, nil},
		{"control characters", Holder{Who: "eve\x1b[31m\n", Host: "h\x00", Cmd: "up", Version: "v1"}, []string{`"who":"eve[31m"`, `"host":"h"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.h.NS, tt.h.Since, tt.h.Renewed, tt.h.Nonce = "0123abcd", 1750000000, 1750000001, "a1b2c3d4e5f6"
			n := tt.h.name("twenty-characters-xx")
			if len(n) > MaxName {
				t.Errorf("name is %d bytes, want ≤ %d: %s", len(n), MaxName, n)
			}
			for _, s := range tt.keep {
				if !strings.Contains(n, s) {
					t.Errorf("name lost %q: %s", s, n)
				}
			}
			h, ok := parseName("twenty-characters-xx", n)
			if !ok || h.Nonce != tt.h.Nonce || h.Renewed != tt.h.Renewed || h.PID != tt.h.PID {
				t.Errorf("round trip: %+v, %v", h, ok)
			}
		})
	}
}

func TestParseNameHostile(t *testing.T) {
	good := Holder{Who: "a", Host: "h", PID: 1, Cmd: "up", Version: "v", Since: 1, Renewed: 1, Nonce: "n"}.name("hello")
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"record", good, true},
		{"another project", strings.Replace(good, "fleet-lock:hello ", "fleet-lock:hell ", 1), false},
		{"renamed by hand", "my laptop key", false},
		{"not JSON", "fleet-lock:hello {", false},
		{"no nonce", `fleet-lock:hello {"renewed":5}`, false},
		{"huge", "fleet-lock:hello " + `{"nonce":"n","renewed":1,"who":"` + strings.Repeat("a", 1<<20) + `"}`, false},
		{"escape codes", `fleet-lock:hello {"nonce":"n","renewed":1,"who":"\u001b]0;pwned\u0007x"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := parseName("hello", tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if strings.ContainsFunc(h.Who+h.Host+h.Cmd, func(r rune) bool { return r < 0x20 }) {
				t.Errorf("control characters survived: %q", h.Who)
			}
		})
	}
}

func TestAcquireRelease(t *testing.T) {
	keys := newKeys(t)
	ctx := context.Background()
	l, err := Acquire(ctx, keys, opts("hello"))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := lockKey(t, keys, "hello")
	if !ok || !strings.HasPrefix(k.Name, "fleet-lock:hello {") || !strings.Contains(k.Name, l.Holder().Nonce) {
		t.Fatalf("lock key: %+v", k)
	}
	// Another project has a lock of its own.
	other, err := Acquire(ctx, keys, opts("blog"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()

	o := opts("hello")
	o.host, o.pid, o.Who, o.Cmd = "ci-7", 4242, "bob", "promote"
	_, err = Acquire(ctx, keys, o)
	var held *HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second acquire: %v", err)
	}
	for _, s := range []string{"project hello is locked by alice <alice@example.com>", "pid 100 on laptop", "`fleet up v1.2.0`", "(fleet v0.9.0)", " since 20", "ago"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err, s)
		}
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil { // idempotent
		t.Fatal(err)
	}
	if _, ok := lockKey(t, keys, "hello"); ok {
		t.Fatal("release left the key")
	}
	l2, err := Acquire(ctx, keys, o)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l2.Release()
}

// TestRace: N fleets acquire at once; exactly one wins, every other one
// is told who holds it.
func TestRace(t *testing.T) {
	keys := newKeys(t)
	const n = 20
	for round := 0; round < 5; round++ {
		var wins atomic.Int32
		var wg sync.WaitGroup
		locks := make(chan *Lock, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := opts("hello")
				o.pid = 1000 + i
				<-start
				l, err := Acquire(context.Background(), keys, o)
				var held *HeldError
				switch {
				case err == nil:
					wins.Add(1)
					locks <- l
				case errors.As(err, &held):
					if held.Holder.PID < 1000 || held.Holder.PID == o.pid {
						t.Errorf("held by %+v", held.Holder)
					}
				default:
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(locks)
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d winners, want 1", round, wins.Load())
		}
		for l := range locks {
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestStaleTakeover(t *testing.T) {
	now := time.Now().Unix()
	tests := []struct {
		name     string
		h        Holder
		raw      string // a key name that is not a record, instead of h
		takeOver bool
		why      string
	}{
		{"not renewed for a TTL", Holder{Host: "ci-7", NS: "x", PID: 7, Renewed: now - 3600}, "", true, "from bob: its `fleet promote` (pid 7 on ci-7) last renewed it 1h0m"},
		{"its process here is gone", Holder{Host: "laptop", NS: "ns1", PID: 666, Renewed: now}, "", true, "from bob: its `fleet promote`, pid 666 on this machine, is gone"},
		{"its process here lives", Holder{Host: "laptop", NS: "ns1", PID: 667, Renewed: now}, "", false, ""},
		{"same hostname, other PID namespace", Holder{Host: "laptop", NS: "ns2", PID: 666, Renewed: now}, "", false, ""},
		{"another machine's PID", Holder{Host: "ci-7", NS: "x", PID: 666, Renewed: now}, "", false, ""},
		{"renamed by hand", Holder{}, "someone renamed it", true, "hello: its key's name is not a lock record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := newKeys(t)
			tt.h.Who, tt.h.Cmd, tt.h.Version, tt.h.Since, tt.h.Nonce = "bob", "promote", "v0.8.0", tt.h.Renewed, "0000bobs0000"
			old := plant(t, keys, "hello", tt.h)
			if tt.raw != "" {
				if _, err := keys.RenameKey(context.Background(), old.ID, tt.raw); err != nil {
					t.Fatal(err)
				}
			}
			o := opts("hello")
			o.alive = func(pid int) bool { return pid != 666 }
			var told []string
			o.Notify = func(m string) { told = append(told, m) }
			l, err := Acquire(context.Background(), keys, o)
			if !tt.takeOver {
				var held *HeldError
				if !errors.As(err, &held) || held.Holder.Nonce != tt.h.Nonce {
					t.Fatalf("want held by bob, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			if len(told) != 1 || !strings.Contains(told[0], tt.why) {
				t.Errorf("told %q, want %q", told, tt.why)
			}
			if k, _ := lockKey(t, keys, "hello"); k.ID == old.ID {
				t.Error("the stale key is still there")
			}
		})
	}
}

// flaky wraps Keys to answer as a real API sometimes does.
type flaky struct {
	Keys
	createAfter func(ctx context.Context, k *cloud.Key) error // after a create took effect
	get         atomic.Pointer[error]                         // KeyByFingerprint fails with it
}

func (f *flaky) CreateKey(ctx context.Context, name, pub string) (*cloud.Key, error) {
	k, err := f.Keys.CreateKey(ctx, name, pub)
	if err == nil && f.createAfter != nil {
		return nil, f.createAfter(ctx, k)
	}
	return k, err
}

func (f *flaky) KeyByFingerprint(ctx context.Context, fp string) (*cloud.Key, error) {
	if e := f.get.Load(); e != nil {
		return nil, *e
	}
	return f.Keys.KeyByFingerprint(ctx, fp)
}

// TestNonce: a create that took effect but answered an error (or was
// retried into a 422) is recognised as ours by its nonce; a key whose
// nonce is someone else's is never released by us.
func TestNonce(t *testing.T) {
	for _, answer := range []error{errors.New("connection reset"), fmt.Errorf("%w: retried", cloud.ErrExists)} {
		t.Run(answer.Error(), func(t *testing.T) {
			keys := newKeys(t)
			l, err := Acquire(context.Background(), &flaky{Keys: keys, createAfter: func(context.Context, *cloud.Key) error { return answer }}, opts("hello"))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			if _, ok := lockKey(t, keys, "hello"); ok {
				t.Fatal("release left the key")
			}
		})
	}
	t.Run("release spares another holder", func(t *testing.T) {
		keys := newKeys(t)
		l, err := Acquire(context.Background(), keys, opts("hello"))
		if err != nil {
			t.Fatal(err)
		}
		k, _ := lockKey(t, keys, "hello")
		bob := Holder{Who: "bob", Host: "ci", PID: 1, Cmd: "rollback", Since: 1, Renewed: time.Now().Unix(), Nonce: "bbbbbbbbbbbb"}
		if _, err := keys.RenameKey(context.Background(), k.ID, bob.name("hello")); err != nil {
			t.Fatal(err)
		}
		l.Release()
		k, ok := lockKey(t, keys, "hello")
		if !ok || !strings.Contains(k.Name, "bbbbbbbbbbbb") {
			t.Fatalf("bob's lock was released: %+v", k)
		}
	})
}

// TestLost: a lock taken over, deleted or no longer renewable cancels the
// command's context, with the reason as its cause.
func TestLost(t *testing.T) {
	tests := []struct {
		name string
		do   func(t *testing.T, keys Keys, f *flaky, id int)
		want string
	}{
		{"taken over", func(t *testing.T, keys Keys, _ *flaky, id int) {
			bob := Holder{Who: "bob", Host: "ci", PID: 1, Cmd: "rollback", Version: "v1", Since: 1, Renewed: time.Now().Unix(), Nonce: "bbbbbbbbbbbb"}
			if err := keys.DeleteKey(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			plant(t, keys, "hello", bob)
		}, "lost the lock of project hello to bob (pid 1 on ci) running `fleet rollback`"},
		{"deleted", func(t *testing.T, keys Keys, _ *flaky, id int) {
			if err := keys.DeleteKey(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}, "its key was deleted"},
		{"cannot renew", func(t *testing.T, _ Keys, f *flaky, _ int) {
			e := error(errors.New("API down"))
			f.get.Store(&e)
		}, "could not renew it for"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := newKeys(t)
			f := &flaky{Keys: keys}
			o := opts("hello")
			o.TTL = 600 * time.Millisecond
			l, err := Acquire(context.Background(), f, o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			tt.do(t, keys, f, l.id)
			select {
			case <-l.Context().Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the context outlived the lock")
			}
			var lost *LostError
			if cause := context.Cause(l.Context()); !errors.As(cause, &lost) || !strings.Contains(cause.Error(), tt.want) {
				t.Fatalf("cause %v, want %q", cause, tt.want)
			}
			if l.Lost() == nil {
				t.Error("Lost() is nil")
			}
		})
	}
	t.Run("renewed while held", func(t *testing.T) {
		keys := newKeys(t)
		o := opts("hello")
		// Each renewal must land within the TTL: 600 ms lost the lock on a
		// busy machine (a fresh container's make test, both cores taken).
		o.TTL = 3 * time.Second
		l, err := Acquire(context.Background(), keys, o)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		k1, _ := lockKey(t, keys, "hello")
		time.Sleep(4 * time.Second) // past its TTL: only renewals keep it
		if l.Context().Err() != nil {
			t.Fatalf("lost: %v", context.Cause(l.Context()))
		}
		k2, _ := lockKey(t, keys, "hello")
		if k2.ID != k1.ID || k2.Name == k1.Name {
			t.Errorf("not renewed: %q then %q", k1.Name, k2.Name)
		}
		o2 := opts("hello")
		o2.host = "elsewhere"
		if _, err := Acquire(context.Background(), keys, o2); !errors.As(err, new(*HeldError)) {
			t.Errorf("a renewed lock was taken: %v", err)
		}
	})
}

func TestWait(t *testing.T) {
	keys := newKeys(t)
	holder, err := Acquire(context.Background(), keys, opts("hello"))
	if err != nil {
		t.Fatal(err)
	}
	o := opts("hello")
	o.host, o.Wait = "ci-7", 200*time.Millisecond
	start := time.Now()
	_, err = Acquire(context.Background(), keys, o)
	var held *HeldError
	if !errors.As(err, &held) || held.Waited < 200*time.Millisecond || time.Since(start) > 2*time.Second || !strings.Contains(err.Error(), "still held after waiting") {
		t.Fatalf("wait ran out: %v after %s", err, time.Since(start))
	}

	ctx, cancel := context.WithCancel(context.Background())
	o.Wait = time.Minute
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if _, err := Acquire(ctx, keys, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}

	var told atomic.Int32
	o.Notify = func(m string) {
		if strings.Contains(m, "waiting up to 1m0s for the lock of project hello, held by alice") {
			told.Add(1)
		}
	}
	go func() { time.Sleep(300 * time.Millisecond); holder.Release() }()
	l, err := Acquire(context.Background(), keys, o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if told.Load() != 1 {
		t.Errorf("told %d times that it waits", told.Load())
	}
}

// TestReleaseAfterCancel: Ctrl-C cancels the command's context; the lock
// is still released.
func TestReleaseAfterCancel(t *testing.T) {
	keys := newKeys(t)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Acquire(ctx, keys, opts("hello"))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, ok := lockKey(t, keys, "hello"); ok {
		t.Fatal("the lock outlived Ctrl-C")
	}
}

func TestWho(t *testing.T) {
	defer func(g func(string) string) { gitConfig = g }(gitConfig)
	tests := []struct {
		name string
		env  map[string]string
		git  map[string]string
		want string
	}{
		{"GitHub Actions", map[string]string{"GITHUB_ACTOR": "octocat", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "42"},
			map[string]string{"user.name": "x"}, "octocat (https://github.com/o/r/actions/runs/42)"},
		{"GitLab CI", map[string]string{"GITLAB_USER_LOGIN": "gl", "CI_JOB_URL": "https://gitlab.com/o/r/-/jobs/7"}, nil, "gl (https://gitlab.com/o/r/-/jobs/7)"},
		{"git", map[string]string{"USER": "root"}, map[string]string{"user.name": "Alice", "user.email": "a@example.com"}, "Alice <a@example.com>"},
		{"user", map[string]string{"USER": "root"}, nil, "root@" + hostname()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gitConfig = func(k string) string { return tt.git[k] }
			if got := Who(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("Who = %q, want %q", got, tt.want)
			}
		})
	}
}

// BenchmarkLock is the lock's cost to a command: acquire and release
// against the in-process API.
func BenchmarkLock(b *testing.B) {
	keys := newKeys(b)
	start := time.Now()
	for i := 0; i < b.N; i++ {
		l, err := Acquire(context.Background(), keys, opts("hello"))
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "lock-ms/cmd")
}
