// hashing.go owns the bcrypt worker pool: one thread per CPU at the lowest
// OS priority, so that requests run first whenever both want a CPU, and
// one queue bounded by the wait it would cause. It knows nothing of users:
// auth.go decides what is hashed and compared, and why.
package main

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordHasher admits a job if it is expected to start within
// maxHashingWait, and otherwise refuses it at once with 503 and that wait
// as Retry-After: an honest burst is served in turn.
type passwordHasher struct {
	cost    int // of new hashes
	workers int

	mu       sync.Mutex
	wake     sync.Cond          // on mu: a job was queued, or the pool is closing
	queue    list.List          // of *hashJob, waiting for a worker
	running  map[*hashJob]bool  // at most workers
	hashTime time.Duration      // moving average of recent jobs' durations
	closed   bool               // no more work; workers end once their job has
	laterCtx context.Context    // of the work later runs; ends with close
	endLater context.CancelFunc // ends laterCtx

	workersDone sync.WaitGroup
	laterDone   sync.WaitGroup

	priorityErr error // why the workers could not lower their priority

	dummy atomic.Pointer[string] // auth.go's hash for unknown emails
}

type hashJob struct {
	run     func()
	waiting *list.Element // its place in the queue; nil once taken, or gone
	started time.Time     // when a worker took it
	done    chan error    // nil once run has returned; errHashersBusy if the pool closed first
}

const (
	// maxHashingWait bounds the expected wait a job is admitted with, and
	// its time in the queue. It lets 40 signups at cost 12 through on two
	// CPUs at twice the idle hash time, within the 60 s write timeout.
	maxHashingWait = 15 * time.Second
	// minHashTime is the least a hash counts for: it bounds the queue at
	// workers × (maxHashingWait/minHashTime + 1) jobs, however cheap.
	minHashTime  = 500 * time.Microsecond
	maxCloseWait = time.Second // nothing stops a running bcrypt midway
)

// hashingWorkers is GOMAXPROCS (which honours a cgroup quota, unlike
// NumCPU) at the first call, before the server raises it.
var hashingWorkers = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })

// reserveProcsForHashing doubles GOMAXPROCS, once: a hashing worker holds
// a P, so without spare Ps a busy pool would leave none for requests, and
// the kernel's priorities could not help.
var reserveProcsForHashing = sync.OnceFunc(func() { runtime.GOMAXPROCS(2 * hashingWorkers()) })

// newPasswordHasher starts a pool that hashes new passwords at cost.
func newPasswordHasher(cost int) *passwordHasher {
	p := &passwordHasher{cost: cost, workers: hashingWorkers(), running: map[*hashJob]bool{}}
	p.wake.L = &p.mu
	p.laterCtx, p.endLater = context.WithCancel(context.Background())
	started := make(chan error, p.workers)
	for range p.workers {
		p.workersDone.Go(func() { p.work(started) })
	}
	for range p.workers {
		p.priorityErr = cmp.Or(p.priorityErr, <-started)
	}
	return p
}

// work is one worker, taking jobs oldest first until the pool is closed.
func (p *passwordHasher) work(started chan<- error) {
	// Never unlocked: the lowered priority must not pass to other
	// goroutines; the runtime ends the thread when work returns.
	runtime.LockOSThread()
	err := lowerThreadPriority()
	if errors.Is(err, errMainThread) {
		// Ending locked to the main thread parks it for good, at its own
		// priority; another thread takes this worker's place.
		p.workersDone.Go(func() { p.work(started) })
		return
	}
	started <- err

	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.queue.Len() == 0 && !p.closed {
			p.wake.Wait()
		}
		if p.closed {
			return
		}
		job := p.queue.Remove(p.queue.Front()).(*hashJob)
		job.waiting, job.started = nil, time.Now()
		p.running[job] = true
		p.mu.Unlock()

		job.run()

		p.mu.Lock()
		delete(p.running, job)
		// Over about eight jobs, to follow a change of cost or load.
		took := time.Since(job.started)
		p.hashTime = cmp.Or(p.hashTime, took)
		p.hashTime += (took - p.hashTime) / 8
		job.done <- nil
	}
}

