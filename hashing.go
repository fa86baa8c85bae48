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
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
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
// by a count: a job is admitted if it would start within maxWait, judged
// by the measured time of recent hashes and by how long the running jobs
// have run already (expectedWait); past that the client gets 503 with
// Retry-After set to that wait. A burst of honest logins is therefore
// served in turn, and only a backlog of more than maxWait of hashing is
// refused. Every wait of a request is bounded (see do): in the queue by
// maxWait, whatever runs in front of it, and by the request's end; for a
// worker's job by the one bcrypt run it is, at a usable cost; and close
// waits at most maxCloseWait.
type passwordHasher struct {
	cost    int           // of new hashes
	workers int           // threads hashing at once
	maxWait time.Duration // the longest expected wait admitted, and the longest a job stays queued

	mu       sync.Mutex
	wake     sync.Cond          // on mu: a job was queued, or the pool is closing
	queue    list.List          // of *hashJob, waiting for a worker
	running  map[*hashJob]bool  // the jobs the workers are running now, at most workers
	hashTime time.Duration      // moving average of recent jobs' durations
	now      func() time.Time   // when jobs start and end; read with mu held, so that a test may set it
	closed   bool               // no more work; workers end once their job has
	laterCtx context.Context    // of the work later runs; ends with close
	endLater context.CancelFunc // ends laterCtx

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
	waiting *list.Element // its place in the queue; nil once a worker took it, or it left
	started time.Time     // when a worker took it
	err     error         // errHashersBusy if the pool closed before a worker took it
	done    chan struct{} // closed when run has returned, or err is set
}

// dummyHash is a bcrypt hash of a password nobody has, and its cost.
type dummyHash struct {
	hash []byte
	cost int
}

const (
	// maxHashingWait bounds how long a request may expect to wait for
	// hashing; longer, and it is refused at once with 503. It also
	// bounds how long a job may stay queued, should the estimate be
	// wrong. Fifteen seconds lets a burst of 40 signups at cost 12
	// through on two CPUs (about 0.3 s a hash, 5.7 s for the last) even
	// when another load on the machine makes each hash take twice as
	// long, and is well within the patience of an HTTP client and the
	// server's 60 s write timeout.
	maxHashingWait = 15 * time.Second
	// minHashTime is the least a hash is taken to cost when the queue is
	// judged. bcrypt's cheapest cost takes about a millisecond, so this
	// changes no real estimate; it makes the queue's length bounded
	// outright: at most workers × (maxWait/minHashTime + 1) jobs.
	minHashTime = 500 * time.Microsecond
	// maxCloseWait bounds how long close waits for a worker still
	// running a job, which nothing can stop midway; the thread ends when
	// the job does, or with the process.
	maxCloseWait = time.Second
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
	p := &passwordHasher{cost: cost, workers: hashingWorkers(), maxWait: maxHashingWait,
		running: map[*hashJob]bool{}, now: time.Now}
	p.wake.L = &p.mu
	p.laterCtx, p.endLater = context.WithCancel(context.Background())
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
	dummy, err := dummyCost(ctx, st, cost)
	if err != nil {
		return nil, err
	}
	p := newPasswordHasher(cost)
	if err := p.compareUnknown(ctx, dummy, ""); err != nil {
		p.close()
		return nil, fmt.Errorf("make the dummy hash: %w", err)
	}
	return p, nil
}

// work is one worker: it takes jobs from the queue, oldest first, until
// the pool is closed.
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
		if p.closed {
			return
		}
		job := p.queue.Remove(p.queue.Front()).(*hashJob)
		job.waiting = nil
		job.started = p.now()
		p.running[job] = true
		p.mu.Unlock()

		job.run()

		p.mu.Lock()
		delete(p.running, job)
		took := p.now().Sub(job.started)
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

