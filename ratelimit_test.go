// ratelimit_test.go tests ratelimit.go: the per-key rate limiter.
package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRateLimiterForgetsIdleClients(t *testing.T) {
	clock := newTestClock()
	l := newRateLimiter(2, time.Minute, clock.Now)
	for i := range 100 {
		l.take(fmt.Sprintf("client-%d", i))
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

func TestAReserveWaitsForThePendingAttemptsOfItsKey(t *testing.T) {
	l := newRateLimiter(1, time.Minute, newTestClock().Now) // a clock that stands still
	settle, _, err := l.reserve(t.Context(), "key")
	if err != nil || settle == nil {
		t.Fatalf("reserve = %v, want the one attempt", err)
	}
	// waiting reserves in the background; its answer comes on the channel.
	waiting := func(t *testing.T, ctx context.Context) chan func(bool) {
		t.Helper()
		got := make(chan func(bool), 1)
		go func() {
			s, _, err := l.reserve(ctx, "key")
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("reserve = %v, want nil or context.Canceled", err)
			}
			got <- s
		}()
		select {
		case <-got:
			t.Fatal("reserve answered while the key's one attempt was pending, want it to wait")
		case <-time.After(50 * time.Millisecond):
		}
		return got
	}

	t.Run("it ends, with no attempt, when its context does", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		got := waiting(t, ctx)
		cancel()
		if s := <-got; s != nil {
			t.Error("a reserve whose context ended got an attempt")
		}
	})
	t.Run("it gets the attempt that a settle gives back", func(t *testing.T) {
		got := waiting(t, t.Context())
		settle(false)
		if s := <-got; s == nil {
			t.Error("the attempt given back went to no waiting reserve")
		}
	})
}
