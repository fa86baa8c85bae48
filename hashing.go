// hashing.go owns password hashing: bcrypt, run on a pool of worker
// threads at the lowest OS priority, with a queue bounded by the wait it
// would cause, the dummy hash that a login of an unknown email is
// compared against, and the rule for which stored hashes are usable at
// all (unusablePasswordHash). auth.go says when each is used, and why;
// passwordMatches there is the one check of a password.
package main

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordHasher runs bcrypt on a fixed pool of worker threads, one per
// CPU, each at the lowest operating-system priority (hashing_linux.go):
// hashing gets every CPU the requests leave idle, and the kernel runs a
// request first whenever both want a CPU, so reads stay fast during a
// flood of logins.
//
// Work waits in one queue, bounded by the wait it would cause rather than
// by a count: a job is admitted if the jobs ahead of it would end within
// maxWait, judged by the measured time of recent hashes; past that the
// client gets 503 with Retry-After set to that wait. A burst of honest
// logins is therefore served in turn, and only a backlog of more than
// maxWait of hashing is refused. A job whose request ends while it waits
// leaves the queue.
type passwordHasher struct {
	cost    int           // of new hashes
	workers int           // threads hashing at once
	maxWait time.Duration // the longest expected wait admitted

	mu       sync.Mutex
	wake     sync.Cond     // on mu: a job was queued, or the pool is closing
	queue    list.List     // of *hashJob, waiting for a worker
	running  int           // jobs a worker is running now
	hashTime time.Duration // moving average of recent jobs' durations
	closing  bool          // no more work later
	closed   bool          // no more work at all; workers end once the queue is empty

	workersDone sync.WaitGroup
	laterDone   sync.WaitGroup

	// priorityErr is why the workers could not lower their priority, if
	// they could not: hashing then competes with requests as an equal.
	priorityErr error

	dummy atomic.Pointer[dummyHash] // compared against when the email is unknown
}

// hashJob is one bcrypt run waiting for, or taken by, a worker.
type hashJob struct {
	run     func()
	waiting *list.Element // its place in the queue; nil once a worker took it
	done    chan struct{} // closed when run has returned
}

// dummyHash is a bcrypt hash of a password nobody has, and its cost.
type dummyHash struct {
	hash []byte
	cost int
}

const (
	// maxHashingWait bounds how long a request may expect to wait for
	// hashing; longer, and it is refused at once with 503. Fifteen
	// seconds lets a burst of 40 signups at cost 12 through on two CPUs
	// (about 0.3 s a hash, 5.7 s for the last) even when another load on
	// the machine makes each hash take twice as long, and is well within
	// the patience of an HTTP client and the server's 60 s write timeout.
	maxHashingWait = 15 * time.Second
	// minHashTime is the least a hash is taken to cost when the queue is
	// judged. bcrypt's cheapest cost takes about a millisecond, so this
	// changes no real estimate; it makes the queue's length bounded
	// outright: at most workers × (maxWait/minHashTime + 1) jobs.
	minHashTime = 500 * time.Microsecond
)

var dummyPassword = []byte("no user has this password")

// hashingWorkers is the number of hashing workers: the CPUs the process
// may use, as GOMAXPROCS said at the first call (which honours a cgroup
// CPU quota, unlike runtime.NumCPU). It is read once because the server
// then raises GOMAXPROCS (reserveProcsForHashing).
var hashingWorkers = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })

// reserveProcsForHashing raises GOMAXPROCS by the number of hashing
// workers, once per process. A worker holds a P while it hashes, so with
// GOMAXPROCS left at the CPU count a pool busy on every CPU would leave no
// P for request handling, and the kernel's priorities could not help.
// With the extra Ps the other goroutines keep all the CPUs' worth, and the
// kernel shares the CPUs out by priority. Since Go 1.25 the runtime
// follows a cgroup CPU limit that changes while running; setting
// GOMAXPROCS ourselves turns that off, so the limit is read once, at start.
var reserveProcsForHashing = sync.OnceFunc(func() {
	runtime.GOMAXPROCS(2 * hashingWorkers())
})

// newPasswordHasher starts a pool that hashes new passwords at cost. Its
// dummy hash is made by the first login that needs it; close stops it.
func newPasswordHasher(cost int) *passwordHasher {
	p := &passwordHasher{cost: cost, workers: hashingWorkers(), maxWait: maxHashingWait}
	p.wake.L = &p.mu
	started := make(chan error, p.workers)
	p.workersDone.Add(p.workers)
	for range p.workers {
		go p.work(started)
	}
	for range p.workers {
		if err := <-started; err != nil {
			p.priorityErr = err
		}
	}
	return p
}