// expectedWait is how long a job queued now would wait for a worker. Each
// worker is taken to be free once its job is expected to end
// (expectedRemaining), an idle one now; from then on it takes the queued
// jobs, oldest first, one hash each. The new job starts at the earliest
// time by which every job ahead of it, and it, can have started, found by
// bisection: about 40 rounds of one step per worker. p.mu is held.
func (p *passwordHasher) expectedWait() time.Duration {
	hash := max(p.hashTime, minHashTime)
	now := p.now()
	free := make([]time.Duration, p.workers) // idle workers are free now
	i := 0
	for job := range p.running {
		free[i] = expectedRemaining(now.Sub(job.started), hash)
		i++
	}
	// startsBy is how many jobs can have started within t.
	startsBy := func(t time.Duration) int {
		n := 0
		for _, f := range free {
			if f <= t {
				n += int((t-f)/hash) + 1
			}
		}
		return n
	}
	ahead := p.queue.Len()
	// The soonest free worker alone would have started them all by hi.
	lo, hi := time.Duration(0), slices.Min(free)+time.Duration(ahead)*hash
	for lo < hi {
		mid := lo + (hi-lo)/2
		if startsBy(mid) > ahead {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// expectedRemaining is how much longer a job that has run for ran is
// expected to run, when a hash takes hash on average: the rest of the
// average; or, once it has run past the average, as long again as it has
// run, since then all that is known of its end is that it is late, and
// the longer it has run the later it is likely to end. So a worker held
// far past the average (a dearer hash than most, a starved CPU, or a job
// that never ends) counts as busy for as long again, and a queue that
// only it could serve is refused at once rather than left to time out.
func expectedRemaining(ran, hash time.Duration) time.Duration {
	if ran < hash {
		return hash - ran
	}
	return ran
}

// do runs fn on a hashing worker and returns once it has run. Every wait
// in it is bounded:
//   - It refuses at once, with 503 and the expected wait as Retry-After,
//     if that wait is over maxWait (expectedWait), or if the pool is
//     closed.
//   - A job still queued after maxWait leaves with 503, the estimate
//     having been wrong: whatever runs in front of it, a request waits no
//     longer than that for a worker. It also leaves if ctx ends, or with
//     503 if the pool closes.
//   - Once a worker has taken the job, do waits for it to end, which the
//     one bcrypt run it is bounds (at a usable cost, unusablePasswordHash),
//     or for ctx to end, whichever comes first. The job cannot be stopped
//     midway: if ctx ends first, do returns while fn still runs, and the
//     caller must not read what fn writes.
//
// The wait in the queue is measured in real time, whatever p.now says.
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
	queueBound := time.NewTimer(p.maxWait)
	defer queueBound.Stop()
	p.wake.Signal()
	p.mu.Unlock()

	select {
	case <-job.done:
		return job.err
	case <-ctx.Done():
	case <-queueBound.C:
	}
	p.mu.Lock()
	if job.waiting != nil { // still queued: leave
		p.queue.Remove(job.waiting)
		job.waiting = nil
		retry := max(p.expectedWait(), time.Second)
		p.mu.Unlock()
		if ctx.Err() != nil {
			return fmt.Errorf("wait to hash: %w", ctx.Err())
		}
		return errHashersBusy.retryIn(retry)
	}
	p.mu.Unlock()
	select { // a worker has it already: one hash, and its result is ours
	case <-job.done:
		return job.err
	case <-ctx.Done():
		return fmt.Errorf("wait for a hash: %w", ctx.Err())
	}
}

// later runs fn in the background, for work a request leaves behind once
// it has answered (rehashLater), with a context that close ends. close
// waits for it. It reports false, and runs nothing, once the pool is
// closed.
func (p *passwordHasher) later(fn func(ctx context.Context)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.laterDone.Go(func() { fn(p.laterCtx) })
	return true
}

// close stops the pool. It refuses new work; the jobs still queued leave
// with 503; the work started by later has its context ended, so that its
// hashing and its writes give up at once; idle workers end. Then it waits
// for that work to return and for the workers to end, but at most
// maxCloseWait: a worker still running a job ends when the job does,
// since nothing can stop bcrypt midway, and the process need not wait for
// it. Closing again does no harm.
func (p *passwordHasher) close() {
	p.mu.Lock()
	p.closed = true
	for e := p.queue.Front(); e != nil; e = e.Next() {
		job := e.Value.(*hashJob)
		job.waiting, job.err = nil, errHashersBusy
		close(job.done)
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
	bound := time.NewTimer(maxCloseWait)
	defer bound.Stop()
	select {
	case <-stopped:
	case <-bound.C:
	}
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
			return // not a cost from dummyCost; the old dummy stays
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

// passwordMatches reports whether password is that of u, against whose
// stored hash it is checked; u is nil for an unknown email. It is the one
// check of a password: login, password change and any later path go
// through it, so that all follow the same rules, and each costs one bcrypt
// run on the hashing pool whatever the outcome:
//   - A usable stored hash (unusablePasswordHash) is compared at its own
//     cost.
//   - An unknown email, and a stored hash that nobody can log in with (a
//     cost the service will not run, no bcrypt hash at all, a broken
//     salt), are compared against the dummy hash instead, at the cost of
//     the dearest usable stored hash (dummyCost), and never match: the
//     same answer in the same time, so that neither tells an account
//     apart, and never the unusable hash's own work (cost 31 would hold a
//     worker for years; a broken salt would fail at once). An unusable
//     hash is logged, once per user.
//   - Should bcrypt still refuse a hash that looked usable, the answer and
//     the log are the same.
func (a *app) passwordMatches(ctx context.Context, u *user, password string) (bool, error) {
	unusable := ""
	if u != nil {
		unusable = unusablePasswordHash(u.HashedPassword, a.passwords.cost)
	}
	if u == nil || unusable != "" {
		cost, err := dummyCost(ctx, a.store, a.passwords.cost)
		if err != nil {
			return false, err
		}
		if err := a.passwords.compareUnknown(ctx, cost, password); err != nil {
			return false, err
		}
		if unusable != "" {
			a.logUnusableHash(u.ID, unusable)
		}
		return false, nil
	}
	ok, err := a.passwords.compare(ctx, u.HashedPassword, password)
	if errors.Is(err, errUnreadableHash) {
		a.logUnusableHash(u.ID, err.Error())
		return false, nil
	}
	return ok, err
}

// rehashLater replaces u's stored hash with one at BCRYPT_COST if it is
// cheaper, as passlib's needs_update and Django do, now that a login has
// shown password to be right. It runs once the answer is written, on the
// hashing pool like any hash, so the client waits for nothing more. The
// hash is replaced only if it is still the one the login checked: a
// password change meanwhile wins. The password is the same, so sessions
// and the token generation are left alone. If the pool is too busy, the
// hash stays as it was until a later login.
func (a *app) rehashLater(u user, password string) {
	cost, err := bcrypt.Cost([]byte(u.HashedPassword))
	if err != nil || cost >= a.passwords.cost {
		return
	}
	a.passwords.later(func(ctx context.Context) {
		hash, err := a.passwords.hash(ctx, password)
		if err != nil {
			a.logger.Info("password not rehashed yet", "user_id", u.ID, "err", err)
			return
		}
		replaced, err := a.store.replacePasswordHash(ctx, u.ID, u.HashedPassword, hash)
		if err != nil {
			a.logger.Warn("password not rehashed", "user_id", u.ID, "err", err)
			return
		}
		if replaced {
			a.logger.Info("password rehashed", "user_id", u.ID, "from_cost", cost, "to_cost", a.passwords.cost)
		}
	})
}

// maxLoggedUnusableHashes bounds unusableHashLog: the log names the first
// ones, and then says that it names no more.
const maxLoggedUnusableHashes = 1000

// unusableHashLog remembers which users' unusable password hashes have
// been logged, so that each is logged once however often someone tries to
// log in as that user, and the log cannot be flooded through it.
type unusableHashLog struct {
	mu     sync.Mutex
	logged map[int64]bool
	full   bool // maxLoggedUnusableHashes are logged, and that was said
}

func (a *app) logUnusableHash(userID int64, reason string) {
	l := &a.unusableHashes
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged == nil {
		l.logged = map[int64]bool{}
	}
	switch {
	case l.logged[userID] || l.full:
		return
	case len(l.logged) == maxLoggedUnusableHashes:
		l.full = true
		a.logger.Warn("more users have unusable password hashes; they are no longer logged")
		return
	}
	l.logged[userID] = true
	a.logger.Warn("stored password hash is unusable: this user cannot log in until given a new password, "+
		"for instance with createsuperuser", "user_id", userID, "reason", reason)
}

const highestCostQuery = `SELECT substr(hashed_password, 5, 2) FROM user
	WHERE substr(hashed_password, 5, 2) BETWEEN '04' AND ? AND hashed_password GLOB '$2[abxy]$[0-9][0-9]$*'
	ORDER BY substr(hashed_password, 5, 2) DESC LIMIT 1`

// dummyCost is the one rule for what a login pays when it has no usable
// hash to compare against (an unknown email, an unusable hash): the cost of
// the dearest usable stored hash, read from the index user_password_cost at
// each such login, so that no account answers slower than an unknown email
// and a hash written by another process counts at once; cost if none is
// stored. Only $2a$, $2b$, $2x$ and $2y$ hashes are counted.
func dummyCost(ctx context.Context, st *store, cost int) (int, error) {
	var stored string
	err := st.reader.QueryRowContext(ctx, highestCostQuery, fmt.Sprintf("%02d", maxUsableCost(cost))).Scan(&stored)
	if errors.Is(err, sql.ErrNoRows) {
		return cost, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read password costs: %w", err)
	}
	n, _ := strconv.Atoi(stored)
	return n, nil
}
