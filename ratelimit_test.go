// ratelimit_test.go tests ratelimit.go: the per-key rate limiter.
package main

import (
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