// newPasswordHasherFor returns the hasher for the users in st, hashing new
// passwords at cost, with its dummy hash made already: that first hash
// also gives the first measure of how long one takes.
func newPasswordHasherFor(ctx context.Context, st *store, cost int) (*passwordHasher, error) {
	// A stored hash dearer than a login can afford is unusable, and must
	// not set the dummy's cost either.
	if err := st.setMaxUsableCost(ctx, maxUsableCost(cost)); err != nil {
		return nil, err
	}
	p := newPasswordHasher(cost)
	if err := p.compareUnknown(ctx, dummyCostFor(st, cost), ""); err != nil {
		p.close()
		return nil, fmt.Errorf("make the dummy hash: %w", err)
	}
	return p, nil
}

// dummyCostFor is the cost a login of an unknown email must pay: that of
// the dearest hash stored, as the store last saw them, so that no known
// email answers slower than an unknown one; cost if none is stored. A
// database the reference made may hold cost-12 hashes while BCRYPT_COST
// is lower, or the reverse.
func dummyCostFor(st *store, cost int) int {
	if stored := st.highestStoredCost(); stored != 0 {
		return stored
	}
	return cost
}

// work is one worker: it takes jobs from the queue, oldest first, until
// the pool is closed and the queue empty.
func (p *passwordHasher) work(started chan<- error) {
	defer p.workersDone.Done()
	// Never unlocked: this thread's priority is lowered for good, and must
	// not pass to other goroutines. When work returns, the runtime ends
	// the thread with it.
	runtime.LockOSThread()
	err := lowerThreadPriority()
	if errors.Is(err, errMainThread) {
		// A goroutine that ends locked to the main thread parks that
		// thread for good, at its own priority; a new worker takes this
		// one's place on another thread.
		p.workersDone.Add(1)
		go p.work(started)
		return
	}
	started <- err

	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.queue.Len() == 0 && !p.closed {
			p.wake.Wait()
		}
		if p.queue.Len() == 0 {
			return
		}
		job := p.queue.Remove(p.queue.Front()).(*hashJob)
		job.waiting = nil
		p.running++
		p.mu.Unlock()

		start := time.Now()
		job.run()
		took := time.Since(start)

		p.mu.Lock()
		p.running--
		// A moving average over roughly the last eight jobs: it follows a
		// change of cost or of load within a few hashes.
		if p.hashTime == 0 {
			p.hashTime = took
		} else {
			p.hashTime += (took - p.hashTime) / 8
		}
		close(job.done)
	}
}

// expectedWait is how long a job queued now would wait for a worker: the
// jobs ahead of it run workers at a time, one hash each. p.mu is held.
func (p *passwordHasher) expectedWait() time.Duration {
	rounds := (p.queue.Len() + p.running) / p.workers
	return time.Duration(rounds) * max(p.hashTime, minHashTime)
}

// do runs fn on a hashing worker and returns once it has run. It refuses
// at once, with 503 and the expected wait as Retry-After, if that wait is
// over maxWait; it gives up the job's place if ctx ends while it waits.
func (p *passwordHasher) do(ctx context.Context, fn func()) error {
	job := &hashJob{run: fn, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errHashersBusy
	}
	if wait := p.expectedWait(); wait > p.maxWait {
		p.mu.Unlock()
		return errHashersBusy.retryIn(wait)
	}
	job.waiting = p.queue.PushBack(job)
	p.wake.Signal()
	p.mu.Unlock()

	select {
	case <-job.done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	leave := job.waiting != nil
	if leave {
		p.queue.Remove(job.waiting)
		job.waiting = nil
	}
	p.mu.Unlock()
	if leave {
		return fmt.Errorf("wait to hash: %w", ctx.Err())
	}
	<-job.done // a worker has it already: one hash, and its result is ours
	return nil
}

// later runs fn in the background with a context of its own, for work a
// request leaves behind once it has answered (rehashLater). close waits
// for it. It reports false, and runs nothing, once the pool is closing.
func (p *passwordHasher) later(fn func(ctx context.Context)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.laterDone.Go(func() { fn(context.Background()) })
	return true
}

// close waits for the work started by later, then lets the workers finish
// the queue and stops them, ending their threads.
func (p *passwordHasher) close() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.laterDone.Wait()

	p.mu.Lock()
	p.closed = true
	p.wake.Broadcast()
	p.mu.Unlock()
	p.workersDone.Wait()
}

