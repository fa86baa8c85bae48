//go:build linux

// hashing_linux_test.go checks, through /proc, that hashing runs on
// threads of the lowest priority and that no other thread is lowered.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// threadNice reads the nice value of thread tid of this process: field 19
// of /proc/self/task/<tid>/stat, counted after the parenthesised name,
// which may itself hold spaces.
func threadNice(t *testing.T, tid int) int {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 17 {
		t.Fatalf("unexpected stat line %q", stat)
	}
	nice, err := strconv.Atoi(fields[19-3]) // rest starts at field 3, the state
	if err != nil {
		t.Fatal(err)
	}
	return nice
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

func TestHashingLeavesTheMainThreadsPriorityAlone(t *testing.T) {
	// ps and top show the main thread's priority as the process's. A
	// worker often starts on it, so a few pools are enough to see one.
	before := threadNice(t, os.Getpid())
	for range 20 {
		p := newPasswordHasher(testBcryptCost)
		p.close()
		if nice := threadNice(t, os.Getpid()); nice != before {
			t.Fatalf("the main thread has nice %d after a pool started, want %d as before", nice, before)
		}
	}
}
