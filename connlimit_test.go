// connlimit_test.go tests connlimit.go: the cap on open connections and
// each client's share of it.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// acceptIn runs l.Accept in a goroutine and returns where its result goes.
func acceptIn(l net.Listener) chan net.Conn {
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	return accepted
}

func TestTheConnectionLimiter(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConnections(inner, 2, nil)
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var served []net.Conn
	for range 2 {
		dial()
		select {
		case c := <-acceptIn(l):
			served = append(served, c)
		case <-time.After(5 * time.Second):
			t.Fatal("Accept did not return a connection while under the cap")
		}
	}
	dial()
	third := acceptIn(l)
	select {
	case <-third:
		t.Fatal("a third connection was accepted while two were open, with a cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(l.slots); n != 2 {
		t.Errorf("%d slots taken, want 2", n)
	}

	served[0].Close()
	served[0].Close() // a second Close must not give back a second slot
	select {
	case c := <-third:
		if c == nil {
			t.Fatal("Accept failed")
		}
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the third connection was not accepted once one closed")
	}
	if n := len(l.slots); n != 2 {
		t.Errorf("%d slots taken after one of three connections closed twice, want 2", n)
	}

	t.Run("closing the listener ends an Accept that waits for a slot", func(t *testing.T) {
		waiting := acceptIn(l)
		time.Sleep(50 * time.Millisecond)
		l.Close()
		select {
		case c := <-waiting:
			if c != nil {
				t.Error("Accept returned a connection after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Accept still waits after the listener was closed")
		}
	})
}

// TestMaxConnectionsCapsTheServer starts the program with
// -max-connections 1: while one client holds a connection open, another
// is not served; once it closes, the other is.
func TestMaxConnectionsCapsTheServer(t *testing.T) {
	addr := freeLoopbackAddress(t)
	env := map[string]string{"BCRYPT_COST": "4"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-db", filepath.Join(t.TempDir(), "app.db"), "-max-connections", "1"},
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitForHealthy(t, "http://"+addr)
	http.DefaultClient.CloseIdleConnections() // waitForHealthy's, which would hold the one slot

	holder, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	fmt.Fprintf(holder, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // served, then kept alive
	resp, err := http.ReadResponse(bufio.NewReader(holder), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the first connection was not served: %v", err)
	}

	answered := make(chan error, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a second connection was served (%v) while the first was open, with -max-connections 1", err)
	case <-time.After(300 * time.Millisecond):
	}
	holder.Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Errorf("the second connection, once the first closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second connection was not served after the first closed")
	}
}

func TestOneClientHoldsOnlyItsShareOfTheConnections(t *testing.T) {
	// A cap of 32 gives each client address 8. The loopback range is all
	// this machine's, so 127.0.0.2 is a second client.
	share := perClientShare(32)
	if share != 8 {
		t.Fatalf("perClientShare(32) = %d, want 8", share)
	}
	for _, tc := range []struct {
		name   string
		exempt func(netip.Addr) bool
		want   bool // whether the connection past the share is served
	}{
		{"a connection past a client's share is closed, and others are served", nil, false},
		{"a trusted proxy has no share", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			l := limitConnections(inner, 32, tc.exempt)
			defer l.Close()
			dialFrom := func(local string) net.Conn {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
				c, err := d.Dial("tcp", inner.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			accept := func() net.Conn {
				t.Helper()
				select {
				case c := <-acceptIn(l):
					if c == nil {
						t.Fatal("Accept failed")
					}
					t.Cleanup(func() { c.Close() })
					return c
				case <-time.After(5 * time.Second):
					t.Fatal("Accept returned nothing")
				}
				return nil
			}
			for range share {
				dialFrom("127.0.0.1")
				accept()
			}
			// Accept takes the extra connection first; if it closes it,
			// the next one it returns is the other client's.
			extra := dialFrom("127.0.0.1")
			dialFrom("127.0.0.2")
			next := accept()
			servedExtra := next.RemoteAddr().(*net.TCPAddr).IP.Equal(net.ParseIP("127.0.0.1"))
			if !servedExtra {
				// The extra one was closed by Accept: its client reads EOF.
				extra.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := extra.Read(make([]byte, 1)); err == nil {
					t.Error("the connection past the share was neither served nor closed")
				}
			} else {
				accept() // the other client's
			}
			if servedExtra != tc.want {
				t.Errorf("connection %d from one client served = %v, want %v", share+1, servedExtra, tc.want)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if n := len(l.open); n > 2 {
				t.Errorf("the share map holds %d clients, want at most the 2 with open connections", n)
			}
		})
	}
}
