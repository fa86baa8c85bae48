// hashing_test.go tests hashing.go: the bcrypt pool, its bounded wait,
// and the CPUs it is given.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// setHashTime makes p judge its queue as if recent hashes had taken d.
func (p *passwordHasher) setHashTime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hashTime = d
}

// expectBusy fails t unless err is the pool's 503 with a Retry-After in
// [least, most].
func expectBusy(t *testing.T, what string, err error, least, most time.Duration) {
	t.Helper()
	var busy *apiError
	if !errors.As(err, &busy) || busy.status != errHashersBusy.status || busy.detail != errHashersBusy.detail ||
		busy.retryAfter < least || busy.retryAfter > most {
		t.Errorf("%s = %v (%+v), want %q with a Retry-After from %s to %s", what, err, busy, errHashersBusy, least, most)
	}
}

func TestHashingServesABurstLargerThanTheCPUs(t *testing.T) {
	t.Run("four times as many hashes as workers all run, at most one per worker at a time", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		defer p.close()
		var mu sync.Mutex
		running, most := 0, 0
		count := func(d int) {
			mu.Lock()
			defer mu.Unlock()
			running += d
			most = max(most, running)
		}
		var ran atomic.Int32
		var wg sync.WaitGroup
		for range 4 * p.workers {
			wg.Go(func() {
				err := p.do(t.Context(), func() {
					count(1)
					time.Sleep(2 * time.Millisecond) // long enough for the burst to pile up
					count(-1)
					ran.Add(1)
				})
				if err != nil {
					t.Errorf("p.do in a burst of %d = %v, want it served", 4*p.workers, err)
				}
			})
		}
		wg.Wait()
		if ran.Load() != int32(4*p.workers) || most > p.workers {
			t.Errorf("%d hashes ran, at most %d at once; want %d, and at most %d at once: one per worker", ran.Load(), most, 4*p.workers, p.workers)
		}
	})

	// That a burst of signups of one email gives one 201 is
	// TestEmailsAreUniqueIgnoringCase's.
	t.Run("40 concurrent signups of distinct emails are all created", func(t *testing.T) {
		e := newTestEnv(t)
		got := burstStatuses(40, func(i int) *http.Response {
			return e.postJSON("/api/v1/auth/signup", signupBody(fmt.Sprintf("cook%d@example.com", i), "password123"))
		})
		if got[http.StatusCreated] != 40 {
			t.Errorf("40 concurrent signups answered %v, want 40 × 201", got)
		}
	})
}

// TestHashingRefusesOnlyPastTheWaitBound is one story, step by step: the
// workers held, then a hash that fits in the bound.
func TestHashingRefusesOnlyPastTheWaitBound(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")

	// One hash is taken to last 16 s, past the 15 s of waiting admitted:
	// with every worker busy, a new request would wait 16 s. Past the
	// bound, login and signup get 503 with that wait as Retry-After,
	// within a second: the answer must come at once, not after a wait.
	e.passwords.setHashTime(16 * time.Second)
	release := holdWorkers(t, e.passwords)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	for _, r := range []*http.Request{
		loginRequest("cook@example.com", "password123"),
		newRequest("POST", "/api/v1/auth/signup", strings.NewReader(`{"email":"new@example.com","password":"password123"}`), "Content-Type", "application/json"),
	} {
		resp := e.serve(r.WithContext(ctx))
		if ra := resp.Header.Get("Retry-After"); ra != "16" {
			t.Errorf("%s past the bound: Retry-After = %q, want 16", resp.Request.URL.Path, ra)
		}
		expectDetail(t, resp, http.StatusServiceUnavailable, "Server busy, try again shortly")
	}
	if n := e.passwords.queued(); n != 0 {
		t.Errorf("%d refused jobs are queued, want 0", n)
	}
	// Reads do not wait for hashing.
	expectStatus(t, e.get("/api/v1/recipes/1"), http.StatusOK)

	// Within the bound, a login waits its turn and is served.
	e.passwords.setHashTime(3 * time.Second)
	answer := make(chan *http.Response, 1)
	go func() { answer <- e.tryLogin("cook@example.com", "password123") }()
	waitFor(t, "the login to queue", func() bool { return e.passwords.queued() == 1 })
	release()
	expectStatus(t, <-answer, http.StatusOK)
}

func TestTheWaitGrowsByOneHashForEachRoundOfJobsAhead(t *testing.T) {
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
	expectBusy(t, "p.do behind three rounds of 6 s hashes", err, 17*time.Second+time.Nanosecond, 18*time.Second)
}

