// ratelimit.go owns the one rate limiter of the service, a token bucket
// per key; each limit (signups, failed logins, refreshes, recipe
// creations) is a rateLimiter of its own.
package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"sync"
	"time"
)

const (
	maxLimiterKeys = 1 << 16 // buckets kept at once, about 100 bytes each
	evictionSample = 8       // buckets a new key past maxLimiterKeys looks at
)

// rateLimiter is a token bucket per key: each holds up to limit attempts
// and regains one every period/limit, kept as the time it will be full
// again (GCRA). Once per period the refilled buckets are forgotten; past
// maxLimiterKeys a new key evicts, of evictionSample random buckets, the
// one nearest to full, so only a client with more keys than that could win
// back part of an attempt.
type rateLimiter struct {
	interval  time.Duration // one attempt comes back in this time
	period    time.Duration // a whole bucket comes back in this time
	now       func() time.Time
	mu        sync.Mutex
	settled   sync.Cond // on mu: an attempt of reserve's settled, or its ctx ended
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	full    time.Time // when the bucket holds limit attempts again
	pending int       // attempts let through by reserve, not yet settled
}

// newRateLimiter returns nil, no limit, if limit is 0.
func newRateLimiter(limit int, period time.Duration, now func() time.Time) *rateLimiter {
	if limit <= 0 {
		return nil
	}
	l := &rateLimiter{interval: period / time.Duration(limit), period: period, now: now,
		buckets: map[string]*bucket{}, lastSweep: now()}
	l.settled.L = &l.mu
	return l
}

// take spends one attempt of key's, and returns 0 if it had one, or else
// how long until it will.
func (l *rateLimiter) take(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempt(l.bucket(key), true)
}

// wait is take without spending, for an attempt that counts only once it
// has succeeded, spent then with take.
func (l *rateLimiter) wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempt(cmp.Or(l.buckets[key], &bucket{}), false) // asking makes no bucket
}

// reserve is take for an attempt whose outcome decides: settle gives it
// back unless spent, and is nil if none is left. With all its remaining
// attempts pending, a key waits for one to settle (or ctx), not refused: a
// burst of right passwords is served, and spent ones never outrun the budget.
func (l *rateLimiter) reserve(ctx context.Context, key string) (settle func(spent bool), wait time.Duration, err error) {
	defer context.AfterFunc(ctx, func() { l.mu.Lock(); l.settled.Broadcast(); l.mu.Unlock() })()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		b := l.bucket(key)
		switch wait := l.attempt(b, true); {
		case wait == 0:
			b.pending++
			return func(spent bool) {
				l.mu.Lock()
				defer l.mu.Unlock()
				if b.pending--; !spent {
					b.full = b.full.Add(-l.interval)
				}
				l.settled.Broadcast()
			}, 0, nil
		case b.pending == 0:
			return nil, wait, nil
		case ctx.Err() != nil:
			return nil, 0, fmt.Errorf("wait for pending attempts: %w", ctx.Err())
		}
		l.settled.Wait()
	}
}

// attempt returns how long until b holds one more attempt, 0 if it holds
// one now, which spend then takes. l.mu is held.
func (l *rateLimiter) attempt(b *bucket, spend bool) time.Duration {
	now := l.now()
	full := b.full
	if full.Before(now) {
		full = now // a full bucket stays full until used
	}
	full = full.Add(l.interval)
	wait := max(0, full.Sub(now)-l.period)
	if wait == 0 && spend {
		b.full = full
	}
	return wait
}

// bucket is key's bucket, after the sweep if one is due; a new key past
// maxLimiterKeys evicts, of up to evictionSample buckets picked at random
// with no attempt pending, the one that will be full soonest. l.mu is held.
func (l *rateLimiter) bucket(key string) *bucket {
	if now := l.now(); now.Sub(l.lastSweep) >= l.period {
		maps.DeleteFunc(l.buckets, func(_ string, b *bucket) bool { return !b.full.After(now) && b.pending == 0 })
		l.lastSweep = now
	}
	if b := l.buckets[key]; b != nil {
		return b
	}
	victim, seen := "", 0
	for k, b := range l.buckets { // Go starts a map's range at random
		if len(l.buckets) < maxLimiterKeys || seen == evictionSample {
			break
		}
		if b.pending == 0 {
			if seen == 0 || b.full.Before(l.buckets[victim].full) {
				victim = k
			}
			seen++
		}
	}
	if seen > 0 {
		delete(l.buckets, victim)
	}
	l.buckets[key] = &bucket{}
	return l.buckets[key]
}
