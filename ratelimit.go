// ratelimit.go owns the one rate limiter of the service, a token bucket
// per key; each limit (signups, failed logins, refreshes, recipe
// creations) is a rateLimiter of its own.
package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

const maxLimiterKeys = 1 << 16 // buckets kept at once, about 100 bytes each

const evictionSample = 8 // buckets a new key past maxLimiterKeys looks at

// rateLimiter is a token bucket per key: each holds up to limit attempts
// and regains one every period/limit. A bucket is kept as the time it will
// be full again (GCRA). Its memory is bounded twice: once per period the
// refilled buckets are forgotten, and past maxLimiterKeys a new key evicts,
// of evictionSample buckets picked at random, the one nearest to full;
// only a client with more keys than that, all spending at once, could win
// back part of an attempt.
type rateLimiter struct {
	interval  time.Duration // one attempt comes back in this time
	period    time.Duration // a whole bucket comes back in this time
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	full    time.Time     // when the bucket holds limit attempts again
	pending int           // attempts let through by reserve, not yet settled
	settled chan struct{} // closed, and cleared, when one of them settles
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

// wait is take without spending, for an attempt that counts only once it
// has succeeded, spent then with take.
func (l *rateLimiter) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.buckets[key]; b != nil {
		_, wait := l.fullAgain(b, l.now())
		return wait
	}
	return 0 // a key with no bucket has a full one; asking makes none
}

// reserve lets one attempt of key's through if it has one, and returns
// settle, to be called with the outcome: one settled as not spent is given
// back. If none is left, it returns a nil settle and the wait. A key whose
// remaining attempts are all pending waits (until ctx ends) for one to
// settle rather than being refused: a burst of right passwords from one
// address is served however large, and spent ones never outrun the budget.
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

// settle ends an attempt that reserve let through, and wakes those waiting.
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

// spend is take for b. l.mu is held.
func (l *rateLimiter) spend(b *bucket, now time.Time) time.Duration {
	full, wait := l.fullAgain(b, now)
	if wait == 0 {
		b.full = full
	}
	return wait
}

// fullAgain is when b would be full again if one more attempt were spent
// now, and how long until b holds that attempt. l.mu is held.
func (l *rateLimiter) fullAgain(b *bucket, now time.Time) (full time.Time, wait time.Duration) {
	full = b.full
	if full.Before(now) {
		full = now // a full bucket stays full until used
	}
	full = full.Add(l.interval)
	return full, max(0, full.Sub(now)-l.period)
}

// bucket is key's bucket, after the sweep if one is due. l.mu is held.
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

// evictOne forgets, of up to evictionSample buckets picked at random with
// no attempt pending, the one that will be full soonest. l.mu is held.
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
