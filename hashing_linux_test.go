//go:build linux

// hashing_linux_test.go checks that hashing runs on threads of the
// lowest priority and that no other thread is lowered,
// the main thread least of all.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// niceOf is the nice value of thread tid, from the raw getpriority(2),
// which answers 20 - nice so as never to look like an error.
func niceOf(tid int) (int, error) {
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
	return 20 - prio, err
}

// mainThreadProblems is what went wrong when a hashing worker started on
// the main thread, in the child process that
// TestHashingLeavesTheMainThreadsPriorityAlone runs: only in init does a
// goroutine surely run there (the runtime locks it there), and a worker
// that ends on it parks it for good. mainThreadChecked is set once init
// has checked it all.
var (
	mainThreadProblems []error
	mainThreadChecked  bool
)

func init() {
	if os.Getenv(childTestEnv) != "TestHashingLeavesTheMainThreadsPriorityAlone" {
		return
	}
	tid := syscall.Gettid()
	check := func(ok bool, format string, args ...any) {
		if !ok {
			mainThreadProblems = append(mainThreadProblems, fmt.Errorf(format, args...))
		}
	}
	check(tid == syscall.Getpid(), "init runs on thread %d, not on the main thread %d", tid, syscall.Getpid())
	before, beforeErr := niceOf(tid)
	// A pool of one worker, as newPasswordHasher makes it, but whose
	// worker starts here. lowerThreadPriority refuses this thread, so the
	// worker must give its place to one on another thread, which then runs
	// the job queued meanwhile; then the pool closes, so that even a
	// worker that kept this thread would end.
	p := &passwordHasher{cost: testBcryptCost, workers: 1, running: map[*hashJob]bool{}}
	p.wake.L = &p.mu
	p.laterCtx, p.endLater = context.WithCancel(context.Background())
	started, jobDone := make(chan error, 2), make(chan error, 1) // room for a worker that kept this thread, too
	var jobTid, jobNice int
	go func() {
		var niceErr error
		err := p.do(context.Background(), func() {
			jobTid = syscall.Gettid()
			jobNice, niceErr = niceOf(jobTid)
		})
		p.close()
		jobDone <- errors.Join(err, niceErr)
	}()
	p.work(started)
	runtime.UnlockOSThread() // work's lock; init's own stays
	err := <-started
	check(err == nil, "a worker started on the main thread reported %v, want its replacement's nil", err)
	err = <-jobDone
	check(err == nil && jobTid != tid && jobNice == 19, "the job ran on thread %d at nice %d (%v), want a thread other than the main one (%d), at 19", jobTid, jobNice, err, tid)
	after, afterErr := niceOf(tid)
	check(beforeErr == nil && afterErr == nil && after == before,
		"the main thread has nice %d (%v) after a worker started on it, want %d (%v) as before", after, afterErr, before, beforeErr)
	mainThreadChecked = true
}

func TestHashingLeavesTheMainThreadsPriorityAlone(t *testing.T) {
	if !inChild(t) {
		return
	}
	if !mainThreadChecked {
		t.Fatal("init did not start a worker on the main thread")
	}
	for _, err := range mainThreadProblems {
		t.Error(err)
	}
}

func TestHashingWorkersRunAtTheLowestPriority(t *testing.T) {
	// The test's own thread, held so that it stays the same one: its nice
	// value is the process's, and must stay so.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// At nice 19 already (as under "nice go test"), a worker at 19 proves
	// nothing by itself; p.priorityErr still shows that each worker's
	// setpriority succeeded, and every other check holds as it is.
	own, err := niceOf(syscall.Gettid())
	p := newPasswordHasher(testBcryptCost)
	defer p.close()
	if err != nil || p.priorityErr != nil {
		t.Fatalf("read the test's nice value: %v; the workers could not lower their priority: %v", err, p.priorityErr)
	}

	// One job per worker, each held until all have started, so that every
	// worker reports its own thread.
	var mu sync.Mutex
	tids := map[int]bool{}
	var started, jobs sync.WaitGroup
	started.Add(p.workers)
	for range p.workers {
		jobs.Go(func() {
			err := p.do(t.Context(), func() {
				mu.Lock()
				tids[syscall.Gettid()] = true
				mu.Unlock()
				started.Done()
				started.Wait()
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	jobs.Wait()
	if len(tids) != p.workers {
		t.Errorf("the jobs ran on %d threads, want %d, one per worker", len(tids), p.workers)
	}
	for tid := range tids {
		if nice, err := niceOf(tid); err != nil || nice != 19 {
			t.Errorf("worker thread %d has nice %d (%v), want 19", tid, nice, err)
		}
	}
	if nice, err := niceOf(syscall.Gettid()); err != nil || nice != own {
		t.Errorf("the test's own thread has nice %d (%v) after the pool started, want %d as before", nice, err, own)
	}
}
