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
	ctx, cancel := context.WithCancel(t.Context())
	ended := make(chan error, 1)
	go func() { _, _, err := l.reserve(ctx, "key"); ended <- err }()
	got := make(chan func(bool), 1)
	go func() { s, _, _ := l.reserve(t.Context(), "key"); got <- s }()
	time.Sleep(50 * time.Millisecond)
	if len(ended)+len(got) != 0 {
		t.Fatal("a reserve answered while the key's one attempt was pending, want it to wait")
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
