// connlimit_test.go tests connlimit.go: the cap on open connections and
// each client's share of it.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// limiterOn caps a new loopback listener at n connections, with exempt
// as limitConnections takes it; the test's end closes it.
func limiterOn(t *testing.T, n int, exempt func(netip.Addr) bool) *limitedListener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConnections(inner, n, exempt)
	t.Cleanup(func() { l.Close() })
	return l
}

// dialFrom connects to l from the loopback address local.
func dialFrom(t *testing.T, l net.Listener, local string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// accept is what one call of Accept returned.
type accept struct {
	conn net.Conn
	err  error
}

// acceptIn runs l.Accept in a goroutine and returns where its answer goes.
func acceptIn(l net.Listener) chan accept {
	answer := make(chan accept, 1)
	go func() {
		c, err := l.Accept()
		answer <- accept{c, err}
	}()
	return answer
}

// accepted is the connection acceptIn returns, failing the test if Accept
// failed or returned none within 5 s.
func accepted(t *testing.T, from chan accept) net.Conn {
	t.Helper()
	select {
	case a := <-from:
		if a.err != nil {
			t.Fatalf("Accept: %v", a.err)
		}
		t.Cleanup(func() { a.conn.Close() })
		return a.conn
	case <-time.After(5 * time.Second):
		t.Fatal("Accept returned no connection within 5 s")
		return nil
	}
}

func TestTheConnectionLimiter(t *testing.T) {
	l := limiterOn(t, 2, nil)
	var clients, served []net.Conn
	for range 2 {
		clients = append(clients, dialFrom(t, l, "127.0.0.1"))
		served = append(served, accepted(t, acceptIn(l)))
	}
	dialFrom(t, l, "127.0.0.1")
	third := acceptIn(l)
	select {
	case <-third:
		t.Fatal("a third connection was accepted while two were open, with a cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	served[0].Close()
	served[0].Close() // a second Close must not give back a second slot
	accepted(t, third)
	if n := len(l.slots); n != 2 {
		t.Fatalf("%d slots taken after one of three connections closed twice, want 2", n)
	}

	// net/http half-closes before it closes after an error: the client
	// must read the end of the answer.
	if err := served[1].(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Errorf("CloseWrite: %v", err)
	}
	clients[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := clients[1].Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("the client of a half-closed connection read %v, want EOF", err)
	}

	// Every slot is taken: closing the listener ends an Accept that waits.
	waiting := acceptIn(l)
	waitFor(t, "Accept to wait for a slot", func() bool {
		// Blocked in the select on l.slots and l.closed: this Accept, of
		// this listener, named by its address as the receiver.
		return goroutines(func(stack string) bool {
			return strings.Contains(stack, " [select") && strings.Contains(stack, fmt.Sprintf(".(*limitedListener).Accept(%p", l))
		}) == 1
	})
	l.Close()
	select {
	case a := <-waiting:
		if a.conn != nil || !errors.Is(a.err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, %v; want no connection and net.ErrClosed", a.conn, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waits for a slot after the listener was closed")
	}
}

// TestMaxConnectionsCapsTheServer runs the service with MAX_CONNECTIONS=1,
// in a child process so that serving changes nothing in this one: while
// one client holds a connection open, another is not served; once it
// closes, the other is.
func TestMaxConnectionsCapsTheServer(t *testing.T) {
	// startChild's wait for /healthz closes its connection when done, so
	// that the slot is free again once the service has seen the close.
	_, base := startChild(t, "MAX_CONNECTIONS=1", "BCRYPT_COST=4", "DATABASE_PATH="+filepath.Join(t.TempDir(), "app.db"))
	// Each asks for /healthz, and is served or waits for a slot, with the
	// kernel's backlog holding it.
	dial := func() net.Conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		return c
	}
	answer := func(c net.Conn, within time.Duration) error {
		c.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	holder := dial()
	if err := answer(holder, 10*time.Second); err != nil {
		t.Fatalf("the first connection was not served: %v", err)
	}
	// It is kept alive, and holds the one slot.
	second := dial()
	if err := answer(second, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a second connection was answered (%v) while the first was open, with MAX_CONNECTIONS=1", err)
	}
	holder.Close()
	if err := answer(second, 10*time.Second); err != nil {
		t.Errorf("the second connection, once the first closed: %v", err)
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
		name     string
		exempt   func(netip.Addr) bool
		want     bool           // whether the connection past the share is served
		wantOpen map[string]int // the connections counted against each client's share
	}{
		{"a connection past a client's share is closed, and others are served", nil, false,
			map[string]int{"127.0.0.1": 8, "127.0.0.2": 1}},
		{"a trusted proxy has no share", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }, true,
			map[string]int{"127.0.0.2": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := limiterOn(t, 32, tc.exempt)
			for range share {
				dialFrom(t, l, "127.0.0.1")
				accepted(t, acceptIn(l))
			}
			// Accept takes the extra connection first; if it closes it,
			// the next one it returns is the other client's.
			extra := dialFrom(t, l, "127.0.0.1")
			dialFrom(t, l, "127.0.0.2")
			servedExtra := accepted(t, acceptIn(l)).RemoteAddr().(*net.TCPAddr).IP.Equal(net.ParseIP("127.0.0.1"))
			if servedExtra {
				accepted(t, acceptIn(l)) // the other client's
			} else {
				// Closed by Accept: its client reads EOF.
				extra.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Errorf("the connection past the share was neither served nor closed: read %v, want EOF", err)
				}
			}
			if servedExtra != tc.want {
				t.Errorf("connection %d from one client served = %v, want %v", share+1, servedExtra, tc.want)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if !maps.Equal(l.open, tc.wantOpen) {
				t.Errorf("open connections by client = %v, want %v", l.open, tc.wantOpen)
			}
		})
	}
}
