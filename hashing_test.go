// hashing_test.go tests hashing.go: the bcrypt pool, its bounded wait,
// and the CPUs it is given.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// setHashTime makes p judge its queue as if recent hashes had taken d.
func (p *passwordHasher) setHashTime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashTime = d
}

func TestHashingServesABurstLargerThanTheCPUs(t *testing.T) {
	t.Run("four times as many hashes as workers all run, at most one per worker at a time", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		defer p.close()
		var mu sync.Mutex
		running, most, ran := 0, 0, 0
		var wg sync.WaitGroup
		for range 4 * p.workers {
			wg.Go(func() {
				err := p.do(t.Context(), func() {
					mu.Lock()
					running++
					most = max(most, running)
					mu.Unlock()
					if _, err := bcrypt.GenerateFromPassword([]byte("password123"), testBcryptCost); err != nil {
						t.Error(err)
					}
					time.Sleep(2 * time.Millisecond) // long enough for the burst to pile up
					mu.Lock()
					running--
					ran++
					mu.Unlock()
				})
				if err != nil {
					t.Errorf("p.do in a burst of %d = %v, want it served", 4*p.workers, err)
				}
			})
		}
		wg.Wait()
		if ran != 4*p.workers {
			t.Errorf("%d hashes ran, want %d", ran, 4*p.workers)
		}
		if most > p.workers {
			t.Errorf("%d hashes ran at once, want at most %d, one per worker", most, p.workers)
		}
	})

	e := newTestEnv(t)
	signupBurst := func(n int, email func(i int) string) map[int]int {
		return burstStatuses(n, func(i int) *http.Response {
			return e.postJSON("/api/v1/auth/signup", fmt.Sprintf(`{"email":%q,"password":"password123"}`, email(i)))
		})
	}
	t.Run("40 concurrent signups of distinct emails are all created", func(t *testing.T) {
		got := signupBurst(40, func(i int) string { return fmt.Sprintf("cook%d@example.com", i) })
		if got[http.StatusCreated] != 40 {
			t.Errorf("40 concurrent signups answered %v, want 40 × 201", got)
		}
	})
	t.Run("20 concurrent signups of one email give one 201 and nineteen 400", func(t *testing.T) {
		got := signupBurst(20, func(int) string { return "same@example.com" })
		if got[http.StatusCreated] != 1 || got[http.StatusBadRequest] != 19 {
			t.Errorf("20 concurrent signups of one email answered %v, want 1 × 201 and 19 × 400", got)
		}
	})
}

func TestHashingRefusesOnlyPastTheWaitBound(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	good := url.Values{"username": {"cook@example.com"}, "password": {"password123"}}

	// One hash is taken to last 16 s, past the 15 s of waiting admitted:
	// with every worker busy, a new request would wait 16 s.
	e.passwords.setHashTime(16 * time.Second)
	release := holdWorkers(t, e.passwords)
	t.Run("past the bound, login and signup get 503 with the expected wait as Retry-After", func(t *testing.T) {
		// Within a second: the answer must come at once, not after a wait.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		for _, r := range []*http.Request{
			newRequest("POST", "/api/v1/auth/login", strings.NewReader(good.Encode()), "Content-Type", "application/x-www-form-urlencoded"),
			newRequest("POST", "/api/v1/auth/signup", strings.NewReader(`{"email":"new@example.com","password":"password123"}`), "Content-Type", "application/json"),
		} {
			resp := e.serve(r.WithContext(ctx))
			if ra := resp.Header.Get("Retry-After"); ra != "16" {
				t.Errorf("%s: Retry-After = %q, want 16", resp.Request.URL.Path, ra)
			}
			expectDetail(t, resp, http.StatusServiceUnavailable, "Server busy, try again shortly")
		}
		if n := e.passwords.queued(); n != 0 {
			t.Errorf("%d refused jobs are queued, want 0", n)
		}
	})
	t.Run("reads do not wait for hashing", func(t *testing.T) {
		expectStatus(t, e.get("/api/v1/recipes/1"), http.StatusOK)
	})
	t.Run("within the bound, a login waits its turn and is served", func(t *testing.T) {
		e.passwords.setHashTime(3 * time.Second)
		answer := make(chan *http.Response, 1)
		go func() { answer <- e.postForm("/api/v1/auth/login", good) }()
		waitFor(t, "the login to queue", func() bool { return e.passwords.queued() == 1 })
		release()
		expectStatus(t, <-answer, http.StatusOK)
	})
	t.Run("the wait grows by one hash for each round of jobs ahead", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		defer p.close()
		p.setHashTime(6 * time.Second)
		release := holdWorkers(t, p) // just started: each ends in about one hash
		defer release()
		for range 2 * p.workers { // two more rounds ahead, admitted within 12 s
			go p.do(context.Background(), func() {})
		}
		waitFor(t, "the jobs to queue", func() bool { return p.queued() == 2*p.workers })
		ctx, cancel := context.WithTimeout(t.Context(), time.Second) // a refusal is at once
		defer cancel()
		err := p.do(ctx, func() { t.Error("a refused job ran") })
		var busy *apiError
		if !errors.As(err, &busy) || busy.status != http.StatusServiceUnavailable ||
			busy.retryAfter <= 17*time.Second || busy.retryAfter > 18*time.Second {
			t.Errorf("p.do behind three rounds of 6 s hashes = %v (%+v), want 503 with Retry-After just under 18s", err, busy)
		}
	})
}