func TestTheWaitCountsTheRunningJobsAsTheyAre(t *testing.T) {
	const hash = time.Second
	for _, tc := range []struct {
		name     string
		hash     time.Duration   // the measured time of one hash
		started  []time.Duration // how long ago each running job started
		bound    time.Duration   // of the wait admitted
		wantWait time.Duration   // of the first job queued
		wantJobs int             // queued before one is refused
	}{
		{"idle workers take a job at once", hash, nil, 5 * hash, 0, 12},
		{"jobs that have just started end in one hash", hash, []time.Duration{0, 0}, 5 * hash, hash, 10},
		{"jobs half done end in half a hash", hash, []time.Duration{hash / 2, hash / 2}, 5 * hash, hash / 2, 10},
		{"jobs past the average are expected to run as long again as they have", hash, []time.Duration{10 * hash, 10 * hash}, 5 * hash, 10 * hash, 0},
		{"one worker held long leaves the other to serve the queue alone", hash, []time.Duration{time.Hour, 0}, 5 * hash, hash, 5},
		// However cheap hashes are measured to be, each counts as
		// minHashTime: the queue holds four rounds in 4 × minHashTime.
		{"the cheapest hashes count as minHashTime", time.Nanosecond, []time.Duration{0, 0}, 4 * minHashTime, minHashTime, 8},
		// 40 signups arrive at once, before any ends, on two CPUs at cost
		// 12, with one hash taking 0.56 s, twice what it takes on an
		// idle machine: all 40 are admitted, and 14 more.
		{"the wait bound admits a burst of 40 signups at cost 12 on two CPUs", 560 * time.Millisecond, nil, maxHashingWait, 0, 54},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Two workers that run nothing, busy with jobs started as
			// given: the arithmetic of expectedWait alone.
			now := time.Now()
			p := &passwordHasher{workers: 2, hashTime: tc.hash, running: map[*hashJob]bool{}}
			for _, ago := range tc.started {
				p.running[&hashJob{started: now.Add(-ago)}] = true
			}
			if got := p.expectedWait(now); got != tc.wantWait {
				t.Errorf("the first job queued would wait %s, want %s", got, tc.wantWait)
			}
			queued := 0
			for ; p.expectedWait(now) <= tc.bound && queued <= 1000; queued++ {
				p.queue.PushBack(&hashJob{})
			}
			if queued != tc.wantJobs {
				t.Errorf("%d jobs were queued before one would wait past %s, want %d", queued, tc.bound, tc.wantJobs)
			}
		})
	}
}

func TestWaitingToHashIsBoundedWhateverRunsInFrontOfIt(t *testing.T) {
	t.Parallel() // it waits out maxHashingWait, 15 s, on a pool of its own
	// A worker held for as long as a test likes stands for any job that
	// runs far longer than its measure: a dear hash, a starved CPU.
	watchdog := func(t *testing.T, what string, done <-chan error, limit time.Duration) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(limit):
			t.Fatalf("%s still waits after %s", what, limit)
			return nil
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
		// Past this deadline p.do would answer with its context's error.
		ctx, cancel := context.WithTimeout(t.Context(), maxHashingWait+10*time.Second)
		defer cancel()
		err := p.do(ctx, func() { t.Error("a job that left the queue ran") })
		expectBusy(t, "p.do queued behind held workers", err, time.Second, time.Hour)
		if waited := time.Since(start); waited < maxHashingWait {
			t.Errorf("the job left the queue after %s, want %s", waited, maxHashingWait)
		}
		if n := p.queued(); n != 0 {
			t.Errorf("%d jobs queued after the only one left, want 0", n)
		}
		// Each held worker has run for 15 s, and so counts as busy for 15 s more.
		ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second) // a refusal is at once
		defer cancel()
		err = p.do(ctx, func() { t.Error("a refused job ran") })
		expectBusy(t, fmt.Sprintf("p.do behind workers held for %s", maxHashingWait), err, maxHashingWait+time.Nanosecond, time.Hour)
	})
	for _, tc := range []struct {
		name  string
		taken bool // whether a worker has the job when its request ends
	}{
		{"a request that ends leaves the queue, and its job never runs", false},
		{"a request that ends stops waiting for a job a worker has taken", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPasswordHasher(testBcryptCost)
			defer p.close()
			release := func() {}
			if !tc.taken {
				release = holdWorkers(t, p)
			}
			ctx, cancel := context.WithCancel(t.Context())
			var ran atomic.Bool
			unblock := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- p.do(ctx, func() {
					ran.Store(true)
					<-unblock
				})
			}()
			waitFor(t, "the job to be queued or taken", func() bool { return ran.Load() || !tc.taken && p.queued() == 1 })
			cancel()
			if err := watchdog(t, "a request that ended", done, 10*time.Second); !errors.Is(err, context.Canceled) {
				t.Errorf("p.do after its context ended = %v, want context.Canceled", err)
			}
			if n := p.queued(); n != 0 {
				t.Errorf("%d jobs queued after the only one's request ended, want 0", n)
			}
			close(unblock)
			release()
			p.close()
			if ran.Load() != tc.taken {
				t.Errorf("the job of the ended request ran: %v, want %v", ran.Load(), tc.taken)
			}
		})
	}
	t.Run("closing the pool drops the queue and waits only a moment for a busy worker", func(t *testing.T) {
		p := newPasswordHasher(testBcryptCost)
		release := holdWorkers(t, p) // released when the test ends, after close
		defer release()
		queued := make(chan error, 1)
		go func() { queued <- p.do(t.Context(), func() { t.Error("a dropped job ran") }) }()
		waitFor(t, "the job to queue", func() bool { return p.queued() == 1 })
		closed := make(chan error, 1)
		go func() { p.close(); closed <- nil }()
		watchdog(t, "close, with every worker busy,", closed, 10*time.Second)
		expectBusy(t, "p.do queued when the pool closed", watchdog(t, "a job queued when the pool closed", queued, 10*time.Second), time.Second, time.Second)
		expectBusy(t, "p.do after close", p.do(t.Context(), func() { t.Error("a job ran after close") }), time.Second, time.Second)
	})
}

// TestServingGivesTheHashingWorkersProcsOfTheirOwn runs in a child
// process, so that GOMAXPROCS here never changes.
func TestServingGivesTheHashingWorkersProcsOfTheirOwn(t *testing.T) {
	if !inChild(t) {
		return
	}
	cpus := runtime.GOMAXPROCS(0)
	reserveProcsForHashing()
	reserveProcsForHashing() // a second server in the process adds none
	if got := runtime.GOMAXPROCS(0); hashingWorkers() != cpus || got != 2*cpus {
		t.Errorf("with %d CPUs: %d hashing workers and GOMAXPROCS = %d, want %d and %d: the CPUs and one more per worker",
			cpus, hashingWorkers(), got, cpus, 2*cpus)
	}
}
