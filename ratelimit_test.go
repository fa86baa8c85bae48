// ratelimit_test.go tests ratelimit.go: the per-key rate limiter.
package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateLimiterForgetsIdleClients(t *testing.T) {
	clock := newTestClock()
	l := newRateLimiter(2, time.Minute, clock.Now)
	for i := range 100 {
		l.take(fmt.Sprintf("client-%d", i))
	}
	if len(l.buckets) != 100 {
		t.Fatalf("%d buckets kept for the 100 clients just seen, want 100", len(l.buckets))
	}
	clock.advance(2 * time.Minute)
	l.take("late")
	if len(l.buckets) != 1 {
		t.Errorf("%d buckets kept after every client went idle, want 1", len(l.buckets))
	}
	t.Run("but not one with an attempt still pending", func(t *testing.T) {
		settle, _, err := l.reserve(t.Context(), "pending")
		if err != nil || settle == nil {
			t.Fatalf("reserve = %v, want an attempt", err)
		}
		clock.advance(2 * time.Minute)
		l.take("later")
		if _, ok := l.buckets["pending"]; !ok {
			t.Error("the bucket of a pending attempt was forgotten")
		}
		settle(false)
		clock.advance(2 * time.Minute)
		l.take("later")
		if _, ok := l.buckets["pending"]; ok {
			t.Error("the bucket was kept after its attempt settled and it refilled")
		}
	})
	if newRateLimiter(0, time.Minute, time.Now) != nil {
		t.Error("a limit of 0 should turn the limiter off")
	}
}

// handleRefresh asks wait before a refresh and takes only once it has
// succeeded, so that failures do not count.
func TestWaitSpendsNothingAndMakesNoBucket(t *testing.T) {
	l := newRateLimiter(refreshBurst, refreshBurst*refreshInterval, newTestClock().Now)
	if wait := l.wait("asked"); wait != 0 || len(l.buckets) != 0 {
		t.Fatalf("wait of a new key = %v, leaving %d buckets; want 0 and none", wait, len(l.buckets))
	}
	for i := range refreshBurst {
		for range 3 {
			if wait := l.wait("key"); wait != 0 {
				t.Fatalf("wait before take %d of a burst = %v, want 0", i+1, wait)
			}
		}
		if wait := l.take("key"); wait != 0 {
			t.Fatalf("take %d of a burst = %v, want 0", i+1, wait)
		}
	}
	if wait := l.wait("key"); wait != refreshInterval {
		t.Errorf("wait after a burst = %v, want %v", wait, refreshInterval)
	}
}

// The refresh limiter, as newServer makes it, keyed by session.
func TestTheRefreshLimiterForgetsIdleSessionsAndIsBounded(t *testing.T) {
	clock := newTestClock()
	l := newRateLimiter(refreshBurst, refreshBurst*refreshInterval, clock.Now)
	settle, _, err := l.reserve(t.Context(), "pending")
	if err != nil || settle == nil {
		t.Fatalf("reserve = %v, want an attempt", err)
	}
	// Every other bucket will be full a second later than the pending one,
	// which each eviction would pick whenever it is in its sample; as many
	// evictions as the bound make that all but certain.
	clock.advance(time.Second)
	for i := range 2 * maxLimiterKeys {
		l.take(fmt.Sprint(i))
		if n := len(l.buckets); n > maxLimiterKeys {
			t.Fatalf("the limiter keeps %d sessions, more than the bound %d", n, maxLimiterKeys)
		}
	}
	if n := len(l.buckets); n != maxLimiterKeys {
		t.Errorf("the limiter keeps %d sessions, want the bound %d", n, maxLimiterKeys)
	}
	if _, ok := l.buckets["pending"]; !ok {
		t.Error("the bucket of a pending attempt was evicted")
	}
	// A session kept in a full limiter keeps its count.
	for i := range refreshBurst {
		if wait := l.take("new"); wait != 0 {
			t.Fatalf("take %d of a burst in a full limiter = %v, want 0", i+1, wait)
		}
	}
	if wait := l.take("new"); wait != refreshInterval {
		t.Errorf("take past the burst in a full limiter = %v, want %v", wait, refreshInterval)
	}
	// A burst's time after its last refresh, a session is forgotten.
	settle(true)
	clock.advance(refreshBurst*refreshInterval + refreshInterval)
	l.take("late")
	if n := len(l.buckets); n != 1 {
		t.Errorf("the limiter keeps %d sessions after they were idle, want 1 (the one just seen)", n)
	}
}

func TestAReserveWaitsForThePendingAttemptsOfItsKey(t *testing.T) {
	clock := newTestClock() // a clock that stands still
	// The limiter reads the clock only with its lock held, so a reserve
	// that has read it and not answered waits in settled.Wait once the
	// lock can be had.
	var reads atomic.Int64
	l := newRateLimiter(1, time.Minute, func() time.Time { reads.Add(1); return clock.Now() })
	settle, _, err := l.reserve(t.Context(), "key")
	if err != nil || settle == nil {
		t.Fatalf("reserve = %v, want the one attempt", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ended, got := make(chan error, 1), make(chan func(bool), 1)
	for _, start := range []func(){
		func() { _, _, err := l.reserve(ctx, "key"); ended <- err },
		func() { s, _, _ := l.reserve(t.Context(), "key"); got <- s },
	} {
		before := reads.Load()
		go start()
		waitFor(t, "a reserve to read the clock", func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return reads.Load() > before
		})
	}
	l.mu.Lock()
	pending := l.buckets["key"].pending
	l.mu.Unlock()
	if pending != 1 || len(ended)+len(got) != 0 {
		t.Fatalf("a reserve answered while the key's one attempt was pending (%d pending), want it to wait", pending)
	}
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("a waiting reserve whose context ended = %v, want context.Canceled", err)
	}
	settle(false)
	if s := <-got; s == nil {
		t.Error("the attempt given back went to no waiting reserve")
	}
}
