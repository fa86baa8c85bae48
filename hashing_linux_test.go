//go:build linux

// hashing_linux_test.go checks, through /proc, that hashing runs on
// threads of the lowest priority and that no other thread is lowered,
// the main thread least of all.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// niceOf reads the nice value of thread tid of this process: field 19 of
// /proc/self/task/<tid>/stat, counted after the parenthesised name, which
// may itself hold spaces.
func niceOf(tid int) (int, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 17 {
		return 0, fmt.Errorf("unexpected stat line %q", stat)
	}
	return strconv.Atoi(fields[19-3]) // rest starts at field 3, the state
}

func threadNice(t *testing.T, tid int) int {
	t.Helper()
	nice, err := niceOf(tid)
	if err != nil {
		t.Fatal(err)
	}
	return nice
}

// onMainThread is what a hashing worker did when started on the main
// thread, seen from init: only there does a goroutine surely run on it
// (the runtime locks it there), and a later test could not count on it,
// since a worker that ends on it parks it for good.
var onMainThread struct {
	isMain      bool  // init did run on the main thread
	lowerErr    error // lowerThreadPriority's answer there
	workerErr   error // what the worker reported as its start
	before, now int   // the main thread's nice value before and after
	readErr     error
}

func init() {
	m := &onMainThread
	m.isMain = syscall.Gettid() == syscall.Getpid()
	m.before, m.readErr = niceOf(syscall.Getpid())
	m.lowerErr = lowerThreadPriority()
	// A worker of a closed pool, on this thread: it must hand its place
	// to one on another thread, whose start is what started reports.
	p := &passwordHasher{workers: 1, running: map[*hashJob]bool{}, closed: true}
	p.wake.L = &p.mu
	started := make(chan error, 1)
	p.work(started) // its replacement counts in workersDone

	runtime.UnlockOSThread() // work's lock; init's own stays
	m.workerErr = <-started
	p.workersDone.Wait()
	if m.readErr == nil {
		m.now, m.readErr = niceOf(syscall.Getpid())
	}
}

func TestHashingLeavesTheMainThreadsPriorityAlone(t *testing.T) {
	m := onMainThread
	if !m.isMain || m.readErr != nil {
		t.Fatalf("init ran on the main thread: %v; read its nice value: %v", m.isMain, m.readErr)
	}
	if !errors.Is(m.lowerErr, errMainThread) {
		t.Errorf("lowerThreadPriority on the main thread = %v, want errMainThread", m.lowerErr)
	}
	if m.workerErr != nil {
		t.Errorf("a worker started on the main thread reported %v, want its replacement's nil", m.workerErr)
	}
	if m.now != m.before {
		t.Errorf("the main thread has nice %d after a worker started on it, want %d as before", m.now, m.before)
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
	own := threadNice(t, syscall.Gettid())

	p := newPasswordHasher(testBcryptCost)
	defer p.close()
	if p.priorityErr != nil {
		t.Fatalf("the workers could not lower their priority: %v", p.priorityErr)
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
		if nice := threadNice(t, tid); nice != 19 {
			t.Errorf("worker thread %d has nice %d, want 19", tid, nice)
		}
	}

	if nice := threadNice(t, syscall.Gettid()); nice != own {
		t.Errorf("the test's own thread has nice %d after the pool started, want %d as before", nice, own)
	}
}