func TestTheWaitBoundAdmitsABurstOf40SignupsAtCost12OnTwoCPUs(t *testing.T) {
	// The arithmetic alone, on a pool that runs nothing: 40 jobs arrive
	// at once, before any ends, with one hash taking 0.56 s, twice what it
	// takes on an idle machine.
	p := &passwordHasher{workers: 2, hashTime: 560 * time.Millisecond}
	for k := range 40 {
		if wait := p.expectedWait(time.Now()); wait > maxHashingWait {
			t.Fatalf("job %d of a burst of 40 would wait %s, past the bound %s", k+1, wait, maxHashingWait)
		}
		p.queue.PushBack(&hashJob{})
	}
}

// stoppedPool is a pool of workers that runs nothing, each worker running
// a job started the given time before now: for the arithmetic of
// expectedWait alone.
func stoppedPool(workers int, hashTime time.Duration, now time.Time, started ...time.Duration) *passwordHasher {
	p := &passwordHasher{workers: workers, hashTime: hashTime, running: map[*hashJob]bool{}}
	for _, ago := range started {
		p.running[&hashJob{started: now.Add(-ago)}] = true
	}
	return p
}

// admitted is how many jobs p queues at now before a job would wait
// longer than bound.
func admitted(t *testing.T, p *passwordHasher, now time.Time, bound time.Duration) int {
	t.Helper()
	for queued := 0; ; queued++ {
		if p.expectedWait(now) > bound {
			return queued
		}
		if queued > 100000 {
			t.Fatal("over 100000 jobs queued, and none refused")
		}
		p.queue.PushBack(&hashJob{})
	}
}

func TestHashingQueueHoldsAtMostTheWaitBoundOfTheCheapestHashes(t *testing.T) {
	// However cheap hashes are measured to be, each counts as minHashTime:
	// with 2 ms of wait admitted, four rounds may wait behind the jobs
	// that the two workers have just started.
	now := time.Now()
	p := stoppedPool(2, time.Nanosecond, now, 0, 0)
	if n, want := admitted(t, p, now, 4*minHashTime), 4*p.workers; n != want {
		t.Errorf("%d jobs were queued before one was refused, want %d", n, want)
	}
}

func TestTheWaitCountsTheRunningJobsAsTheyAre(t *testing.T) {
	const hash = time.Second
	for _, tc := range []struct {
		name     string
		workers  int
		started  []time.Duration // how long ago each running job started
		wantWait time.Duration   // of the first job queued
		wantJobs int             // queued before one is refused, with 5 s admitted
	}{
		{"idle workers take a job at once", 2, nil, 0, 12},
		{"jobs that have just started end in one hash", 2, []time.Duration{0, 0}, hash, 10},
		{"jobs half done end in half a hash", 2, []time.Duration{hash / 2, hash / 2}, hash / 2, 10},
		{"jobs past the average are expected to run as long again as they have", 2, []time.Duration{10 * hash, 10 * hash}, 10 * hash, 0},
		{"one worker held long leaves the other to serve the queue alone", 2, []time.Duration{time.Hour, 0}, hash, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			p := stoppedPool(tc.workers, hash, now, tc.started...)
			if got := p.expectedWait(now); got != tc.wantWait {
				t.Errorf("the first job queued would wait %s, want %s", got, tc.wantWait)
			}
			if n := admitted(t, p, now, 5*time.Second); n != tc.wantJobs {
				t.Errorf("%d jobs were queued before one was refused, want %d", n, tc.wantJobs)
			}
		})
	}
}