// expectedWait is how long a job queued at now would wait for a worker.
// Each worker is free once its job is expected to end (expectedRemaining),
// then takes the queued jobs one hash each; the new job starts at the
// earliest time by which it and every job ahead can have started, found by
// bisection. p.mu is held.
func (p *passwordHasher) expectedWait(now time.Time) time.Duration {
	hash := max(p.hashTime, minHashTime)
	free := make([]time.Duration, 0, p.workers)
	for job := range p.running {
		free = append(free, expectedRemaining(now.Sub(job.started), hash))
	}
	free = append(free, make([]time.Duration, p.workers-len(free))...) // idle workers are free now
	startsBy := func(t time.Duration) int {                            // jobs that can have started by t
		n := 0
		for _, f := range free {
			if f <= t {
				n += int((t-f)/hash) + 1
			}
		}
		return n
	}
	ahead := p.queue.Len()
	lo, hi := time.Duration(0), slices.Min(free)+time.Duration(ahead)*hash
	for lo < hi {
		if mid := lo + (hi-lo)/2; startsBy(mid) > ahead {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// expectedRemaining is how much longer a job that has run for ran is
// expected to run: the rest of the average hash, or once past it as long
// again, so that a worker held far past the average counts as busy and a
// queue only it could serve is refused at once, not left to time out.
func expectedRemaining(ran, hash time.Duration) time.Duration {
	if ran < hash {
		return hash - ran
	}
	return ran
}

// do runs fn on a worker and returns once it has run. Every wait is
// bounded: it refuses at once if the expected wait is over maxHashingWait
// or the pool is closed; a job still queued after maxHashingWait, or when
// ctx ends, leaves. Once a worker has the job, do waits for that one
// bcrypt run or for ctx; if ctx ends first, fn still runs, and the caller
// must not read what it writes.
func (p *passwordHasher) do(ctx context.Context, fn func()) error {
	job := &hashJob{run: fn, done: make(chan error, 1)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errHashersBusy
	}
	if wait := p.expectedWait(time.Now()); wait > maxHashingWait {
		p.mu.Unlock()
		return errHashersBusy.retryIn(wait)
	}
	job.waiting = p.queue.PushBack(job)
	p.wake.Signal()
	p.mu.Unlock()

	select {
	case err := <-job.done:
		return err
	case <-ctx.Done():
	case <-time.After(maxHashingWait):
	}
	p.mu.Lock()
	if job.waiting != nil { // still queued: leave
		p.queue.Remove(job.waiting)
		retry := max(p.expectedWait(time.Now()), time.Second)
		p.mu.Unlock()
		if ctx.Err() != nil {
			return fmt.Errorf("wait to hash: %w", ctx.Err())
		}
		return errHashersBusy.retryIn(retry)
	}
	p.mu.Unlock()
	select { // a worker has it: one hash, and its result is ours
	case err := <-job.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("wait for a hash: %w", ctx.Err())
	}
}

// later runs fn in the background, with a context that close ends and
// waits for, or reports false once the pool is closed.
func (p *passwordHasher) later(fn func(ctx context.Context)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.laterDone.Go(func() { fn(p.laterCtx) })
	}
	return !p.closed
}

// close stops the pool: queued jobs leave with 503, later's context ends,
// idle workers end. It waits for them at most maxCloseWait. Closing again
// does no harm.
func (p *passwordHasher) close() {
	p.mu.Lock()
	p.closed = true
	for e := p.queue.Front(); e != nil; e = e.Next() {
		job := e.Value.(*hashJob)
		job.waiting = nil
		job.done <- errHashersBusy
	}
	p.queue.Init()
	p.wake.Broadcast()
	p.mu.Unlock()
	p.endLater()

	stopped := make(chan struct{})
	go func() {
		p.laterDone.Wait()
		p.workersDone.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(maxCloseWait):
	}
}

// hash returns a bcrypt hash of password at the pool's cost.
func (p *passwordHasher) hash(ctx context.Context, password string) (string, error) {
	return p.hashAt(ctx, password, p.cost)
}

func (p *passwordHasher) hashAt(ctx context.Context, password string, cost int) (string, error) {
	var hash []byte
	var err error
	if doErr := p.do(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), cost) }); doErr != nil {
		return "", doErr
	}
	return string(hash), wrapErr(err, "hash password")
}

// compare reports whether password matches hash, of any cost and any of
// the $2a$, $2b$ and $2y$ prefixes. The caller bounds the cost first
// (unusablePasswordHash): bcrypt runs a cost of 31 for years.
func (p *passwordHasher) compare(ctx context.Context, hash, password string) (bool, error) {
	var err error
	if doErr := p.do(ctx, func() { err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) }); doErr != nil {
		return false, doErr
	}
	if err == nil || errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return err == nil, nil
	}
	return false, fmt.Errorf("compare password: %w: %w", errUnreadableHash, err)
}

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// bcryptHashBytes is "$2b$", two digits of cost, "$", 22 of salt, 31 of digest.
const bcryptHashBytes = 60

// hashCost returns the cost written in hash, or why hash is not a bcrypt
// hash that bcrypt runs whole: bcrypt.Cost reads only the prefix, and a
// broken salt then fails at once. The reason never shows the hash.
func hashCost(hash string) (cost int, problem string) {
	if len(hash) != bcryptHashBytes {
		return 0, fmt.Sprintf("not a bcrypt hash: %d bytes, where bcrypt writes %d", len(hash), bcryptHashBytes)
	}
	twoDigits := strings.Trim(hash[4:6], "0123456789") == "" && hash[6] == '$'
	if !slices.Contains([]string{"$2a$", "$2b$", "$2y$"}, hash[:4]) || !twoDigits {
		return 0, "not a bcrypt hash: it does not start with $2a$, $2b$ or $2y$ and a cost of two digits"
	}
	if strings.Trim(hash[7:], bcryptAlphabet) != "" {
		return 0, "not a bcrypt hash: its salt or digest holds a character outside bcrypt's alphabet"
	}
	return int(hash[4]-'0')*10 + int(hash[5]-'0'), ""
}

var (
	errMainThread     = errors.New("the main thread keeps its priority") // from lowerThreadPriority
	errUnreadableHash = errors.New("stored password hash is unreadable")
)
