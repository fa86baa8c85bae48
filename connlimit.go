// connlimit.go owns the cap on open connections (MAX_CONNECTIONS). Each
// connection costs the server memory (buffers, a goroutine, the request
// being read) even before a handler runs, so the number open at once is
// bounded: past the cap, Accept waits until a connection closes, and the
// kernel's listen backlog holds the callers meanwhile. An idle keep-alive
// connection counts until the server closes it (IdleTimeout), as a busy
// one does.
//
// golang.org/x/net/netutil.LimitListener does the same, but this module
// depends on nothing beyond bcrypt and the SQLite driver.
package main

import (
	"net"
	"sync"
)

// limitedListener is a net.Listener with at most cap(slots) accepted
// connections open at once.
type limitedListener struct {
	net.Listener
	slots     chan struct{} // one element per open connection
	closed    chan struct{} // closed by Close, to free an Accept that waits
	closeOnce sync.Once
}

func limitConnections(l net.Listener, n int) *limitedListener {
	return &limitedListener{Listener: l, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection, which gives its
// slot back when it is closed.
func (l *limitedListener) Accept() (net.Conn, error) {
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
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
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