func TestWaitingToHashIsBoundedWhateverRunsInFrontOfIt(t *testing.T) {
	// A worker held for as long as a test likes stands for any job that
	// runs far longer than its measure: a dear hash, a starved CPU.
	watchdog := func(t *testing.T, what string, done <-chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits after 10 s", what)
			return nil
		}
	}
	expectBusy := func(t *testing.T, err error) {
		t.Helper()
		var busy *apiError
		if !errors.As(err, &busy) || busy.status != http.StatusServiceUnavailable || busy.retryAfter < time.Second {
			t.Fatalf("p.do = %v, want 503 with a Retry-After of a second or more", err)
		}
	}
	t.Run("a job queued past the bound leaves with 503; behind workers run far past the average, the next is refused at once", func(t *testing.T) {
		// In real time: the bound is maxHashingWait.
		p := newPasswordHasher(testBcryptCost)
		defer p.close()
		p.setHashTime(time.Millisecond) // the held jobs soon run far past it
		release := holdWorkers(t, p)
		defer release()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- p.do(t.Context(), func() { t.Error("a job that left the queue ran") }) }()
		select {
		case err := <-done:
			expectBusy(t, err)
		case <-time.After(maxHashingWait + 10*time.Second):
			t.Fatalf("a job queued behind held workers still waits after %s", time.Since(start))
		}
		if waited := time.Since(start); waited < maxHashingWait {
			t.Errorf("the job left the queue after %s, want %s", waited, maxHashingWait)
		}
		if n := p.queued(); n != 0 {
			t.Errorf("%d jobs queued after the only one left, want 0", n)
		}
		// Each held worker has run for 15 s, and so counts as busy for 15 s more.
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // a refusal is at once
		defer cancel()
		err := p.do(ctx, func() { t.Error("a refused job ran") })
		var busy *apiError
		if !errors.As(err, &busy) || busy.retryAfter <= maxHashingWait {
			t.Errorf("p.do behind workers held for %s = %v, want 503 with a Retry-After past it", maxHashingWait, err)
		}
	})
	t.Run("a request that ends stops waiting for a job a worker has taken", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		defer p.close()
		release := make(chan struct{})
		defer close(release)
		ctx, cancel := context.WithCancel(t.Context())
		taken := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- p.do(ctx, func() { close(taken); <-release }) }()
		<-taken
		cancel()
		if err := watchdog(t, "a request that ended", done); !errors.Is(err, context.Canceled) {
			t.Errorf("p.do after its context ended = %v, want context.Canceled", err)
		}
	})
	t.Run("closing the pool drops the queue and waits only a moment for a busy worker", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		release := holdWorkers(t, p) // released when the test ends, after close
		defer release()
		queued := make(chan error, 1)
		go func() { queued <- p.do(t.Context(), func() { t.Error("a dropped job ran") }) }()
		waitFor(t, "the job to queue", func() bool { return p.queued() == 1 })
		closed := make(chan error, 1)
		go func() { p.close(); closed <- nil }()
		watchdog(t, "close, with every worker busy,", closed)
		expectBusy(t, watchdog(t, "a job queued when the pool closed", queued))
		expectBusy(t, p.do(t.Context(), func() { t.Error("a job ran after close") }))
	})
}

func TestHashingLeavesTheQueueWhenTheRequestEnds(t *testing.T) {
	p := newPasswordHasher(testBcryptCost)
	defer p.close()
	release := holdWorkers(t, p)
	ctx, cancel := context.WithCancel(t.Context())
	var ran atomic.Bool
	done := make(chan error, 1)
	go func() { done <- p.do(ctx, func() { ran.Store(true) }) }()
	waitFor(t, "the job to queue", func() bool { return p.queued() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("p.do after its context ended = %v, want context.Canceled", err)
	}
	if n := p.queued(); n != 0 {
		t.Errorf("%d jobs queued after the only one's request ended, want 0", n)
	}
	release()
	p.close()
	if ran.Load() {
		t.Error("the job of an ended request ran")
	}
}

func TestServingGivesTheHashingWorkersProcsOfTheirOwn(t *testing.T) {
	reserveProcsForHashing()
	reserveProcsForHashing() // a second server in the process adds none
	if got, want := runtime.GOMAXPROCS(0), 2*hashingWorkers(); got != want {
		t.Errorf("GOMAXPROCS = %d, want %d: the CPUs and one more per hashing worker", got, want)
	}
}
