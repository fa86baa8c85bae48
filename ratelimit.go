// ratelimit.go owns the one rate limiter of the service, a token bucket
// per key. Each limit is a rateLimiter of its own: signups, and failed
// logins and password changes, per client address (auth.go); refreshes
// per session (sessions.go); recipe creations per account (recipes.go).
package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// maxLimiterKeys bounds the buckets a rateLimiter keeps at once, about a
// hundred bytes each: a few MiB at most.
const maxLimiterKeys = 1 << 16

// evictionSample is how many buckets a new key past maxLimiterKeys looks
// at to choose the one to evict.
const evictionSample = 8

// rateLimiter is a token bucket per key: each holds up to the limit given
// to newRateLimiter and regains one attempt every period/limit, so a key
// may burst to the limit and then
// go on at the steady rate. A bucket is kept as the time at which it will
// be full again (GCRA), which is exact in whole nanoseconds. It is safe
// for concurrent use.
//
// Its memory is bounded twice. Once per period, the buckets that have
// refilled, with no attempt pending, are forgotten, so the map holds only
// the keys active within the last period. And it holds at most
// maxLimiterKeys buckets with no attempt pending: past that a new key
// evicts, of evictionSample buckets picked at random, the one nearest to
// full, which then starts full again. A bucket that has refilled is
// always nearest; only a client holding more than maxLimiterKeys
// addresses (or sessions), all of them spending at once, can win back a
// part of an attempt that way, and it has more attempts than that in its
// own buckets anyway.
type rateLimiter struct {
	interval  time.Duration // one attempt comes back in this time
	period    time.Duration // a whole bucket comes back in this time
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	full time.Time // when the bucket holds limit attempts again
	// pending counts attempts let through by reserve whose outcome is not
	// known yet; settled is closed, and cleared, when one of them ends.
	pending int
	settled chan struct{}
}

// newRateLimiter returns nil, no limit, if limit is 0.
func newRateLimiter(limit int, period time.Duration, now func() time.Time) *rateLimiter {
	if limit <= 0 {
		return nil
	}
	return &rateLimiter{interval: period / time.Duration(limit), period: period, now: now,
		buckets: map[string]*bucket{}, lastSweep: now()}
}

// take spends one attempt of key's, and returns 0 if it had one, or else
// how long until it will.
func (l *rateLimiter) take(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	return l.spend(l.bucket(key, now), now)
}

// wait returns 0 if key has an attempt to spend, or else how long until
// it will, and spends nothing: for an attempt that counts only once it
// has succeeded, spent then with take.
func (l *rateLimiter) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return 0 // a key with no bucket has a full one; asking makes none
	}
	_, wait := l.fullAgain(b, l.now())
	return wait
}

// reserve lets one attempt of key's through if it has one to spend, and
// returns settle, to be called once with the outcome: an attempt settled
// as spent stays spent, any other is given back. If the key has none,
// reserve returns a nil settle and how long until it will have one.
//
// While attempts are pending, their outcome is not known: a key whose
// remaining attempts are all pending waits for one to settle, since it
// may be given back, rather than being refused. So a burst of attempts
// that will be given back (right passwords from one address) is served
// however large, while spent ones never outrun the budget: at most as
// many attempts are pending as the key has left. The wait ends with ctx,
// and otherwise when a pending attempt ends.
func (l *rateLimiter) reserve(ctx context.Context, key string) (func(spent bool), time.Duration, error) {
	for {
		l.mu.Lock()
		now := l.now()
		b := l.bucket(key, now)
		wait := l.spend(b, now)
		if wait == 0 {
			b.pending++
			l.mu.Unlock()
			return func(spent bool) { l.settle(b, spent) }, 0, nil
		}
		if b.pending == 0 {
			l.mu.Unlock()
			return nil, wait, nil
		}
		if b.settled == nil {
			b.settled = make(chan struct{})
		}
		settled := b.settled
		l.mu.Unlock()
		select {
		case <-settled:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("wait for pending attempts: %w", ctx.Err())
		}
	}
}

// settle ends an attempt that reserve let through: one not spent is given
// back; either way, an attempt waiting on b may look again.
func (l *rateLimiter) settle(b *bucket, spent bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b.pending--
	if !spent {
		b.full = b.full.Add(-l.interval)
	}
	if b.settled != nil {
		close(b.settled)
		b.settled = nil
	}
}

// spend takes one attempt from b and returns 0, or, if b has none,
// returns how long until it will. l.mu is held.
func (l *rateLimiter) spend(b *bucket, now time.Time) time.Duration {
	full, wait := l.fullAgain(b, now)
	if wait == 0 {
		b.full = full
	}
	return wait
}

// fullAgain is when b would be full again if one more attempt were spent
// now, and how long until b holds that attempt: 0 if it does now, since
// the bucket would be full again at most one period away. l.mu is held.
func (l *rateLimiter) fullAgain(b *bucket, now time.Time) (full time.Time, wait time.Duration) {
	full = b.full
	if full.Before(now) {
		full = now // a full bucket stays full until used
	}
	full = full.Add(l.interval)
	return full, max(0, full.Sub(now)-l.period)
}

// bucket is key's bucket. l.mu is held.
func (l *rateLimiter) bucket(key string, now time.Time) *bucket {
	if now.Sub(l.lastSweep) >= l.period {
		for k, b := range l.buckets {
			if !b.full.After(now) && b.pending == 0 {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiterKeys {
			l.evictOne()
		}
		b = &bucket{}
		l.buckets[key] = b
	}
	return b
}

// evictOne forgets, of up to evictionSample buckets with no attempt
// pending, picked at random, the one that will be full soonest. l.mu is
// held.
func (l *rateLimiter) evictOne() {
	victim, seen := "", 0
	var victimFull time.Time
	for k, b := range l.buckets { // Go starts a map's range at random
		if b.pending > 0 {
			continue
		}
		if seen == 0 || b.full.Before(victimFull) {
			victim, victimFull = k, b.full
		}
		if seen++; seen == evictionSample {
			break
		}
	}
	if seen > 0 {
		delete(l.buckets, victim)
	}
}