// hash returns a bcrypt hash of password at the pool's cost.
func (p *passwordHasher) hash(ctx context.Context, password string) (string, error) {
	var hash []byte
	var err error
	if doErr := p.do(ctx, func() {
		hash, err = bcrypt.GenerateFromPassword([]byte(password), p.cost)
	}); doErr != nil {
		return "", doErr
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// errMainThread is lowerThreadPriority refusing the process's main thread.
var errMainThread = errors.New("the main thread keeps its priority")

// errUnreadableHash is a stored hash that bcrypt cannot read.
var errUnreadableHash = errors.New("stored password hash is unreadable")

// compare reports whether password matches hash. A hash of any cost and
// any of the $2a$, $2b$ and $2y$ prefixes (passlib writes $2b$) is read.
// Only passwordMatches (auth.go) calls it, with a hash that
// unusablePasswordHash accepts: bcrypt would run any other at once, or
// for years.
func (p *passwordHasher) compare(ctx context.Context, hash, password string) (bool, error) {
	var err error
	if doErr := p.do(ctx, func() {
		err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	}); doErr != nil {
		return false, doErr
	}
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("compare password: %w: %w", errUnreadableHash, err)
	}
	return true, nil
}

// compareUnknown does for an unknown email the work that compare does for
// a known one: one bcrypt run at cost, against the dummy hash. If the
// dummy has another cost, because a dearer hash was stored since or the
// dearest went away, that run makes the new dummy instead: generating a
// hash costs what comparing one does, so this login takes no longer than
// the next, and no login ever pays for two.
func (p *passwordHasher) compareUnknown(ctx context.Context, cost int, password string) error {
	return p.do(ctx, func() {
		if d := p.dummy.Load(); d != nil && d.cost == cost {
			bcrypt.CompareHashAndPassword(d.hash, []byte(password))
			return
		}
		hash, err := bcrypt.GenerateFromPassword(dummyPassword, cost)
		if err != nil {
			return // not a cost from dummyCostFor; the old dummy stays
		}
		p.dummy.Store(&dummyHash{hash: hash, cost: cost})
	})
}

// maxStoredCost is the dearest stored hash a login compares against,
// unless BCRYPT_COST is set higher. Each step doubles the work: cost 12
// takes about 0.25 s of a CPU, cost 18 about 15 s, cost 31 about four
// years, so a dearer hash, which could only have been put there by hand,
// would hold a hashing slot far past any client's patience.
const maxStoredCost = 18

// maxUsableCost is the dearest stored hash that a login under BCRYPT_COST
// cost compares against: a dearer one is unusable.
func maxUsableCost(cost int) int { return max(cost, maxStoredCost) }

// bcryptAlphabet is the alphabet of bcrypt's own base64, in which a hash
// writes its salt and its digest.
const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// bcryptHashBytes is the length of every bcrypt hash: "$2b$", two digits
// of cost, "$", a salt of 22 characters and a digest of 31.
const bcryptHashBytes = 60

// unusablePasswordHash says why nobody can log in with hash, or returns ""
// if it has the whole shape of a bcrypt hash that a login will run:
// bcryptHashBytes long, "$2a$", "$2b$" or "$2y$", a cost of two digits
// from 4 to maxUsableCost(cost), "$", then characters of bcryptAlphabet
// alone. The whole shape is checked, before bcrypt runs, because
// bcrypt.Cost reads only the prefix and the cost: a hash whose salt is
// broken passes it, and then fails in bcrypt at once, so that a login of
// that account would answer far faster than any other, and the near
// instant job would pull down the measure the hashing queue is judged by.
// A hash that passes runs a whole compare. The reason never shows the hash.
func unusablePasswordHash(hash string, cost int) string {
	if len(hash) != bcryptHashBytes {
		return fmt.Sprintf("not a bcrypt hash: %d bytes, where bcrypt writes %d", len(hash), bcryptHashBytes)
	}
	if prefix := hash[:4]; prefix != "$2a$" && prefix != "$2b$" && prefix != "$2y$" {
		return "not a bcrypt hash: it does not start with $2a$, $2b$ or $2y$"
	}
	tens, units := hash[4], hash[5]
	if tens < '0' || tens > '9' || units < '0' || units > '9' || hash[6] != '$' {
		return "not a bcrypt hash: no cost of two digits"
	}
	switch stored := int(tens-'0')*10 + int(units-'0'); {
	case stored < bcrypt.MinCost:
		return fmt.Sprintf("bcrypt cost %d is under %d", stored, bcrypt.MinCost)
	case stored > maxUsableCost(cost):
		return fmt.Sprintf("bcrypt cost %d is over %d", stored, maxUsableCost(cost))
	}
	for _, c := range []byte(hash[7:]) {
		if strings.IndexByte(bcryptAlphabet, c) < 0 {
			return "not a bcrypt hash: its salt or digest holds a character outside bcrypt's alphabet"
		}
	}
	return ""
}
