// connlimit.go owns the cap on open connections (MAX_CONNECTIONS). Each
// connection costs the server memory (buffers, a goroutine, the request
// being read) even before a handler runs, so the number open at once is
// bounded: past the cap, Accept waits until a connection closes, and the
// kernel's listen backlog holds the callers meanwhile. An idle keep-alive
// connection counts until the server closes it (IdleTimeout), as a busy
// one does.
//
// One client may hold only a share of the cap (perClientShare), so that
// it cannot fill the cap with idle connections and shut everyone else
// out; a connection past its share is closed at once. Trusted proxies
// carry many clients' connections and are exempt.
//
// golang.org/x/net/netutil.LimitListener does the first part, but this
// module depends on nothing beyond bcrypt and the SQLite driver.
package main

import (
	"net"
	"net/netip"
	"sync"
)

// perClientShare is the part of the cap one client address (as
// addressGroup counts them) may hold: a sixteenth, and at least 8.
func perClientShare(n int) int { return max(8, n/16) }

// limitedListener is a net.Listener with at most cap(slots) accepted
// connections open at once, and at most perClient of them from one
// client address.
type limitedListener struct {
	net.Listener
	slots     chan struct{} // one element per open connection
	closed    chan struct{} // closed by Close, to free an Accept that waits
	closeOnce sync.Once

	perClient int
	exempt    func(netip.Addr) bool // trusted proxies: no share
	mu        sync.Mutex
	open      map[string]int // open connections by client; no zero entries
}

// limitConnections caps l at n open connections, perClientShare(n) from
// one client; exempt says which addresses (trusted proxies) have no share.
func limitConnections(l net.Listener, n int, exempt func(netip.Addr) bool) *limitedListener {
	return &limitedListener{Listener: l, slots: make(chan struct{}, n), closed: make(chan struct{}),
		perClient: perClientShare(n), exempt: exempt, open: map[string]int{}}
}

// Accept waits for a free slot, then for a connection, which gives its
// slot back when it is closed. A connection from a client that holds its
// share already is closed, and Accept waits for the next.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		client, ok := l.take(c.RemoteAddr())
		if !ok {
			c.Close()
			<-l.slots
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.give(client); <-l.slots }}, nil
	}
}

// take counts a connection from remote against its client's share, and
// reports false, counting nothing, if the share is used up. An address
// that is not IP (a Unix socket, say) or a trusted proxy counts as "".
func (l *limitedListener) take(remote net.Addr) (client string, ok bool) {
	if addrPort, err := netip.ParseAddrPort(remote.String()); err == nil {
		if addr := addrPort.Addr().Unmap(); l.exempt == nil || !l.exempt(addr) {
			client = addressGroup(addr)
		}
	}
	if client == "" {
		return "", true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client] >= l.perClient {
		return "", false
	}
	l.open[client]++
	return client, true
}

// give counts a connection of client's as closed.
func (l *limitedListener) give(client string) {
	if client == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[client]--; l.open[client] == 0 {
		delete(l.open, client) // so the map holds only clients with open connections
	}
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn is a connection holding a slot of its listener; the slot is
// given back once, however many times Close is called.
type limitedConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// CloseWrite passes through to a TCP connection: net/http half-closes a
// connection before closing it after an error (a 413, say), so that the
// client reads the answer before the close resets the connection.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil // nothing to half-close; Close follows
}
