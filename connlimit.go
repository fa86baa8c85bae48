// connlimit.go owns the cap on open connections (MAX_CONNECTIONS), idle
// or busy: each costs memory before a handler runs. Past the cap, Accept
// waits for a close and the kernel's backlog holds the callers. One client
// may hold only perClientShare of it, so that idle connections cannot shut
// everyone else out; trusted proxies are exempt.
package main

import (
	"net"
	"net/netip"
	"sync"
)

// perClientShare is the part of the cap one client address (as
// addressGroup counts them) may hold: a sixteenth, and at least 8.
func perClientShare(n int) int { return max(8, n/16) }

type limitedListener struct {
	net.Listener
	slots     chan struct{} // one element per open connection
	closed    chan struct{} // closed by Close, to free an Accept that waits
	closeOnce sync.Once
	exempt    func(netip.Addr) bool // trusted proxies: no share
	mu        sync.Mutex
	open      map[string]int // open connections by client; no zero entries
}

// limitConnections caps l at n open connections, perClientShare(n) from
// one client; exempt says which addresses (trusted proxies) have no share.
func limitConnections(l net.Listener, n int, exempt func(netip.Addr) bool) *limitedListener {
	return &limitedListener{Listener: l, slots: make(chan struct{}, n), closed: make(chan struct{}),
		exempt: exempt, open: map[string]int{}}
}

// Accept waits for a free slot, then for a connection; one from a client
// that holds its share already is closed at once.
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
		if client, ok := l.take(c.RemoteAddr()); ok {
			return &limitedConn{Conn: c, release: sync.OnceFunc(func() { l.give(client) })}, nil
		}
		c.Close()
		<-l.slots
	}
}

// take counts a connection from remote against its client's share, or
// reports false if that is used up; a trusted proxy, or no IP, has none.
func (l *limitedListener) take(remote net.Addr) (client string, ok bool) {
	addrPort, err := netip.ParseAddrPort(remote.String())
	if err != nil || l.exempt != nil && l.exempt(addrPort.Addr().Unmap()) {
		return "", true
	}
	client = addressGroup(addrPort.Addr().Unmap())
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok = l.open[client] < perClientShare(cap(l.slots)); ok {
		l.open[client]++
	}
	return client, ok
}

// give gives back the slot and the share of a connection of client's.
func (l *limitedListener) give(client string) {
	l.mu.Lock()
	if l.open[client]--; l.open[client] <= 0 { // so also for client "", which take never counted
		delete(l.open, client)
	}
	l.mu.Unlock()
	<-l.slots
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	release func() // gives the slot back, once however often it is called
}

func (c *limitedConn) Close() error {
	defer c.release()
	return c.Conn.Close()
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
